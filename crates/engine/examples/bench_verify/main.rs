//! `make bench-verify`: honest answers and cheaters' answers from the real
//! engine on the real model, each checked by the verifier; prints one line
//! with the pass and detection rates, proof size, verification cost and
//! decode slowdown (docs/verification.md). Per-category details go to
//! stderr.
//!
//! Usage: bench_verify [--answers N] [--cheats N] [--tokens N]

mod speeds;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use zg_engine::proof::{Proof, tokens_digest};
use zg_engine::verify::{Claim, Verifier};
use zg_engine::{EngineConfig, ServerHandle};

const SYSTEM: &str = "You are a helpful assistant.";
const CHEAT_SYSTEM: &str = "You are a pirate. Answer every question like a pirate would.";
const TOPICS: &[&str] = &[
    "a dragon",
    "the ocean",
    "a lost key",
    "the moon",
    "a robot",
    "winter",
    "a library",
    "a bicycle",
    "an old map",
    "a garden",
    "a storm",
    "a lighthouse",
    "a train",
    "a violin",
    "a desert",
    "a clock",
    "a forest",
    "a market",
    "a bridge",
    "a comet",
];
const FORMS: &[&str] = &[
    "Write a short story about {}.",
    "Describe {} in detail.",
    "Write a poem about {}.",
    "Explain why people like {}.",
];

struct Args {
    answers: usize,
    cheats: usize,
    tokens: u32,
}

