//! Fine-tuning jobs: the order reserves its maximum fee from escrow, and
//! every end of a job (settled with or without acknowledgement, abandoned,
//! cancelled) pays and returns exactly the reservation.

use crate::common::{World, service, tokens};
use alloy::primitives::{Address, B128, B256, U256};
use zg_chain::{
    ChainError, FineTuningRules, FineTuningTerms, JobState,
    bindings::{FineTuning::FineTuningErrors as J, ZgServing::ZgServingErrors as E},
};
use zg_core::{
    SigningKey,
    fine_tuning::{Hyperparameters, Order},
    seal,
};

const BASE: B256 = B256::repeat_byte(0xab);
/// The service's ceiling: neuron per trained token.
const PRICE: u64 = 10;

fn job_revert<T: std::fmt::Debug>(result: Result<T, ChainError>) -> J {
    match result {
        Err(e) => match e.job_revert() {
            Some(revert) => revert.clone(),
            None => panic!("expected a fine-tuning revert, got {e}"),
        },
        Ok(v) => panic!("expected a revert, got {v:?}"),
    }
}

/// A world whose provider lists the fine-tuning service "tune" (base model
/// BASE, at most 3 epochs) and whose user has 1 token in escrow there.
async fn tuning_world() -> World {
    let w = World::funded(tokens(2000), tokens(1000)).await;
    let mut listed = service("tune", w.provider.wallet());
    listed.kind = "fine-tuning".into();
    listed.prices = zg_core::Prices::new(U256::from(PRICE), U256::ZERO);
    w.provider
        .add_or_update_service(&listed, tokens(100))
        .await
        .expect("lists the fine-tuning service");
    let terms = FineTuningTerms {
        base_models: vec![BASE],
        max_file_bytes: 1 << 20,
        max_epochs: 3,
    };
    w.provider
        .set_fine_tuning_terms("tune", &terms)
        .await
        .expect("sets its terms");
    w
}

/// A fresh nonce per order, so equal orders are distinct jobs.
fn next_nonce() -> B128 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    B128::left_padding_from(&n.to_be_bytes())
}

fn order(w: &World, max_fee: U256) -> Order {
    Order {
        user: w.user.wallet(),
        provider: w.provider.wallet(),
        service: "tune".into(),
        base_model: BASE,
        training_file: zg_core::fine_tuning::file_hash(b"{\"messages\":[]}"),
        validation_file: None,
        hyperparameters: Hyperparameters::default(),
        max_fee,
        start_by: zg_core::now_unix() + 30 * 86_400,
        nonce: next_nonce(),
    }
}

/// The provider starts `order` signed by the user.
async fn start(w: &World, order: &Order) -> B256 {
    let signature = order.sign(
        &w.user_key,
        w.provider.chain_id(),
        w.provider.fine_tuning_address(),
    );
    let (id, _) = w
        .provider
        .start_job(order, &signature)
        .await
        .expect("starts the job");
    id
}

#[tokio::test]
async fn an_acknowledged_job_pays_its_fee_and_publishes_the_key_to_the_signer() {
    let w = tuning_world().await;
    let (user, provider) = (w.user.wallet(), w.provider.wallet());
    let order = order(&w, tokens(100));
    let signature = order.sign(
        &w.user_key,
        w.provider.chain_id(),
        w.provider.fine_tuning_address(),
    );
    let (id, _) = w.provider.start_job(&order, &signature).await.unwrap();
    assert_eq!(
        w.escrow().await.0,
        tokens(900),
        "the maximum fee is reserved"
    );
    let job = w.user.job(id).await.unwrap();
    assert_eq!(
        (job.user, job.signer, job.state, job.reserved),
        (user, user, JobState::Training, tokens(100))
    );
    // An order starts one job only.
    assert!(matches!(
        job_revert(w.provider.start_job(&order, &signature).await),
        J::JobExists(_)
    ));

    let sealed_adapter = b"sealed adapter bytes";
    let deliverable = zg_core::keccak256(sealed_adapter);
    let fee = U256::from(3_000u64 * PRICE);
    w.provider
        .deliver_job(id, deliverable, U256::from(3_000), fee)
        .await
        .unwrap();
    // The provider cannot settle the full fee before the user acknowledges.
    assert!(matches!(
        job_revert(w.provider.settle_job(id, &[1; 81]).await),
        J::TooEarly(_)
    ));
    // Only the user (or the order's signer) acknowledges.
    assert!(matches!(
        job_revert(w.other_user.acknowledge_job(id).await),
        J::NotUser(_)
    ));
    w.user.acknowledge_job(id).await.unwrap();

    let key = seal::ContentKey::random();
    let sealed_key = seal::seal_key(&key, &signature, &id).unwrap();
    let before = w.user.balance_of(provider).await.unwrap();
    w.provider.settle_job(id, &sealed_key).await.unwrap();
    assert_eq!(w.user.balance_of(provider).await.unwrap(), before + fee);
    assert_eq!(
        w.escrow().await,
        (tokens(1000) - fee, U256::ZERO),
        "the rest returns, and a job's fee is not a voucher's settled total"
    );
    let published = w.user.job_content_key(id).await.unwrap();
    assert_eq!(seal::open_key(&published, &w.user_key, &id).unwrap(), key);
    assert_eq!(w.user.job(id).await.unwrap().state, JobState::Settled);
    assert!(matches!(
        job_revert(w.provider.settle_job(id, &sealed_key).await),
        J::WrongState(_)
    ));
}

