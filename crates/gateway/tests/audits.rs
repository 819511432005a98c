//! The gateway's audits through real parts: anvil with the contracts, real
//! brokers in front of the real engine whose chat services registered the
//! proof method, and a scripted forger among them. The checker here is a
//! test one (it fails answers that carry the forger's marker, passes the
//! rest, and can be held to fill the queue); the model-backed checker is
//! tested with the verifier.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    Market, Provider, chat_body, engine,
    fake::{Fake, fake_broker},
    neuron, post, served_by, start_gateway,
};
use serde_json::{Value, json};
use std::{
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use zg_chain::{ChainClient, DisputeState};
use zg_client::{AuditRecord, Payer};
use zg_core::{Address, Evidence, Prices, verifiability};
use zg_gateway::{AuditCounts, AuditPolicy, AuditResult, Checker, Gateway, GatewayConfig};

/// What the forger's answers carry and honest ones never do.
const FORGED: &str = "FORGED-BY-A-CHEAPER-MODEL";

const FORGED_ANSWER: &str = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"yes FORGED-BY-A-CHEAPER-MODEL"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#;

/// The test's checker: fails answers carrying [`FORGED`], passes others;
/// while held, each check waits.
#[derive(Default)]
struct Judge {
    /// Checks begun.
    begun: AtomicUsize,
    held: Mutex<bool>,
    released: Condvar,
}

impl Judge {
    fn hold(&self) {
        *self.held.lock().unwrap() = true;
    }

    fn release(&self) {
        *self.held.lock().unwrap() = false;
        self.released.notify_all();
    }

    fn begun(&self) -> usize {
        self.begun.load(Ordering::SeqCst)
    }
}

impl Checker for Judge {
    fn check(&self, evidence: &Evidence) -> Option<AuditResult> {
        self.begun.fetch_add(1, Ordering::SeqCst);
        let mut held = self.held.lock().unwrap();
        while *held {
            held = self.released.wait(held).unwrap();
        }
        let forged = evidence.response.contains(FORGED);
        Some(AuditResult {
            pass: !forged,
            detail: if forged {
                "the answer carries the forger's marker".into()
            } else {
                "no marker".into()
            },
        })
    }
}

fn passed() -> Option<AuditRecord> {
    Some(AuditRecord {
        pass: true,
        detail: "no marker".into(),
        dispute: None,
    })
}

/// Waits up to 30 s for `f` (audits run in the background; a dispute is a
/// transaction).
async fn within<F: AsyncFnMut() -> bool>(mut f: F) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A proof service's market: one real broker (dev account 1) in front of
/// the engine, its chat service registered with `zg-logits-v1`; a user (dev
/// account 2) with escrow there; the user's gateway, auditing with `judge`.
struct Audited {
    _market: Market,
    /// Dropping the broker stops it.
    _broker: Provider,
    provider: Address,
    url: String,
    gateway: Arc<Gateway>,
    payer: Payer,
    chain: ChainClient,
}

async fn audited(judge: &Arc<Judge>, policy: AuditPolicy) -> Audited {
    let e = engine();
    let mut market = Market::start().await;
    market.verifiability = verifiability::ZG_LOGITS_V1;
    let broker = market
        .broker(1, &e.url, &e.model, e.digest, "0.000000001", "0.000000002")
        .await;
    let provider = broker.address();
    let (key, chain) = market.user(2, neuron("0.1"), &[provider]).await;
    let (url, gateway, payer) =
        start_gateway(&mut market, &key, chain.clone(), GatewayConfig::default()).await;
    gateway.start_audits(judge.clone(), policy);
    Audited {
        _market: market,
        _broker: broker,
        provider,
        url,
        gateway,
        payer,
        chain,
    }
}

/// [`audited`] with the default policy but for `fraction` after the first ten.
async fn sampled(fraction: f64) -> (Arc<Judge>, Audited) {
    let judge = Arc::new(Judge::default());
    let policy = AuditPolicy {
        fraction,
        ..AuditPolicy::default()
    };
    let s = audited(&judge, policy).await;
    (judge, s)
}

impl Audited {
    /// Waits until `n` audits passed, and checks nothing else happened.
    async fn all_passed(&self, n: u64) {
        let counts = || self.gateway.audit_counts();
        assert!(
            within(async || counts().passed >= n).await,
            "{:?}",
            counts()
        );
        let expected = AuditCounts {
            passed: n,
            ..AuditCounts::default()
        };
        assert_eq!(counts(), expected);
    }

    /// The broker's (audits passed, ban) in the gateway's ranking.
    fn standing(&self) -> (u32, Option<String>) {
        let standings = self.gateway.ranking().standings();
        let st = standings.iter().find(|st| st.provider == self.provider);
        let st = st.expect("the broker is ranked");
        (st.audits_passed, st.banned.clone())
    }
}

fn body() -> Value {
    chat_body(&engine().model, "Say yes.", 4)
}

/// A paid chat through the gateway, streamed (read to its end) or not.
async fn chat(url: &str, stream: bool) {
    let mut body = body();
    body["stream"] = json!(stream);
    let r = post(url, &body).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
}

/// The audits of the user's receipts, newest first.
async fn audits(payer: &Payer) -> Vec<Option<AuditRecord>> {
    let receipts = payer.book().receipts(None, false, 100).await.unwrap();
    assert!(receipts.iter().all(|r| r.status == "paid"), "{receipts:?}");
    receipts.into_iter().map(|r| r.audit).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_ten_answers_of_a_proof_service_are_all_audited_and_their_verdicts_kept() {
    let (judge, s) = sampled(0.0).await;
    for i in 0..10 {
        chat(&s.url, i % 3 == 1).await;
    }
    s.all_passed(10).await;
    assert_eq!(judge.begun(), 10);
    // Plain and streamed answers alike: the verdict is next to each receipt.
    assert_eq!(audits(&s.payer).await, vec![passed(); 10]);
    assert_eq!(s.standing(), (10, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_header_forces_an_audit_after_the_first_ten() {
    let (judge, s) = sampled(0.0).await;
    for _ in 0..10 {
        chat(&s.url, false).await;
    }
    s.all_passed(10).await;

    // The 11th is past the sample; the 12th asks for its audit.
    chat(&s.url, false).await;
    let asked = reqwest::Client::new()
        .post(format!("{}/chat/completions", s.url))
        .header("X-ZG-Audit", "always")
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 200);
    // A value the gateway does not know is refused before any provider is paid.
    let garbled = reqwest::Client::new()
        .post(format!("{}/chat/completions", s.url))
        .header("X-ZG-Audit", "sometimes")
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), 400);
    let error: Value = garbled.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_request", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-ZG-Audit"),
        "{error}"
    );

    s.all_passed(11).await;
    // One at a time, in order: the 12th's verdict means the 11th was never queued.
    let mut expected = vec![passed(), None];
    expected.extend(vec![passed(); 10]);
    assert_eq!(audits(&s.payer).await, expected);
    assert_eq!(judge.begun(), 11);
}

