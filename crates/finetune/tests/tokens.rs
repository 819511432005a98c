//! Token counts for pricing, through the model's vocabulary only.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use zg_finetune::{FinetuneError, count_tokens};

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn a_file_counts_its_template_and_answer_tokens() {
    let one =
        r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]}"#;
    let n = count_tokens(&model_path(), one.as_bytes()).unwrap();
    // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>"
    assert!((10..=16).contains(&n), "{n} tokens");
    let two = format!("{one}\n{one}\n");
    assert_eq!(count_tokens(&model_path(), two.as_bytes()).unwrap(), 2 * n);
    let train =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/train.jsonl")).unwrap();
    let total = count_tokens(&model_path(), &train).unwrap();
    eprintln!("data/train.jsonl: {total} tokens");
    assert!(total > 80 * 20);
}

#[test]
fn bad_inputs_say_what_is_wrong() {
    let e = count_tokens(&model_path(), b"{oops").unwrap_err();
    assert!(
        matches!(e, FinetuneError::Dataset(ref d) if d.line == 1),
        "{e}"
    );
    let e = count_tokens(&PathBuf::from("/nonexistent/model.gguf"), b"{}").unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    let good = r#"{"messages":[{"role":"assistant","content":"a"}]}"#;
    let e = count_tokens(&PathBuf::from("/nonexistent/model.gguf"), good.as_bytes()).unwrap_err();
    assert!(matches!(e, FinetuneError::ModelMissing(_)), "{e}");
}