#[tokio::test]
async fn the_contract_refuses_orders_outside_the_terms_and_the_escrow() {
    let w = tuning_world().await;
    let fine_tuning = w.provider.fine_tuning_address();
    let chain_id = w.provider.chain_id();

    // Signed by a stranger.
    let o = order(&w, tokens(10));
    let forged = o.sign(&SigningKey::random(), chain_id, fine_tuning);
    assert!(matches!(
        job_revert(w.provider.start_job(&o, &forged).await),
        J::BadOrderSignature(_)
    ));
    // Past its startBy.
    let mut stale = order(&w, tokens(10));
    stale.start_by = zg_core::now_unix() - 10;
    let sig = stale.sign(&w.user_key, chain_id, fine_tuning);
    let refused = w.provider.start_job(&stale, &sig).await.unwrap_err();
    assert!(
        matches!(refused.job_revert(), Some(J::OrderExpired(_))),
        "{refused}"
    );
    assert!(refused.to_string().contains("sign a new one"), "{refused}");
    // Another base model, too many epochs.
    let mut other_model = order(&w, tokens(10));
    other_model.base_model = B256::repeat_byte(1);
    let sig = other_model.sign(&w.user_key, chain_id, fine_tuning);
    assert!(matches!(
        job_revert(w.provider.start_job(&other_model, &sig).await),
        J::BaseModelNotAccepted(_)
    ));
    let mut long = order(&w, tokens(10));
    long.hyperparameters.epochs = 4;
    let sig = long.sign(&w.user_key, chain_id, fine_tuning);
    assert!(matches!(
        job_revert(w.provider.start_job(&long, &sig).await),
        J::BadEpochs(_)
    ));
    // More than the escrow holds: the escrow's own error comes through.
    let big = order(&w, tokens(1001));
    let sig = big.sign(&w.user_key, chain_id, fine_tuning);
    let refused = w.provider.start_job(&big, &sig).await.unwrap_err();
    assert!(
        matches!(refused.revert(), Some(E::InsufficientEscrow(_))),
        "{refused}"
    );
    // Only the named provider may start it.
    let o = order(&w, tokens(10));
    let sig = o.sign(&w.user_key, chain_id, fine_tuning);
    assert!(matches!(
        job_revert(w.other_provider.start_job(&o, &sig).await),
        J::NotProvider(_)
    ));
    // Nobody but the FineTuning contract touches the reservation hooks.
    let direct = w
        .user
        .contract()
        .reserveForJob(w.user.wallet(), w.provider.wallet(), U256::from(1))
        .call()
        .await;
    assert!(direct.is_err(), "reserveForJob is FineTuning's alone");
    // A chat service cannot take jobs or terms.
    w.provider
        .add_or_update_service(&service("chat", Address::ZERO), U256::ZERO)
        .await
        .unwrap();
    let terms = FineTuningTerms {
        base_models: vec![BASE],
        max_file_bytes: 1,
        max_epochs: 1,
    };
    assert!(matches!(
        job_revert(w.provider.set_fine_tuning_terms("chat", &terms).await),
        J::NotFineTuning(_)
    ));
    assert_eq!(w.escrow().await.0, tokens(1000), "nothing was reserved");
}

