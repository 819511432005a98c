//! The processes a benchmark starts: a guard that stops each one, their CPU
//! time from /proc, waiting until they listen, and psql for PostgreSQL.

use anyhow::{Context, Result, bail};
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

/// Stops its child on drop, so that an error anywhere leaves nothing running.
pub(crate) struct Guard(Child);

impl Guard {
    /// Starts `command`; `what` names it in the error.
    pub(crate) fn spawn(command: &mut Command, what: &str) -> Result<Guard> {
        let child = command
            .spawn()
            .with_context(|| format!("could not start {what} ({command:?})"))?;
        Ok(Guard(child))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }

    /// utime + stime of the child, in microseconds.
    pub(crate) fn cpu_us(&self) -> f64 {
        cpu_us(self.pid())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master takes its workers down with it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..40 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of one process, in microseconds (0 when it is gone).
pub(crate) fn cpu_us(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    ticks as f64 * 1e6 / 100.0
}

/// utime + stime of a process and all its descendants (LiteLLM's workers).
pub(crate) fn tree_cpu_us(root: u32) -> f64 {
    let parents = parent_links();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree.iter().map(|p| cpu_us(*p)).sum()
}

/// (pid, parent pid) of every process in /proc.
fn parent_links() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse::<u32>()
                .ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// Runs one SQL statement as postgres on 127.0.0.1 (the CI database).
pub(crate) fn psql(sql: &str) -> Result<()> {
    let status = Command::new("psql")
        .args([
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-c",
            sql,
        ])
        .status()
        .context("could not run psql (is the PostgreSQL client installed?)")?;
    if !status.success() {
        bail!("psql {sql:?} failed");
    }
    Ok(())
}

/// The first of `fallbacks` that exists, else `name` for a PATH lookup
/// (Debian keeps nginx in /usr/sbin, which is not on every user's PATH).
pub(crate) fn which(name: &str, fallbacks: &[&str]) -> PathBuf {
    fallbacks
        .iter()
        .find(|f| Path::new(f).is_file())
        .map_or_else(|| PathBuf::from(name), PathBuf::from)
}

/// Waits up to 10 s for something to accept connections on `addr`.
pub(crate) fn wait_port(addr: &str) -> Result<()> {
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr}")
}

/// Waits up to `limit` for `GET path` on `addr` to answer 200.
pub(crate) fn wait_http(addr: &str, path: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if get_is_ok(addr, path) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{addr} never answered {path} with 200")
}

fn get_is_ok(addr: &str, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    let mut out = String::new();
    s.write_all(req.as_bytes()).is_ok()
        && s.read_to_string(&mut out).is_ok()
        && out.starts_with("HTTP/1.1 200")
}
