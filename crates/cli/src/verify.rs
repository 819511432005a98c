//! `zg-serving verify`: checks that the registered model computed an answer,
//! from a receipt in the user's book or an evidence file (format in
//! docs/verification.md), with the GGUF whose sha256 is the receipt's
//! `modelDigest`. Prints pass or fail with the measured distance; a failed
//! check exits with status 1, unreadable input with an error. `zg-serving
//! user verify` does the same for a receipt of the user's book and stores
//! the verdict next to it, as the gateway's audits do.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use zg_client::Book;
use zg_core::Evidence;
use zg_engine::verify::{Verdict, Verifier, model_digest};

use crate::user::wallet::KeyArgs;

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// A receipt of the local book, by its id (`zg-serving user receipts`).
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    receipt: Option<i64>,
    /// An evidence file: JSON with receipt, nonce, request, response and proof.
    #[arg(long)]
    file: Option<PathBuf>,
    #[command(flatten)]
    weights: Weights,
    /// Also write the evidence (e.g. of a book's receipt) to this file.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The local voucher book and receipts (SQLite), for --receipt.
    #[arg(long, env = "ZG_BOOK")]
    book: Option<PathBuf>,
    #[command(flatten)]
    key: KeyArgs,
}

/// Which weights check the answer.
#[derive(Args)]
pub(crate) struct Weights {
    /// The registered GGUF; refused unless its sha256 is the receipt's modelDigest.
    #[arg(
        long,
        conflicts_with = "models_dir",
        required_unless_present = "models_dir"
    )]
    model: Option<PathBuf>,
    /// A folder of GGUF files; the one whose sha256 is the receipt's modelDigest is used.
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// CPU threads for the check [default: available CPUs, at most 8].
    #[arg(long)]
    threads: Option<u32>,
}

/// `zg-serving user verify`.
#[derive(Args)]
pub(crate) struct UserVerifyArgs {
    /// The receipt's id in the book (`zg-serving user receipts`).
    #[arg(long)]
    receipt: i64,
    #[command(flatten)]
    weights: Weights,
}

/// A checked answer: the verdict, with the model file and digest used.
struct Checked {
    verdict: Verdict,
    model: PathBuf,
    digest: String,
}

impl Weights {
    /// Checks `evidence` with the GGUF these name (blocking).
    fn check(&self, evidence: &Evidence) -> anyhow::Result<Checked> {
        let digest = hex::encode(evidence.receipt.receipt.model_digest);
        let model = match (&self.model, &self.models_dir) {
            (Some(path), _) => path.clone(),
            (None, Some(dir)) => find_model(dir, &digest)?,
            (None, None) => bail!("name the model: --model FILE or --models-dir DIR"),
        };
        let threads = self.threads.unwrap_or_else(default_threads);
        let verifier = Verifier::open(&model, &digest, threads)?;
        let verdict = verifier.verify_evidence(evidence)?;
        Ok(Checked {
            verdict,
            model,
            digest,
        })
    }
}

/// Checks receipt `receipt` of the user's book and stores the verdict next
/// to it (what `zg-serving user receipts` shows); exits 1 on fail.
pub(crate) async fn user_verify(
    c: &crate::user::ChainArgs,
    a: UserVerifyArgs,
    out: crate::user::Out,
) -> anyhow::Result<()> {
    let user = c.key.load()?.address();
    let path = c.book_path()?;
    let book = Book::open(&path, user).await?;
    let evidence = book
        .evidence(a.receipt)
        .await?
        .with_context(|| no_evidence(&path, a.receipt, user))?;
    let checked = tokio::task::spawn_blocking(move || a.weights.check(&evidence))
        .await
        .context("the check stopped")??;
    let line = print(&checked, out.json);
    book.record_audit(a.receipt, checked.verdict.pass, &line, None)
        .await?;
    if !checked.verdict.pass {
        std::process::exit(1);
    }
    Ok(())
}

fn no_evidence(book: &Path, id: i64, user: zg_core::Address) -> String {
    format!(
        "the book {} keeps no evidence for receipt {id} of {user}: evidence is kept for answers of services that register a proof method (see `zg-serving user receipts`)",
        book.display()
    )
}

pub(crate) fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let evidence = match (&args.file, args.receipt) {
        (Some(path), _) => read_file(path)?,
        (None, Some(id)) => from_book(&args, id)?,
        (None, None) => bail!("name the answer: --receipt ID (from the book) or --file FILE"),
    };
    if let Some(path) = &args.save {
        std::fs::write(path, evidence.to_json_pretty())
            .with_context(|| format!("could not write the evidence to {}", path.display()))?;
    }
    let checked = args.weights.check(&evidence)?;
    print(&checked, args.json);
    if !checked.verdict.pass {
        std::process::exit(1);
    }
    Ok(())
}

fn read_file(path: &Path) -> anyhow::Result<Evidence> {
    let bytes =
        std::fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
    Evidence::from_json(&bytes).with_context(|| format!("{}", path.display()))
}

fn from_book(args: &VerifyArgs, id: i64) -> anyhow::Result<Evidence> {
    let path = crate::user::book_path(args.book.as_deref())?;
    if !path.exists() {
        bail!(
            "no book at {}: pass --book FILE, or verify an evidence file with --file",
            path.display()
        );
    }
    let user = args.key.load()?.address();
    tokio::runtime::Runtime::new()
        .context("could not start the async runtime")?
        .block_on(async {
            let book = Book::open(&path, user).await?;
            book.evidence(id).await
        })?
        .with_context(|| no_evidence(&path, id, user))
}

/// The GGUF in `dir` whose sha256 is `digest` (hex).
fn find_model(dir: &Path, digest: &str) -> anyhow::Result<PathBuf> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("could not read the models folder {}", dir.display()))?;
    let mut seen = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "gguf") {
            continue;
        }
        match model_digest(&path) {
            Ok(sha256) if sha256 == digest => return Ok(path),
            Ok(sha256) => seen.push(format!("{} ({sha256})", path.display())),
            Err(e) => seen.push(format!("{} (unreadable: {e})", path.display())),
        }
    }
    bail!(
        "no GGUF in {} has sha256 {digest}, the receipt's modelDigest; found: {}",
        dir.display(),
        if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        }
    )
}

fn default_threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8) as u32)
}

/// Prints the verdict (text or JSON); returns its one-line text.
fn print(checked: &Checked, json: bool) -> String {
    let Checked {
        verdict,
        model,
        digest,
    } = checked;
    let result = if verdict.pass { "pass" } else { "fail" };
    let line = match &verdict.mismatch {
        Some(why) => format!("{result}: {why} ({} tokens)", verdict.tokens),
        None => format!(
            "{result}: distance {:.3} (threshold {}), worst token {:.3} (threshold {}), {} tokens, model {} (sha256 {digest})",
            verdict.distance,
            verdict.threshold,
            verdict.worst_token,
            verdict.token_threshold,
            verdict.tokens,
            model.display()
        ),
    };
    if json {
        let value = json!({
            "result": result,
            "distance": finite(verdict.distance),
            "threshold": verdict.threshold,
            "worstToken": finite(verdict.worst_token),
            "tokenThreshold": verdict.token_threshold,
            "tokens": verdict.tokens,
            "mismatch": verdict.mismatch,
            "model": model.display().to_string(),
            "modelDigest": format!("0x{digest}"),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        println!("{line}");
    }
    line
}

/// JSON has no infinity: a mismatch before any model run measures nothing.
fn finite(x: f32) -> Option<f32> {
    x.is_finite().then_some(x)
}