#[tokio::test]
async fn fees_stay_within_the_reservation_and_the_price() {
    let w = tuning_world().await;
    let id = start(&w, &order(&w, U256::from(1_000))).await;
    assert!(matches!(
        job_revert(
            w.provider
                .deliver_job(
                    id,
                    B256::repeat_byte(1),
                    U256::from(1_000),
                    U256::from(1_001)
                )
                .await
        ),
        J::FeeAboveReserved(_)
    ));
    assert!(matches!(
        job_revert(
            w.provider
                .deliver_job(id, B256::repeat_byte(1), U256::from(10), U256::from(101))
                .await
        ),
        J::FeeAbovePrice(_)
    ));
    assert!(matches!(
        job_revert(
            w.other_provider
                .deliver_job(id, B256::repeat_byte(1), U256::from(10), U256::from(100))
                .await
        ),
        J::NotProvider(_)
    ));
}

#[tokio::test]
async fn an_unacknowledged_delivery_pays_only_the_penalty_share() {
    let w = tuning_world().await;
    let rules = w.user.fine_tuning_rules().await.unwrap();
    let id = start(&w, &order(&w, tokens(100))).await;
    let fee = tokens(50);
    w.provider
        .deliver_job(
            id,
            B256::repeat_byte(1),
            tokens(50) / U256::from(PRICE),
            fee,
        )
        .await
        .unwrap();
    // A second job starts while the first waits for its acknowledgement.
    let second = start(&w, &order(&w, tokens(100))).await;
    assert_eq!(w.user.job(second).await.unwrap().state, JobState::Training);

    w.chain.advance_time(rules.ack_timeout).await.unwrap();
    let provider = w.provider.wallet();
    let before = w.user.balance_of(provider).await.unwrap();
    w.provider.settle_job(id, &[]).await.unwrap();
    let penalty = fee * U256::from(rules.penalty_bps) / U256::from(10_000);
    assert!(!penalty.is_zero());
    assert_eq!(w.user.balance_of(provider).await.unwrap(), before + penalty);
    assert_eq!(
        w.escrow().await.0,
        tokens(1000) - tokens(100) - penalty,
        "the first job's reservation came back less the penalty; the second's is held"
    );
    assert!(w.user.job_content_key(id).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_undelivered_job_is_abandoned_and_a_cancelled_one_costs_nothing() {
    let w = tuning_world().await;
    let rules = FineTuningRules {
        delivery_timeout: 600,
        ack_timeout: 600,
        penalty_bps: 500,
    };
    assert!(
        w.provider.set_fine_tuning_rules(rules).await.is_err(),
        "owner only"
    );
    w.owner.set_fine_tuning_rules(rules).await.unwrap();
    assert_eq!(w.user.fine_tuning_rules().await.unwrap(), rules);

    let late = start(&w, &order(&w, tokens(100))).await;
    assert!(matches!(
        job_revert(w.user.abandon_job(late).await),
        J::TooEarly(_)
    ));
    w.chain.advance_time(600).await.unwrap();
    assert!(matches!(
        job_revert(w.other_user.abandon_job(late).await),
        J::NotUser(_)
    ));
    w.user.abandon_job(late).await.unwrap();
    assert_eq!(w.user.job(late).await.unwrap().state, JobState::Abandoned);
    // A provider cannot deliver an abandoned job.
    assert!(matches!(
        job_revert(
            w.provider
                .deliver_job(late, B256::repeat_byte(1), U256::from(1), U256::from(1))
                .await
        ),
        J::WrongState(_)
    ));

    let cancelled = start(&w, &order(&w, tokens(100))).await;
    w.provider.cancel_job(cancelled).await.unwrap();
    assert_eq!(
        w.user.job(cancelled).await.unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(
        w.escrow().await.0,
        tokens(1000),
        "both reservations returned"
    );
}

#[tokio::test]
async fn a_reservation_is_out_of_reach_of_refunds() {
    let w = tuning_world().await;
    start(&w, &order(&w, tokens(800))).await;
    let refused = w
        .user
        .request_refund(w.provider.wallet(), tokens(300))
        .await
        .unwrap_err();
    assert!(
        matches!(refused.revert(), Some(E::InsufficientEscrow(_))),
        "{refused}"
    );
    w.user
        .request_refund(w.provider.wallet(), tokens(200))
        .await
        .unwrap();
}
