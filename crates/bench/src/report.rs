//! The result lines: printed as they come (a long run shows progress) and
//! kept for `results.txt` in the run directory.

use crate::load::Stats;
use anyhow::{Context, Result};
use std::path::Path;

#[derive(Default)]
pub(crate) struct Report {
    lines: Vec<String>,
}

impl Report {
    /// Prints `line` and keeps it.
    pub(crate) fn push(&mut self, line: String) {
        println!("{line}");
        self.lines.push(line);
    }

    /// `NAME c=C rps=N p50_us=N p99_us=N [cpu_us_per_req=N]`.
    pub(crate) fn full(&mut self, name: &str, c: usize, s: &Stats, cpu: Option<f64>) {
        let mut out = format!(
            "{name} c={c} rps={:.0} p50_us={} p99_us={}",
            s.rps, s.p50, s.p99
        );
        if let Some(cpu) = cpu {
            out.push_str(&format!(" cpu_us_per_req={cpu:.0}"));
        }
        self.push(out);
    }

    /// Writes every line to `dir/results.txt`.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join("results.txt");
        std::fs::write(&path, self.lines.join("\n") + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }
}
