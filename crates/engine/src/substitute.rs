//! Cheaper substitutes of the registered model, the way a dishonest
//! provider would make them: the same weights requantized to a smaller type
//! with llama.cpp's quantizer. For `make bench-verify`, the tests, and the
//! cheating provider of `zg-serving dev --cheater`.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Q4_0,
    Q2K,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Q4_0, Kind::Q2K];
}

/// `model` requantized to `kind`, made once under `{dir}/verify-substitutes/`.
pub fn make(model: &Path, dir: &Path, kind: Kind) -> Result<PathBuf, String> {
    let ftype = match kind {
        Kind::Q4_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_0,
        Kind::Q2K => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q2_K,
    };
    let dir = dir.join("verify-substitutes");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = dir.join(format!("substitute-{kind:?}.gguf"));
    if out.is_file() {
        return Ok(out);
    }
    // A private name per process: tests in parallel may make the same file.
    let partial = dir.join(format!(
        "substitute-{kind:?}.{}.partial",
        std::process::id()
    ));
    crate::quantize::requantize(model, &partial, ftype, 2)
        .map_err(|e| format!("making the {kind:?} substitute: {e}"))?;
    std::fs::rename(&partial, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}
