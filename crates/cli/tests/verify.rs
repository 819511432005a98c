//! `zg-serving verify` as a person runs it, on evidence made from a real
//! answer of the real engine on the real model: a good file, and the same
//! evidence kept in a user's book, pass; an
//! edited answer fails; a wrong GGUF, a truncated proof, a file that is not
//! evidence and evidence the receipt does not bind are clear errors, never
//! a panic.

use std::{
    path::Path,
    process::{Command, Output},
};

mod common;

use common::model;
use serde_json::Value;
use zg_core::{Address, Domain, Evidence, SigningKey, proof_digest};

fn verify(args: &[&str]) -> Output {
    verify_as(None, args)
}

/// Runs `zg-serving verify` with `key` (a user's, for its book) in the environment.
fn verify_as(key: Option<&SigningKey>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zg-serving"));
    command
        .arg("verify")
        .args(args)
        .args(["--threads", "1"])
        .env("RUST_LOG", "warn")
        .env_remove("ZG_PRIVATE_KEY");
    if let Some(key) = key {
        command.env("ZG_PRIVATE_KEY", key.to_bytes().to_string());
    }
    command.output().expect("zg-serving runs")
}

/// A user's book holding `evidence` with its receipt; returns the book's
/// path, the user's key and the receipt's id.
async fn book_with(dir: &Path, evidence: &Evidence) -> (String, SigningKey, i64) {
    let key = SigningKey::random();
    let path = dir.join("book.sqlite");
    let book = zg_client::Book::open(&path, key.address())
        .await
        .expect("book");
    let ticket = book
        .begin(evidence.receipt.receipt.provider)
        .await
        .expect("ticket");
    let (id, _) = book
        .record(
            &ticket,
            &evidence.receipt,
            "chat",
            "m",
            zg_client::book::Verdict::Paid,
        )
        .await
        .expect("receipt recorded");
    drop(ticket);
    book.keep_evidence(id, evidence)
        .await
        .expect("evidence kept");
    (path.display().to_string(), key, id)
}

/// The evidence of one answer of a real engine (the signature is not what
/// `verify` checks: any key and domain will do).
async fn real_evidence() -> Evidence {
    let key = SigningKey::random();
    common::real_evidence(
        Address::repeat_byte(2),
        "chat",
        &key,
        &Domain::new(1, Address::ZERO),
    )
    .await
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exits 1 with an error that mentions `expected`, and no panic.
fn refused(out: &Output, expected: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(expected), "expected {expected:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_a_good_file_and_refuses_bad_input_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let evidence = real_evidence().await;
    let model = model().display().to_string();

    let good = write(dir.path(), "good.json", &evidence.to_json_pretty());
    let out = verify(&["--file", &good, "--model", &model]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with("pass: distance "),
        "{}",
        stdout(&out)
    );

    // The same evidence from the user's book, by receipt id; saved as a file.
    let (book, user, id) = book_with(dir.path(), &evidence).await;
    let saved = dir.path().join("saved.json").display().to_string();
    let id = id.to_string();
    let args = ["--receipt", &id, "--book", &book, "--model", &model];
    let out = verify_as(Some(&user), &[&args[..], &["--save", &saved]].concat());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).starts_with("pass: "), "{}", stdout(&out));
    let saved = Evidence::from_json(&std::fs::read(&saved).expect("saved")).expect("evidence");
    assert_eq!(saved, evidence);
    // Another user's book has no such receipt.
    refused(
        &verify_as(Some(&SigningKey::random()), &args),
        "keeps no evidence for receipt",
    );

    // `user verify` checks the same receipt and keeps the verdict, which
    // `user receipts` then shows next to it.
    let user_cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_zg-serving"))
            .args(["user", "--json", "--book", &book])
            .args(args)
            .env("ZG_PRIVATE_KEY", user.to_bytes().to_string())
            .env("RUST_LOG", "warn")
            .output()
            .expect("zg-serving runs")
    };
    let out = user_cli(&[
        "verify",
        "--receipt",
        &id,
        "--model",
        &model,
        "--threads",
        "1",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = user_cli(&["receipts"]);
    let rows: Value = serde_json::from_slice(&out.stdout).expect("JSON receipts");
    assert_eq!(rows[0]["audit"]["pass"], Value::Bool(true), "{rows}");
    assert!(
        rows[0]["audit"]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("pass: distance")),
        "{rows}"
    );

    // The model found by its digest in a folder, JSON out.
    let models = dir.path().join("models");
    std::fs::create_dir(&models).expect("mkdir");
    std::fs::write(models.join("other.gguf"), b"not this model").expect("write");
    std::os::unix::fs::symlink(model.as_str(), models.join("registered.gguf")).expect("link");
    let out = verify(&[
        "--file",
        &good,
        "--models-dir",
        &models.display().to_string(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["result"], "pass");
    assert!(
        report["distance"].as_f64().expect("distance")
            <= report["threshold"].as_f64().expect("threshold")
    );

    // An answer edited after generation, signed as edited: fails.
    let edited = common::edited(
        &evidence,
        &SigningKey::random(),
        &Domain::new(1, Address::ZERO),
    );
    let file = write(dir.path(), "edited.json", &edited.to_json_pretty());
    let out = verify(&["--file", &file, "--model", &model]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("fail: "), "{}", stdout(&out));

    // The same edit without a receipt that binds it: an error, not a verdict.
    let mut unbound = evidence.clone();
    unbound.response = edited.response.clone();
    let file = write(dir.path(), "unbound.json", &unbound.to_json_pretty());
    refused(
        &verify(&["--file", &file, "--model", &model]),
        "responseDigest",
    );

    // A truncated proof (whose digest the receipt binds).
    let mut truncated = evidence.clone();
    truncated.proof = truncated.proof.slice(..truncated.proof.len() - 5);
    truncated.receipt.receipt.proof_digest = proof_digest(&truncated.proof);
    let file = write(dir.path(), "truncated.json", &truncated.to_json_pretty());
    refused(&verify(&["--file", &file, "--model", &model]), "truncated");

    // A GGUF that is not the registered model.
    let other = write(dir.path(), "other.gguf", "not a model");
    refused(
        &verify(&["--file", &good, "--model", &other]),
        "is not the registered model",
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    refused(
        &verify(&[
            "--file",
            &good,
            "--models-dir",
            &empty.display().to_string(),
        ]),
        "no GGUF",
    );

    // Garbage.
    for (name, text) in [
        ("garbage.json", "\u{1f600} this is not JSON"),
        ("empty.json", ""),
        (
            "partial.json",
            r#"{"receipt": {"receipt": {}, "signature": "0x"}}"#,
        ),
    ] {
        let file = write(dir.path(), name, text);
        refused(
            &verify(&["--file", &file, "--model", &model]),
            "not evidence of an answer",
        );
    }
    refused(
        &verify(&["--file", "/nonexistent/evidence.json", "--model", &model]),
        "could not read",
    );
}
