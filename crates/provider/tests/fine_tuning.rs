//! A fine-tuning job through a real broker on anvil, trained for real on
//! the built-in model: the order reserves its maximum fee, the sealed
//! adapter downloads in ranges and matches the hash delivered on chain,
//! the acknowledgement settles the fee and publishes the content key that
//! opens the adapter; a queued job cancelled costs nothing; a job never
//! reserves the escrow that backs the user's unsettled chat answers.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, Payer, chat_body, code, scripted_upstream, sqlite_url};
use zg_chain::JobState;
use zg_core::{
    B128, SigningKey, U256,
    fine_tuning::{
        CancelJob, Count, CountRequest, Hyperparameters, JobStatus, JobView, Order, StartJob,
        cancel_digest, file_hash, routes,
    },
    keccak256, seal,
};
use zg_devnet::{FineTuningPlan, start_broker};

/// neuron per trained token (1 gwei).
const PRICE: u64 = 1_000_000_000;

fn model_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The first `n` examples of the project's training set.
fn training(n: usize) -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../finetune/data/train.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().take(n).map(|l| format!("{l}\n")).collect()
}

fn sha256_file(path: &std::path::Path) -> zg_core::B256 {
    zg_engine::verify::model_digest(path)
        .unwrap()
        .parse()
        .unwrap()
}

/// A broker plan with only the fine-tuning service "tune" (a checkpoint
/// every step), and the folders it lives in.
fn tuning_plan(env: &Env) -> (zg_devnet::BrokerPlan, [tempfile::TempDir; 2]) {
    let (db, db_dir) = sqlite_url();
    let work = tempfile::tempdir().unwrap();
    let mut plan = env.broker_plan(1, &db).unwrap();
    plan.fine_tuning = Some(FineTuningPlan {
        name: "tune".into(),
        model: "SmolLM2-135M-Instruct".into(),
        base_model: model_path(),
        price_per_token: "0.000000001".into(),
        work_dir: work.path().to_path_buf(),
        checkpoint_every: 1,
    });
    plan.admin = Some("127.0.0.1:0".into());
    (plan, [db_dir, work])
}

/// `key`'s signed order for `user` at `provider`'s "tune": `text`
/// trained `epochs` times (batch 4, rank 4) for at most `max_fee`.
fn signed_order(
    (user, provider): (&zg_chain::ChainClient, zg_core::Address),
    key: &SigningKey,
    text: &str,
    epochs: u32,
    max_fee: U256,
    nonce: u8,
) -> StartJob {
    let order = Order {
        user: user.wallet(),
        provider,
        service: "tune".into(),
        base_model: sha256_file(&model_path()),
        training_file: file_hash(text.as_bytes()),
        validation_file: None,
        hyperparameters: Hyperparameters {
            epochs,
            batch_size: 4,
            rank: 4,
            learning_rate_multiplier_ppm: 1_000_000,
        },
        max_fee,
        start_by: zg_core::now_unix() + 600,
        nonce: B128::repeat_byte(nonce),
    };
    StartJob {
        signature: order.sign(key, user.chain_id(), user.fine_tuning_address()),
        order,
        training: text.to_owned(),
        validation: None,
    }
}

struct Job {
    url: String,
    http: reqwest::Client,
}

impl Job {
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, (u16, String)> {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        if status == 200 {
            Ok(serde_json::from_str(&text).unwrap())
        } else {
            Err((status, text))
        }
    }

