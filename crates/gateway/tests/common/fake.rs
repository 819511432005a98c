//! A scripted fake broker, listed on the real chain: it answers every chat
//! with one fixed body and a receipt signed by its registered signer, which
//! a test can make lie; for a service that registered a proof method it
//! binds and serves one fixed proof.

use super::Market;
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{get, post},
};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use zg_core::{
    B256, Domain, PaymentHeaders, Prices, Quote, Receipt, Service, SigningKey, Tier, U256,
    headers::SignedReceipt, keccak256, proof_digest, request_digest, service_id, verifiability,
};

/// The proof the fake serves for every answer.
pub(crate) const PROOF: &[u8] = b"the fake's proof of model";

/// Changes a receipt (and the key that signs it) before it is signed.
pub(crate) type Tamper = Box<dyn Fn(&mut Receipt, &mut SigningKey) + Send>;

pub(crate) struct Fake {
    pub domain: Domain,
    pub signer: SigningKey,
    pub service: Service,
    /// The body of every answer.
    pub answer: &'static str,
    /// The lie told in the next receipts (none: `Box::new(|_, _| {})`).
    pub tamper: Mutex<Tamper>,
    /// What the fake thinks it is owed (honest part).
    pub owed: Mutex<U256>,
    /// Cumulative of every voucher received, in order.
    pub vouchers: Mutex<Vec<U256>>,
    /// The prices it quotes (`GET /v1/quote`) and charges when honest;
    /// `None`: it serves no quotes and charges the listed ceilings.
    pub quoted: Mutex<Option<Prices>>,
}

impl Fake {
    /// Tells no lie from now on.
    pub(crate) fn honest(&self) {
        *self.tamper.lock().expect("tamper") = Box::new(|_, _| {});
    }
}

async fn chat(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let payment = PaymentHeaders::decode(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .expect("paid request");
    fake.vouchers
        .lock()
        .expect("vouchers")
        .push(payment.cumulative);
    let prices = fake
        .quoted
        .lock()
        .expect("quoted")
        .unwrap_or(fake.service.prices);
    let fee = prices.input * U256::from(10u64) + prices.output * U256::from(5u64);
    let owed_before = *fake.owed.lock().expect("owed");
    let mut receipt = Receipt {
        user: payment.user,
        provider: fake.service.provider,
        service: service_id(&fake.service.name),
        model_digest: fake.service.model_digest,
        request_digest: request_digest(&payment.nonce, &body),
        response_digest: keccak256(fake.answer.as_bytes()),
        input_tokens: U256::from(10u64),
        output_tokens: U256::from(5u64),
        input_price: prices.input,
        output_price: prices.output,
        cached_tokens: U256::ZERO,
        cached_price: prices.cached,
        fee,
        owed: owed_before + fee,
        proof_digest: match fake.service.verifiability.as_str() {
            verifiability::NONE => B256::ZERO,
            _ => proof_digest(PROOF),
        },
        issued_at: zg_core::now_unix(),
    };
    let mut key = fake.signer.clone();
    (fake.tamper.lock().expect("tamper"))(&mut receipt, &mut key);
    *fake.owed.lock().expect("owed") = receipt.owed;
    let signed = SignedReceipt::new(receipt.clone(), &receipt.sign(&key, &fake.domain));
    (
        [
            ("content-type", "application/json".to_owned()),
            ("x-zg-receipt", signed.to_header()),
            ("x-zg-request-id", "r1".to_owned()),
        ],
        fake.answer,
    )
}

async fn proof() -> &'static [u8] {
    PROOF
}

/// Its quote, or a 404 when it serves none (as a broker without quotes).
async fn quote(State(fake): State<Arc<Fake>>) -> axum::response::Response {
    let Some(prices) = *fake.quoted.lock().expect("quoted") else {
        return (StatusCode::NOT_FOUND, r#"{"error":{"code":"not_found"}}"#).into_response();
    };
    let now = zg_core::now_unix();
    let quote = Quote {
        provider: fake.service.provider,
        service: service_id(&fake.service.name),
        issued_at: now,
        valid_until: now + 30,
        max_output_tokens: 2048,
        tiers: vec![Tier {
            min_prompt_tokens: 0,
            min_output_tokens: 0,
            prices,
        }],
    };
    axum::Json(quote.sign(&fake.signer, &fake.domain)).into_response()
}

/// A fake broker for dev account `index`, listed on chain with one chat
/// service (`service` fills in its model, digest, prices and
/// verifiability), answering `answer` with honest receipts until told
/// otherwise.
pub(crate) async fn fake_broker(
    market: &Market,
    index: usize,
    answer: &'static str,
    service: impl FnOnce(&mut Service),
) -> Arc<Fake> {
    let provider_key = SigningKey::from_bytes(&market.chain.keys()[index]).expect("dev key");
    let signer = SigningKey::random();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut listed = Service {
        provider: provider_key.address(),
        name: "chat".into(),
        kind: "chat".into(),
        url: format!("http://{}", listener.local_addr().expect("address")),
        model: String::new(),
        model_digest: B256::ZERO,
        hardware: "cpu".into(),
        prices: zg_core::Prices::new(U256::ZERO, U256::ZERO),
        verifiability: verifiability::NONE.into(),
        signer: signer.address(),
        updated_at: 0,
        failed_at: 0,
    };
    service(&mut listed);
    market
        .deployer
        .with_key(&provider_key.to_bytes())
        .expect("provider wallet")
        .add_or_update_service(&listed, super::neuron("0.1"))
        .await
        .expect("listed");
    let fake = Arc::new(Fake {
        domain: market.deployer.domain(),
        signer,
        service: listed,
        answer,
        tamper: Mutex::new(Box::new(|_, _| {})),
        owed: Mutex::default(),
        vouchers: Mutex::default(),
        quoted: Mutex::default(),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/proofs/{id}", get(proof))
        .route("/v1/quote", get(quote))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    fake
}
