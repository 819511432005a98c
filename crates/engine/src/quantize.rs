//! llama.cpp's quantizer: a GGUF rewritten with its weights in another
//! type. Cheaters' substitutes use it, and so does the verifier, which
//! reads the registered weights back in F32 for a faster prefill.

use std::ffi::CString;
use std::path::Path;

/// Writes `input`'s weights as `ftype` (a `LLAMA_FTYPE_*`) to `output`.
pub fn requantize(
    input: &Path,
    output: &Path,
    ftype: llama_cpp_sys_2::llama_ftype,
    threads: u32,
) -> Result<(), String> {
    let c_path = |p: &Path| {
        CString::new(p.to_string_lossy().as_bytes())
            .map_err(|_| format!("{} has a NUL", p.display()))
    };
    let (c_input, c_output) = (c_path(input)?, c_path(output)?);
    // SAFETY: valid NUL-terminated paths and llama.cpp's own default params.
    let rc = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.ftype = ftype;
        params.allow_requantize = true;
        params.nthread = i32::try_from(threads.max(1)).unwrap_or(1);
        llama_cpp_sys_2::llama_model_quantize(c_input.as_ptr(), c_output.as_ptr(), &params)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "llama.cpp could not rewrite {} as type {ftype} ({rc})",
            input.display()
        ))
    }
}
