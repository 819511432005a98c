//! `zg-serving dev` as a subprocess for the tests that drive a whole local
//! marketplace (dev.rs, web.rs): started on a fresh data directory with the
//! real models, its banner read until it is up, stopped on drop; and the
//! CLI run the way a person runs it. Included by path from those tests, not
//! from common/mod.rs, so that the other test binaries don't compile it.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;
use zg_core::{U256, parse_amount};

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zg-serving"))
}

/// The dev process, stopped with SIGTERM (which stops its chain, engine and
/// brokers too) if a failed check leaves it running.
pub(crate) struct Dev(pub(crate) Child);

impl Dev {
    /// `zg-serving dev --fresh` on `data` with the real chat and embedding
    /// models, the gateway on a port of its choosing; returns once its banner
    /// says everything is up.
    pub(crate) fn start(data: &Path) -> (Dev, Banner) {
        let models = root().join("models");
        let model = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
        let embedding = models.join("all-MiniLM-L6-v2");
        assert!(
            model.exists() && embedding.exists(),
            "models missing: run `make model`"
        );
        let mut dev = Dev(bin()
            .args(["dev", "--fresh", "--port", "0", "--data-dir"])
            .arg(data)
            .arg("--model")
            .arg(&model)
            .arg("--embedding-model")
            .arg(&embedding)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start zg-serving dev"));
        let banner = read_banner(&mut dev.0);
        (dev, banner)
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            terminate(&self.0);
            wait_with_timeout(&mut self.0, Duration::from_secs(30));
        }
    }
}

pub(crate) fn terminate(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

pub(crate) fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    None
}

/// What dev printed up to "Ctrl-C stops", looked up by each line's start.
pub(crate) struct Banner(Vec<String>);

impl Banner {
    /// The rest of the line that starts (after its indent) with `prefix`.
    pub(crate) fn field(&self, prefix: &str) -> String {
        self.0
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {:#?}", self.0))
            .trim()
            .to_owned()
    }

    /// The variables of the `export` line: the chain, the contract, the
    /// user's key and book, for the user CLI.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        self.field("export ")
            .split_whitespace()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect()
    }

    /// Provider 0's config file, for the provider CLI.
    pub(crate) fn provider_config(&self) -> String {
        self.field("zg-serving provider settle --config ")
    }
}

fn read_banner(child: &mut Child) -> Banner {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("dev| {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|_| panic!("zg-serving dev did not come up; it printed {lines:#?}"));
        let done = line.starts_with("Ctrl-C stops");
        lines.push(line);
        if done {
            return Banner(lines);
        }
    }
}

/// Runs a command that must succeed and print JSON; that JSON.
pub(crate) fn json_output(command: &mut Command) -> Value {
    let out = run_ok(command);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{command:?} printed no JSON ({e}): {out}"))
}

/// Runs a command that must succeed; its stdout.
pub(crate) fn run_ok(command: &mut Command) -> String {
    let out = command.output().expect("run command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A decimal 0G amount, as the CLI and the web pages print it.
pub(crate) fn amount(v: &str) -> U256 {
    parse_amount(v).unwrap_or_else(|e| panic!("{v:?} is no decimal 0G amount: {e}"))
}

/// A decimal 0G amount in the CLI's JSON.
pub(crate) fn json_amount(v: &Value) -> U256 {
    amount(
        v.as_str()
            .unwrap_or_else(|| panic!("{v} is no amount string")),
    )
}