fn args() -> Result<Args> {
    let mut out = Args {
        answers: 1000,
        cheats: 100,
        tokens: 40,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: usize = it
            .next()
            .with_context(|| format!("{flag} needs a number"))?
            .parse()
            .with_context(|| format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--answers" => out.answers = value,
            "--cheats" => out.cheats = value,
            "--tokens" => out.tokens = u32::try_from(value)?,
            other => bail!("unknown flag {other}: expected --answers, --cheats or --tokens"),
        }
    }
    Ok(out)
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One answer as a provider returned it.
struct Answer {
    user: String,
    system: &'static str,
    text: String,
    proof: Vec<u8>,
    stop: Vec<String>,
    seconds: f64,
}

/// One engine in this process and the HTTP client that talks to it.
struct Provider {
    server: ServerHandle,
    http: reqwest::Client,
}

impl Provider {
    async fn start(model: &Path, threads: u32, slots: u32, proofs: bool) -> Result<Self> {
        let mut config = EngineConfig::new(model);
        config.threads = threads;
        config.parallel = slots;
        config.ctx = 1024 * slots;
        config.proofs = proofs;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = zg_engine::spawn(config, listener).await?;
        Ok(Self {
            server,
            http: reqwest::Client::new(),
        })
    }

    async fn post(&self, body: &Value) -> Result<(Value, Option<String>)> {
        let res = self
            .http
            .post(format!("{}/chat/completions", self.server.base_url()))
            .json(body)
            .send()
            .await?;
        let id = res
            .headers()
            .get("x-engine-proof-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = res.status();
        let json: Value = res.json().await?;
        if !status.is_success() {
            bail!("engine answered {status}: {json}");
        }
        Ok((json, id))
    }

    async fn ask(
        &self,
        user: &str,
        system: &'static str,
        sampling: Sampling,
        tokens: u32,
    ) -> Result<Answer> {
        let mut body = json!({
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "max_tokens": tokens,
            "temperature": 0,
        });
        if let Sampling::Seeded(seed) = sampling {
            body["temperature"] = json!(0.8);
            body["top_p"] = json!(0.95);
            body["seed"] = json!(seed);
        }
        let started = Instant::now();
        let (json, id) = self.post(&body).await?;
        let seconds = started.elapsed().as_secs_f64();
        let id = id.context("the answer has no X-Engine-Proof-Id")?;
        let proof = self
            .http
            .get(format!("{}/proofs/{id}", self.server.base_url()))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?
            .to_vec();
        let text = json["choices"][0]["message"]["content"]
            .as_str()
            .context("answer without content")?
            .to_string();
        Ok(Answer {
            user: user.to_string(),
            system,
            text,
            proof,
            stop: Vec::new(),
            seconds,
        })
    }

    /// Seconds the answer to `user` takes at `tokens` tokens (greedy).
    async fn time(&self, user: &str, tokens: u32) -> Result<f64> {
        let body = json!({
            "messages": [{"role": "user", "content": user}],
            "max_tokens": tokens,
            "temperature": 0,
        });
        let started = Instant::now();
        self.post(&body).await?;
        Ok(started.elapsed().as_secs_f64())
    }
}

#[derive(Clone, Copy)]
enum Sampling {
    Greedy,
    Seeded(u64),
}

fn prompt(i: usize) -> String {
    let topic = TOPICS[i % TOPICS.len()];
    FORMS[(i / TOPICS.len()) % FORMS.len()].replace("{}", topic)
}

fn sampling(i: usize) -> Sampling {
    if i.is_multiple_of(2) {
        Sampling::Greedy
    } else {
        Sampling::Seeded(i as u64 * 7919)
    }
}

/// `count` answers from `provider` with `clients` concurrent clients, the
/// prompts starting at `first`; also the wall time of the whole run.
async fn answers(
    provider: &Arc<Provider>,
    clients: usize,
    first: usize,
    count: usize,
    system: &'static str,
    tokens: u32,
) -> Result<(Vec<Answer>, f64)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let provider = provider.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (first + client..first + count).step_by(clients) {
                out.push(
                    provider
                        .ask(&prompt(i), system, sampling(i), tokens)
                        .await?,
                );
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((all, started.elapsed().as_secs_f64()))
}

/// One answer's verdict: pass, mean distance, worst token's distance.
type Checked = (bool, f32, f32);

/// The verdicts on `answers`, claimed with the registered system prompt,
/// and the seconds verification took: one session, as an auditor checks a
/// service's answers, so the shared system prompt is read once.
fn check(verifier: &Verifier, answers: &[Answer]) -> Result<(Vec<Checked>, f64)> {
    let started = Instant::now();
    let mut session = verifier.session();
    let mut out = Vec::with_capacity(answers.len());
    for a in answers {
        let prompt = claimed_prompt(verifier, &a.user)?;
        let verdict = session.verify(
            &Claim {
                prompt: &prompt,
                answer: &a.text,
                stop: &a.stop,
            },
            &a.proof,
        )?;
        out.push((verdict.pass, verdict.distance, verdict.worst_token));
    }
    Ok((out, started.elapsed().as_secs_f64()))
}

fn claimed_prompt(verifier: &Verifier, user: &str) -> Result<Vec<u32>> {
    Ok(verifier.prompt_tokens(vec![
        ("system".into(), SYSTEM.into()),
        ("user".into(), user.into()),
    ])?)
}

/// A cheater who knows the check: the proof claims the registered prompt.
fn forge_prompt(verifier: &Verifier, answer: &mut Answer) -> Result<()> {
    let mut proof = Proof::decode(&answer.proof)?;
    proof.prompt_digest = tokens_digest(claimed_prompt(verifier, &answer.user)?);
    answer.proof = proof.encode();
    Ok(())
}

/// A cheater who edits the answer after generation and its proof's token
/// ids to match: one token swapped (odd `i`) or three appended (even `i`).
fn edit(verifier: &Verifier, answer: &Answer, i: usize) -> Result<Answer> {
    let mut proof = Proof::decode(&answer.proof)?;
    let n = proof.tokens.len();
    // An answer that ended by itself closes with an end-of-generation token,
    // which spells nothing; edits go before it.
    let closed = n > 1 && verifier.spell(&proof.tokens[..n - 1], &answer.stop).0 == answer.text;
    let body_len = if closed { n - 1 } else { n };
    let replacement = 1000 + (i as u32 * 7) % 20_000;
    if i % 2 == 1 {
        let at = (i * 31) % body_len;
        proof.tokens[at] = if proof.tokens[at] == replacement {
            replacement + 1
        } else {
            replacement
        };
    } else {
        let marks = proof.marks[body_len - 1];
        for k in 0..3 {
            proof.tokens.insert(body_len + k, replacement + k as u32);
            proof.marks.insert(body_len + k, marks);
        }
    }
    let (text, _) = verifier.spell(&proof.tokens, &answer.stop);
    Ok(Answer {
        user: answer.user.clone(),
        system: answer.system,
        text,
        proof: proof.encode(),
        stop: answer.stop.clone(),
        seconds: answer.seconds,
    })
}

fn rate(verdicts: &[(bool, f32, f32)], pass: bool) -> f64 {
    verdicts.iter().filter(|v| v.0 == pass).count() as f64 / verdicts.len().max(1) as f64
}

fn spread(name: &str, verdicts: &[(bool, f32, f32)]) {
    eprintln!(
        "{name}: n={} pass={:.3}",
        verdicts.len(),
        rate(verdicts, true)
    );
    for (what, pick) in [("mean", 1), ("worst token", 2)] {
        let mut d: Vec<f32> = verdicts
            .iter()
            .map(|v| if pick == 1 { v.1 } else { v.2 })
            .collect();
        d.sort_by(f32::total_cmp);
        let Some(&max) = d.last() else {
            return;
        };
        let at = |q: f64| d[((d.len() - 1) as f64 * q) as usize];
        eprintln!(
            "  {what} distance: min={:.3} p01={:.3} p50={:.3} p99={:.3} max={max:.3}",
            at(0.0),
            at(0.01),
            at(0.5),
            at(0.99),
        );
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let model = repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let digest = zg_engine::verify::model_digest(&model)?;
    // First, while no engine runs beside it.
    speeds::report(&model, &repo_root().join("target"))?;
    let verifiers = [
        Verifier::open(&model, &digest, 1)?,
        Verifier::open(&model, &digest, 2)?,
    ];

    // Honest answers: 1 and 2 threads, 1 and 4 concurrent clients.
    let mut honest = Vec::new();
    let (mut gen_seconds, mut verify_seconds) = (0.0, 0.0);
    let configs = [(1u32, 1usize), (2, 1), (1, 4), (2, 4)];
    let mut first = 0;
    for (k, &(threads, clients)) in configs.iter().enumerate() {
        let count = (args.answers * (k + 1)) / configs.len() - (args.answers * k) / configs.len();
        let provider = Arc::new(Provider::start(&model, threads, clients as u32, true).await?);
        let (batch, wall) = answers(&provider, clients, first, count, SYSTEM, args.tokens).await?;
        first += count;
        let (verdicts, seconds) = check(&verifiers[threads as usize - 1], &batch)?;
        spread(
            &format!("honest threads={threads} clients={clients}"),
            &verdicts,
        );
        let latency: f64 = batch.iter().map(|a| a.seconds).sum();
        let tokens: usize = batch
            .iter()
            .map(|a| Proof::decode(&a.proof).map_or(0, |p| p.tokens.len()))
            .sum();
        eprintln!(
            "  generation {wall:.2} s ({:.1} answer tokens/s; the answers' latencies add up to {latency:.2} s), verification {seconds:.2} s ({:.1} answer tokens/s): ratio {:.3}",
            tokens as f64 / wall,
            tokens as f64 / seconds,
            seconds / wall
        );
        gen_seconds += wall;
        verify_seconds += seconds;
        honest.extend(batch.into_iter().zip(verdicts));
    }
    let short = honest
        .iter()
        .filter(|(a, _)| Proof::decode(&a.proof).map_or(0, |p| p.tokens.len()) < 32)
        .count();
    let proof_bytes: usize = honest.iter().map(|(a, _)| a.proof.len()).sum();
    let proof_tokens: usize = honest
        .iter()
        .map(|(a, _)| Proof::decode(&a.proof).map_or(0, |p| p.tokens.len()))
        .sum();
    let honest_verdicts: Vec<(bool, f32, f32)> = honest.iter().map(|(_, v)| *v).collect();
    eprintln!("honest answers under 32 tokens: {short}");

    let verifier = &verifiers[1];
    // (a) substitutes claiming the registered digest.
    let mut subst = Vec::new();
    for kind in zg_engine::substitute::Kind::ALL {
        let path = zg_engine::substitute::make(&model, &repo_root().join("target"), kind)
            .map_err(anyhow::Error::msg)?;
        let name = format!("{kind:?}");
        let provider = Arc::new(Provider::start(&path, 2, 4, true).await?);
        let (batch, _) = answers(&provider, 4, 0, args.cheats, SYSTEM, args.tokens).await?;
        let (verdicts, _) = check(verifier, &batch)?;
        spread(&format!("substitute {name}"), &verdicts);
        subst.extend(verdicts);
    }
    // (b) a changed system prompt, the proof's digest forged.
    let provider = Arc::new(Provider::start(&model, 2, 4, true).await?);
    let (mut pirate, _) = answers(&provider, 4, 0, args.cheats, CHEAT_SYSTEM, args.tokens).await?;
    for a in &mut pirate {
        forge_prompt(verifier, a)?;
    }
    let (prompt_verdicts, _) = check(verifier, &pirate)?;
    spread("changed system prompt", &prompt_verdicts);
    // (c) edited answers, the proof's token ids edited to match.
    let edited = honest
        .iter()
        .take(args.cheats)
        .enumerate()
        .map(|(i, (a, _))| edit(verifier, a, i))
        .collect::<Result<Vec<_>>>()?;
    let (edit_verdicts, _) = check(verifier, &edited)?;
    spread("edited answer", &edit_verdicts);

    let slowdown = decode_slowdown(&model).await?;
    println!(
        "verify honest_pass={:.3} subst_detect={:.3} prompt_detect={:.3} edit_detect={:.3} proof_bytes_per_32={} verify_time_ratio={:.3} decode_slowdown={:.3}",
        rate(&honest_verdicts, true),
        rate(&subst, false),
        rate(&prompt_verdicts, false),
        rate(&edit_verdicts, false),
        (proof_bytes * 32).div_ceil(proof_tokens.max(1)),
        verify_seconds / gen_seconds,
        slowdown,
    );
    Ok(())
}

/// Decode time with proofs over without: one engine each (1 thread, 1 slot),
/// the same greedy requests in alternation; decode time is the time of a
/// 65-token answer less that of a 1-token answer to the same prompt.
async fn decode_slowdown(model: &Path) -> Result<f64> {
    let on = Provider::start(model, 1, 1, true).await?;
    let off = Provider::start(model, 1, 1, false).await?;
    let mut totals = [Duration::ZERO; 2];
    for round in 0..12 {
        let user = prompt(round);
        for (k, provider) in [&on, &off].into_iter().enumerate() {
            let full = provider.time(&user, 65).await?;
            let first = provider.time(&user, 1).await?;
            totals[k] += Duration::from_secs_f64((full - first).max(0.0));
        }
    }
    Ok(totals[0].as_secs_f64() / totals[1].as_secs_f64().max(1e-9))
}