    async fn view(&self, id: &zg_core::B256) -> JobView {
        let url = format!("{}{}", self.url, routes::job(id));
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn until(&self, id: &zg_core::B256, status: JobStatus, within: Duration) -> JobView {
        let start = Instant::now();
        loop {
            let view = self.view(id).await;
            if view.status == status {
                return view;
            }
            assert!(
                start.elapsed() < within && !matches!(view.status, JobStatus::Failed),
                "job {id} is {:?} (error {:?}) after {:?}, waiting for {status:?}",
                view.status,
                view.error,
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn range(&self, id: &zg_core::B256, range: Option<&str>) -> (u16, Vec<u8>) {
        let mut request = self
            .http
            .get(format!("{}{}", self.url, routes::adapter(id)));
        if let Some(range) = range {
            request = request.header("range", range);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }
}

#[tokio::test]
async fn a_job_trains_delivers_sealed_and_settles_its_fee_on_acknowledgement() {
    let env = Env::start().await;
    let escrow = U256::from(10u64).pow(U256::from(17u64));
    let (user_key, user) = env.user(2, escrow).await;
    let (plan, _dirs) = tuning_plan(&env);
    let broker = start_broker(&plan).await.unwrap();
    let provider = env.provider();
    let digest = sha256_file(&model_path());

    // Listed with its terms.
    let listed = user.service(provider, "tune").await.unwrap().unwrap();
    assert_eq!(
        (listed.kind.as_str(), listed.model_digest),
        ("fine-tuning", digest)
    );
    let terms = user.fine_tuning_terms(provider, "tune").await.unwrap();
    assert_eq!(terms.base_models, vec![digest]);

    let job = Job {
        url: broker.url(),
        http: reqwest::Client::new(),
    };
    let text = training(8);
    let count: Count = job
        .post(
            routes::COUNT,
            &CountRequest {
                service: "tune".into(),
                training: text.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(count.examples, 8);
    assert!(count.tokens > 8 * 10, "{count:?}");
    let bad: Result<Count, _> = job
        .post(
            routes::COUNT,
            &CountRequest {
                service: "tune".into(),
                training: format!("{text}{{\"messages\": 3}}\n"),
            },
        )
        .await;
    let (status, body) = bad.unwrap_err();
    assert_eq!(status, 400);
    assert!(body.contains("line 9"), "{body}");

    let hyperparameters = Hyperparameters {
        epochs: 1,
        batch_size: 4,
        rank: 4,
        learning_rate_multiplier_ppm: 1_000_000,
    };
    let fee = U256::from(count.tokens) * U256::from(PRICE);
    let order = |max_fee: U256, nonce: u8| Order {
        user: user.wallet(),
        provider,
        service: "tune".into(),
        base_model: digest,
        training_file: file_hash(text.as_bytes()),
        validation_file: None,
        hyperparameters,
        max_fee,
        start_by: zg_core::now_unix() + 600,
        nonce: B128::repeat_byte(nonce),
    };
    let signed = |order: Order, key: &SigningKey| StartJob {
        signature: order.sign(key, user.chain_id(), user.fine_tuning_address()),
        order,
        training: text.clone(),
        validation: None,
    };

    // Refused before anything moves: a maxFee below the fee, a stranger's signature.
    let (status, body) = job
        .post::<JobView>(
            routes::JOBS,
            &signed(order(fee - U256::from(1), 1), &user_key),
        )
        .await
        .unwrap_err();
    assert!(status == 400 && body.contains("maxFee"), "{body}");
    let (status, body) = job
        .post::<JobView>(routes::JOBS, &signed(order(fee, 2), &SigningKey::random()))
        .await
        .unwrap_err();
    assert!(status == 400 && body.contains("signed by"), "{body}");
    let mut expired = order(fee, 2);
    expired.start_by = zg_core::now_unix() - 1;
    let (status, body) = job
        .post::<JobView>(routes::JOBS, &signed(expired, &user_key))
        .await
        .unwrap_err();
    assert!(status == 400 && body.contains("expired"), "{body}");
    assert_eq!(
        user.account(user.wallet(), provider).await.unwrap().escrow,
        escrow
    );

    let max_fee = fee + U256::from(PRICE);
    let started: JobView = job
        .post(routes::JOBS, &signed(order(max_fee, 3), &user_key))
        .await
        .unwrap();
    let id = started.id;
    assert_eq!((started.fee, started.trained_tokens), (fee, count.tokens));
    assert_eq!(
        user.account(user.wallet(), provider).await.unwrap().escrow,
        escrow - max_fee,
        "the maximum fee is reserved"
    );

    let delivered = job
        .until(&id, JobStatus::Delivered, Duration::from_secs(600))
        .await;
    assert_eq!(delivered.events.last().map(|e| e.step), Some(2));
    assert_eq!(delivered.checkpoints.len(), 2);
    let on_chain = user.job(id).await.unwrap();
    assert_eq!((on_chain.state, on_chain.fee), (JobState::Delivered, fee));

    // The sealed adapter in two ranges is the whole of it, and its hash is the deliverable.
    let (status, whole) = job.range(&id, None).await;
    assert_eq!(status, 200);
    let half = whole.len() / 2;
    let (first_status, first) = job.range(&id, Some(&format!("bytes=0-{}", half - 1))).await;
    let (rest_status, rest) = job.range(&id, Some(&format!("bytes={half}-"))).await;
    assert_eq!((first_status, rest_status), (206, 206));
    assert_eq!([first, rest].concat(), whole);
    assert_eq!(job.range(&id, Some("bytes=999999999-")).await.0, 416);
    assert_eq!(keccak256(&whole), on_chain.deliverable);
    assert_eq!(Some(whole.len() as u64), delivered.adapter_bytes);

    let earned_before = user.balance_of(provider).await.unwrap();
    user.acknowledge_job(id).await.unwrap();
    job.until(&id, JobStatus::Succeeded, Duration::from_secs(60))
        .await;
    assert_eq!(user.job(id).await.unwrap().state, JobState::Settled);
    assert_eq!(
        user.balance_of(provider).await.unwrap(),
        earned_before + fee
    );
    assert_eq!(
        user.account(user.wallet(), provider).await.unwrap().escrow,
        escrow - fee,
        "what the reservation held beyond the fee came back"
    );
    let sealed_key = user.job_content_key(id).await.unwrap();
    let key = seal::open_key(&sealed_key, &user_key, &id).unwrap();
    let adapter = seal::open_adapter(&whole, &key).unwrap();
    assert_eq!(&adapter[..4], b"GGUF");

    // The provider page lists the job with its state.
    let page = job
        .http
        .get(broker.admin_url().unwrap())
        .bearer_auth(broker.admin_token().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = page
        .split(&format!("data-job=\"{id}\""))
        .nth(1)
        .expect("the job's row");
    assert!(
        row[..row.find("</tr>").unwrap()].contains("succeeded"),
        "{row}"
    );

    // A queued job cancelled by its user costs nothing; a stranger cannot cancel.
    let queued: JobView = job
        .post(routes::JOBS, &signed(order(max_fee, 4), &user_key))
        .await
        .unwrap();
    let stranger = CancelJob {
        signature: SigningKey::random().sign_hash(&cancel_digest(&queued.id)),
    };
    let (status, _) = job
        .post::<JobView>(&routes::cancel(queued.id), &stranger)
        .await
        .unwrap_err();
    assert_eq!(status, 401);
    let cancel = CancelJob {
        signature: user_key.sign_hash(&cancel_digest(&queued.id)),
    };
    job.post::<JobView>(&routes::cancel(queued.id), &cancel)
        .await
        .unwrap();
    job.until(&queued.id, JobStatus::Cancelled, Duration::from_secs(120))
        .await;
    assert_eq!(
        user.job(queued.id).await.unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(
        user.account(user.wallet(), provider).await.unwrap().escrow,
        escrow - fee
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_broker_stopped_mid_training_resumes_the_job_from_its_checkpoint() {
    let env = Env::start().await;
    let escrow = U256::from(10u64).pow(U256::from(17u64));
    let (user_key, user) = env.user(2, escrow).await;
    let (plan, _dirs) = tuning_plan(&env);
    let broker = start_broker(&plan).await.unwrap();
    let job = Job {
        url: broker.url(),
        http: reqwest::Client::new(),
    };
    let start = signed_order(
        (&user, env.provider()),
        &user_key,
        &training(8),
        3,
        escrow,
        9,
    );
    let id = job.post::<JobView>(routes::JOBS, &start).await.unwrap().id;
    let started = Instant::now();
    while job.view(&id).await.checkpoints.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    broker.shutdown().await.unwrap();

    // The same config again: the job is picked up where its checkpoint left it.
    let broker = start_broker(&plan).await.unwrap();
    let job = Job {
        url: broker.url(),
        ..job
    };
    let paused = job.view(&id).await;
    assert!(
        matches!(paused.status, JobStatus::Queued | JobStatus::Running),
        "{paused:?}"
    );
    let saved = paused.checkpoints.len() as u64;
    let done = job
        .until(&id, JobStatus::Delivered, Duration::from_secs(600))
        .await;
    let steps: Vec<u64> = done.events.iter().map(|e| e.step).collect();
    assert_eq!(
        steps,
        (1..=6).collect::<Vec<_>>(),
        "each step once, in order"
    );
    assert!((2..6).contains(&saved), "stopped after {saved} checkpoints");
    assert_eq!(user.job(id).await.unwrap().state, JobState::Delivered);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_job_never_reserves_the_escrow_that_backs_unsettled_answers() {
    let env = Env::start().await;
    let escrow = U256::from(10u64).pow(U256::from(15u64));
    let (user_key, user) = env.user(2, escrow).await;
    let (mut plan, _dirs) = tuning_plan(&env);
    let upstream = format!("http://{}/v1", scripted_upstream().await);
    plan.services.push(zg_devnet::ServicePlan {
        credit_limit: "1".into(),
        ..zg_devnet::ServicePlan::chat("chat", "scripted", zg_core::B256::ZERO, &upstream)
    });
    let broker = start_broker(&plan).await.unwrap();
    let job = Job {
        url: broker.url(),
        http: reqwest::Client::new(),
    };

    // Three answers the provider has not settled yet.
    let mut payer = Payer::new(user_key.clone(), &env, &broker.url());
    let last = payer.chats(3).await;
    let owed = payer.owed;
    assert!(!owed.is_zero());

    let text = training(4);
    let order = |max_fee: U256, nonce: u8| {
        signed_order((&user, env.provider()), &user_key, &text, 1, max_fee, nonce)
    };

    // The escrow holds the reservation, but not with the answers owed beside it.
    let (status, body) = job
        .post::<JobView>(routes::JOBS, &order(escrow - owed + U256::from(1), 1))
        .await
        .unwrap_err();
    assert!(
        status == 402 && body.contains("not yet settled"),
        "{status} {body}"
    );
    assert_eq!(
        user.account(user.wallet(), env.provider())
            .await
            .unwrap()
            .escrow,
        escrow,
        "nothing reserved"
    );

    // What the answers leave is reserved, and then chat sees that escrow
    // as spoken for: the next answer's worst case no longer fits.
    job.post::<JobView>(routes::JOBS, &order(escrow - owed, 2))
        .await
        .unwrap();
    assert_eq!(
        user.account(user.wallet(), env.provider())
            .await
            .unwrap()
            .escrow,
        owed
    );
    let a = payer
        .send("/v1/chat/completions", &chat_body("chat", "hi", 8))
        .await;
    assert_eq!(
        (a.status, code(&a)),
        (402, "insufficient_escrow"),
        "{}",
        a.json
    );

    // The answers served are still paid in full.
    assert_eq!(payer.acknowledge(&last).await, 200);
    broker.broker().settler().settle_now().await.unwrap();
    assert_eq!(
        user.account(user.wallet(), env.provider())
            .await
            .unwrap()
            .settled,
        owed
    );
    broker.shutdown().await.unwrap();
}
