//! Cheaper substitutes of the registered model, the way a dishonest
//! provider would make them: the same weights requantized to a smaller type
//! with llama.cpp's quantizer. For `make bench-verify`, the tests, and the
//! cheating provider of `zg-serving dev --cheater`.

use std::ffi::CString;
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
    let c_path = |p: &Path| {
        CString::new(p.to_string_lossy().as_bytes())
            .map_err(|_| format!("{} has a NUL", p.display()))
    };
    let (input, output) = (c_path(model)?, c_path(&partial)?);
    // SAFETY: valid NUL-terminated paths and llama.cpp's own default params.
    let rc = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.ftype = ftype as _;
        params.allow_requantize = true;
        params.nthread = 2;
        llama_cpp_sys_2::llama_model_quantize(input.as_ptr(), output.as_ptr(), &params)
    };
    if rc != 0 {
        return Err(format!("llama_model_quantize to {kind:?} failed ({rc})"));
    }
    std::fs::rename(&partial, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}