/// The forger: dev account 1, listing the engine's model with the proof
/// method, cheaper than anyone, answering with [`FORGED_ANSWER`] under
/// receipts that pass every check a client can make.
async fn forger(market: &Market) -> Arc<Fake> {
    let e = engine();
    fake_broker(market, 1, FORGED_ANSWER, |s| {
        s.model = e.model.clone();
        s.model_digest = e.digest;
        s.prices = Prices::new(neuron("0.000000001"), neuron("0.000000001"));
        s.verifiability = verifiability::ZG_LOGITS_V1.into();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_audit_bans_the_provider_at_once_and_opens_a_dispute_on_chain() {
    let e = engine();
    let mut market = Market::start().await;
    market.verifiability = verifiability::ZG_LOGITS_V1;
    let forger = forger(&market).await;
    let cheat = forger.service.provider;
    let broker = market
        .broker(3, &e.url, &e.model, e.digest, "0.000000002", "0.000000004")
        .await;
    let honest = broker.address();
    let (key, chain) = market.user(2, neuron("0.1"), &[cheat, honest]).await;
    let (url, gateway, payer) =
        start_gateway(&mut market, &key, chain.clone(), GatewayConfig::default()).await;
    let judge = Arc::new(Judge::default());
    gateway.start_audits(judge.clone(), AuditPolicy::default());

    let r = post(&url, &body()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(served_by(&r), cheat, "the cheapest answers first");
    assert_eq!(
        r.headers()["x-zg-receipt-status"],
        "paid",
        "its receipt holds: only an audit catches it"
    );
    assert!(
        within(async || gateway.audit_counts().failed == 1).await,
        "{:?}",
        gateway.audit_counts()
    );

    // Banned as soon as the audit failed, before any dispute is decided.
    let tried = forger.vouchers.lock().unwrap().len();
    let r = post(&url, &body()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(served_by(&r), honest, "the forger is not tried again");
    assert_eq!(forger.vouchers.lock().unwrap().len(), tried);
    let standings = gateway.ranking().standings();
    let banned = standings
        .iter()
        .find(|st| st.provider == cheat)
        .and_then(|st| st.banned.clone())
        .unwrap();
    assert!(banned.contains("audit"), "{banned}");

    // The user's wallet disputed the answer, and the book says which dispute.
    assert!(
        within(async || gateway.audit_counts().disputes == 1).await,
        "{:?}",
        gateway.audit_counts()
    );
    let receipts = payer.book().receipts(Some(cheat), false, 10).await.unwrap();
    let audit = receipts[0].audit.clone().unwrap();
    assert!(!audit.pass, "{audit:?}");
    assert!(audit.detail.contains("marker"), "{audit:?}");
    let id = audit
        .dispute
        .expect("the dispute is kept next to the audit");
    let dispute = chain.dispute(id).await.unwrap();
    assert_eq!(dispute.state, DisputeState::Open);
    assert_eq!(
        (dispute.provider, dispute.user, dispute.challenger),
        (cheat, key.address(), key.address())
    );
    assert_eq!(dispute.fee, receipts[0].fee);
    assert_eq!(dispute.bond, chain.dispute_rules().await.unwrap().bond);
    assert_eq!(chain.dispute_count().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_skips_audits_without_holding_up_answers() {
    let judge = Arc::new(Judge::default());
    judge.hold();
    let policy = AuditPolicy {
        queue: 1,
        ..AuditPolicy::default()
    };
    let s = audited(&judge, policy).await;
    chat(&s.url, false).await;
    // The worker took the first answer and its check waits: the queue holds one more.
    assert!(within(async || judge.begun() == 1).await);
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(20), chat(&s.url, false))
            .await
            .expect("an answer never waits for an audit");
    }
    assert_eq!(judge.begun(), 1, "the check was held all along");
    assert_eq!(s.gateway.audit_counts().skipped, 2);

    judge.release();
    assert!(within(async || s.gateway.audit_counts().passed == 2).await);
    assert_eq!(
        s.gateway.audit_counts(),
        AuditCounts {
            passed: 2,
            skipped: 2,
            ..AuditCounts::default()
        }
    );
    assert_eq!(audits(&s.payer).await, vec![None, None, passed(), passed()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_honest_provider_audited_many_times_is_never_disputed() {
    let (judge, s) = sampled(1.0).await;
    for i in 0..16 {
        chat(&s.url, i % 2 == 0).await;
    }
    s.all_passed(16).await;
    assert_eq!(judge.begun(), 16);
    assert_eq!(s.chain.dispute_count().await.unwrap(), 0);
    assert_eq!(s.standing(), (16, None));
    // And it still gets the requests.
    let r = post(&s.url, &body()).await;
    assert_eq!(served_by(&r), s.provider);
}
