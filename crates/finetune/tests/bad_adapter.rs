//! zg-engine started with a broken `--lora` file fails with an error that
//! names the file, not a panic.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use zg_engine::{Engine, EngineConfig};

fn config(lora: PathBuf) -> EngineConfig {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut config = EngineConfig::new(model);
    config.lora = Some(lora);
    config.parallel = 1;
    config.ctx = 256;
    config.threads = 1;
    config
}

#[test]
fn a_missing_or_garbage_adapter_is_a_clear_startup_error() {
    let missing = PathBuf::from("/nonexistent/adapter.gguf");
    let e = Engine::load(&config(missing)).err().unwrap().to_string();
    eprintln!("{e}");
    assert!(
        e.contains("/nonexistent/adapter.gguf") && e.contains("does not exist"),
        "{e}"
    );

    let garbage = std::env::temp_dir().join(format!("zg-bad-adapter-{}.gguf", std::process::id()));
    std::fs::write(&garbage, b"GGUF this is not an adapter").unwrap();
    let e = Engine::load(&config(garbage.clone()))
        .err()
        .unwrap()
        .to_string();
    eprintln!("{e}");
    assert!(
        e.contains("could not load LoRA adapter") && e.contains(&garbage.display().to_string()),
        "{e}"
    );

    // A whole model is a GGUF too, but not an adapter.
    let e = Engine::load(&config(config(garbage.clone()).model))
        .err()
        .unwrap()
        .to_string();
    eprintln!("{e}");
    assert!(e.contains("could not load LoRA adapter"), "{e}");
    // zg-finetune's reader refuses both too.
    let e = zg_finetune::Adapter::load_gguf(&garbage).unwrap_err();
    assert!(
        e.to_string().contains("expected a GGUF LoRA adapter"),
        "{e}"
    );
    let e = zg_finetune::Adapter::load_gguf(&config(garbage.clone()).model).unwrap_err();
    assert!(e.to_string().contains("not a LoRA adapter"), "{e}");
    std::fs::remove_file(garbage).unwrap();
}
