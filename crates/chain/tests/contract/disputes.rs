//! Disputes on anvil through the real client: a proof service's receipt
//! disputed with its evidence, verdicts at quorum, the slashing split,
//! expiry, unbonding stakes, failed services, and every refusal.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

use crate::common::{World, revert_of, service, tokens};
use alloy::primitives::{Address, B128, B256, Bytes, U256};
use zg_chain::{
    ChainClient, ChainError, DeployParams, DisputeRules, DisputeState, OpenedDispute, Outcome,
    bindings::ZgServing::{ZgServingErrors as E, ZgServingEvents as Ev},
};
use zg_core::{
    Domain, Evidence, Nonce, Receipt, SigningKey, Verdict, headers::SignedReceipt, keccak256,
    proof_digest, request_digest, service_id,
};

/// The listed service whose answers carry a proof of model.
const PROOF: &str = "proof";
/// The fee of every receipt, in thousandths of a token (`tokens`).
const FEE: u64 = 2;
const DAY: u64 = 86_400;

/// A proof service listed with 100 of stake under its own receipt signer,
/// three verifiers at quorum 2, and a challenger with its own wallet.
struct Court {
    w: World,
    signer: SigningKey,
    verifiers: [SigningKey; 3],
    challenger: ChainClient,
    rules: DisputeRules,
}

impl Court {
    async fn new() -> Self {
        let w = World::new().await;
        let signer = SigningKey::random();
        let mut listed = service(PROOF, signer.address());
        listed.verifiability = "zg-logits-v1".into();
        w.provider
            .add_or_update_service(&listed, tokens(100))
            .await
            .unwrap();
        let verifiers = [(); 3].map(|_| SigningKey::random());
        for v in &verifiers {
            w.owner.set_verifier(v.address(), true).await.unwrap();
        }
        w.owner.set_quorum(2).await.unwrap();
        Self {
            challenger: w.owner.with_key(&w.chain.keys()[5]).unwrap(),
            rules: w.user.dispute_rules().await.unwrap(),
            w,
            signer,
            verifiers,
        }
    }

    fn domain(&self) -> Domain {
        self.w.provider.domain()
    }

    /// Evidence of a fresh answer of the proof service issued now: `edit`
    /// changes the receipt, then `key` signs it under `domain`.
    async fn evidence_signed(
        &self,
        edit: impl FnOnce(&mut Receipt),
        key: &SigningKey,
        domain: &Domain,
    ) -> Evidence {
        let nonce = Nonce::random();
        let request = r#"{"model":"qwen2.5-0.5b-instruct","messages":[{"role":"user","content":"What is 2 + 2?"}],"max_tokens":8}"#;
        let response = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"4"}}]}"#;
        let proof = Bytes::from_static(b"zg-logits-v1: the top logits of every generated token");
        let mut receipt = Receipt {
            user: self.w.user.wallet(),
            provider: self.w.provider.wallet(),
            service: service_id(PROOF),
            model_digest: service(PROOF, Address::ZERO).model_digest,
            request_digest: request_digest(&nonce, request.as_bytes()),
            response_digest: keccak256(response),
            input_tokens: U256::from(24u64),
            output_tokens: U256::from(1u64),
            input_price: U256::from(10u64),
            output_price: U256::from(20u64),
            cached_tokens: U256::ZERO,
            cached_price: U256::ZERO,
            fee: tokens(FEE),
            owed: tokens(FEE),
            proof_digest: proof_digest(&proof),
            issued_at: self.w.now().await,
        };
        edit(&mut receipt);
        let signature = receipt.sign(key, domain);
        Evidence {
            receipt: SignedReceipt::new(receipt, &signature),
            nonce: B128::from(nonce.0),
            request: request.into(),
            response: response.into(),
            proof,
        }
    }

    /// Evidence whose receipt, changed by `edit`, the service's signer signed.
    async fn evidence_with(&self, edit: impl FnOnce(&mut Receipt)) -> Evidence {
        self.evidence_signed(edit, &self.signer, &self.domain())
            .await
    }

    async fn evidence(&self) -> Evidence {
        self.evidence_with(|_| {}).await
    }

    /// The challenger disputes `evidence` with the rules' bond.
    async fn open(&self, evidence: &Evidence) -> Result<(u64, Outcome), ChainError> {
        self.challenger
            .open_dispute(evidence, self.rules.bond)
            .await
    }

    /// Verifier `verifier` signs a verdict; another wallet relays it.
    async fn vote(&self, id: u64, verifier: usize, guilty: bool) -> Result<Outcome, ChainError> {
        let verdict = Verdict {
            dispute: id,
            guilty,
        };
        let signature = verdict.sign(&self.verifiers[verifier], &self.domain());
        self.w.other_user.submit_verdict(verdict, &signature).await
    }

    /// Disputes `evidence` and has two verifiers (the quorum) find for `guilty`.
    async fn decide(&self, evidence: &Evidence, guilty: bool) -> u64 {
        let (id, _) = self.open(evidence).await.unwrap();
        for verifier in 0..2 {
            self.vote(id, verifier, guilty).await.unwrap();
        }
        id
    }

    async fn state(&self, id: u64) -> DisputeState {
        self.w.user.dispute(id).await.unwrap().state
    }

    async fn stake(&self) -> U256 {
        self.w
            .user
            .stake_of(self.w.provider.wallet())
            .await
            .unwrap()
            .stake
    }

    async fn balance(&self, who: &ChainClient) -> U256 {
        self.w.user.balance_of(who.wallet()).await.unwrap()
    }

    /// Every neuron the contract holds is the provider's stake, someone's
    /// ledger balance (user, provider, challenger: the only ones paid) or burnt.
    async fn assert_accounted(&self) {
        let c = &self.w.user;
        let mut owned = self.stake().await + c.burned().await.unwrap();
        for who in [&self.w.user, &self.w.provider, &self.challenger] {
            owned += self.balance(who).await;
        }
        assert_eq!(c.native_balance(c.contract_address()).await.unwrap(), owned);
    }
}

#[tokio::test]
async fn a_guilty_verdict_at_quorum_slashes_the_stake_and_fails_the_service() {
    let court = Court::new().await;
    let (w, p) = (&court.w, court.w.provider.wallet());
    let evidence = court.evidence().await;
    let (id, opened) = court.open(&evidence).await.unwrap();
    let deadline = w.now().await + court.rules.voting_period;
    let receipt_digest = w
        .user
        .receipt_digest(&evidence.receipt.receipt)
        .await
        .unwrap();
    assert!(matches!(&opened.events[..], [Ev::DisputeOpened(d)]
        if d.id == U256::from(id) && d.provider == p && d.service == service_id(PROOF)
            && d.challenger == court.challenger.wallet() && d.user == w.user.wallet()
            && d.receiptDigest == receipt_digest && d.deadline == deadline));
    assert_eq!(w.user.stake_of(p).await.unwrap().open_disputes, 1);
    let open = w.user.dispute(id).await.unwrap();
    assert_eq!(
        (open.challenger, open.provider, open.user, open.service),
        (
            court.challenger.wallet(),
            p,
            w.user.wallet(),
            service_id(PROOF)
        )
    );
    assert_eq!(
        (open.bond, open.fee, open.deadline, open.state),
        (court.rules.bond, tokens(FEE), deadline, DisputeState::Open)
    );

    // One verdict each way: no side has the quorum of two yet.
    court.vote(id, 0, true).await.unwrap();
    let split = court.vote(id, 1, false).await.unwrap();
    assert!(matches!(&split.events[..], [Ev::VerdictSubmitted(v)] if !v.guilty));
    let counted = w.user.dispute(id).await.unwrap();
    assert_eq!(
        (
            counted.guilty_votes,
            counted.not_guilty_votes,
            counted.state
        ),
        (1, 1, DisputeState::Open)
    );
    assert!(
        w.user
            .has_voted(id, court.verifiers[0].address())
            .await
            .unwrap()
    );
    assert!(
        !w.user
            .has_voted(id, court.verifiers[2].address())
            .await
            .unwrap()
    );

    // Half the 100 of stake is slashed: the fee (2) to the user, half the
    // other 48 to the challenger with its bond, 24 burnt.
    let decided = court.vote(id, 2, true).await.unwrap();
    assert!(
        matches!(&decided.events[..], [Ev::VerdictSubmitted(_), Ev::Slashed(s), Ev::DisputeResolved(r)]
        if s.provider == p && s.amount == tokens(50) && s.toUser == tokens(FEE)
            && s.reward == tokens(24) && s.burnt == tokens(24) && r.state == 2)
    );
    assert_eq!(court.balance(&w.user).await, tokens(FEE));
    assert_eq!(
        court.balance(&court.challenger).await,
        court.rules.bond + tokens(24)
    );
    assert_eq!(court.balance(&w.provider).await, U256::ZERO);
    assert_eq!(w.user.burned().await.unwrap(), tokens(24));
    assert_eq!(court.stake().await, tokens(50));
    assert_eq!(w.user.stake_of(p).await.unwrap().open_disputes, 0);
    assert_eq!(court.state(id).await, DisputeState::Guilty);
    let failed = w.user.service(p, PROOF).await.unwrap().expect("listed");
    assert_eq!(failed.failed_at, w.now().await);
    court.assert_accounted().await;
}

#[tokio::test]
async fn a_not_guilty_verdict_pays_the_bond_to_the_provider() {
    let court = Court::new().await;
    let w = &court.w;
    let id = court.decide(&court.evidence().await, false).await;
    assert_eq!(court.state(id).await, DisputeState::NotGuilty);
    assert_eq!(court.balance(&w.provider).await, court.rules.bond);
    assert_eq!(court.balance(&court.challenger).await, U256::ZERO);
    assert_eq!(court.stake().await, tokens(100));
    assert_eq!(w.user.burned().await.unwrap(), U256::ZERO);
    let p = w.provider.wallet();
    assert_eq!(w.user.stake_of(p).await.unwrap().open_disputes, 0);
    let listed = w.user.service(p, PROOF).await.unwrap().expect("listed");
    assert_eq!(listed.failed_at, 0);
    court.assert_accounted().await;
}

#[tokio::test]
async fn a_fee_above_the_slash_gets_the_user_the_whole_slash() {
    let court = Court::new().await;
    let evidence = court.evidence_with(|r| r.fee = tokens(80)).await;
    court.decide(&evidence, true).await;
    // The 50 slashed all go to the user: nothing is left to reward or burn.
    assert_eq!(court.balance(&court.w.user).await, tokens(50));
    assert_eq!(court.balance(&court.challenger).await, court.rules.bond);
    assert_eq!(court.w.user.burned().await.unwrap(), U256::ZERO);
    court.assert_accounted().await;
}

#[tokio::test]
async fn a_dispute_without_quorum_expires_after_its_deadline_and_the_bond_goes_back() {
    let court = Court::new().await;
    let w = &court.w;
    let (id, _) = court.open(&court.evidence().await).await.unwrap();
    court.vote(id, 0, true).await.unwrap();
    let deadline = w.user.dispute(id).await.unwrap().deadline;
    match revert_of(w.user.expire_dispute(id).await) {
        E::VotingNotOver(e) => assert_eq!((e.id, e.deadline), (U256::from(id), deadline)),
        other => panic!("unexpected {other:?}"),
    }

    w.chain
        .advance_time(court.rules.voting_period + 1)
        .await
        .unwrap();
    assert!(matches!(
        revert_of(court.vote(id, 1, true).await),
        E::VotingClosed(e) if e.deadline == deadline
    ));
    let expired = w.user.expire_dispute(id).await.unwrap();
    assert!(matches!(&expired.events[..], [Ev::DisputeResolved(r)] if r.state == 4));
    assert_eq!(court.state(id).await, DisputeState::Expired);
    assert_eq!(court.balance(&court.challenger).await, court.rules.bond);
    assert_eq!(court.stake().await, tokens(100));
    assert!(matches!(
        revert_of(w.user.expire_dispute(id).await),
        E::DisputeNotOpen(e) if e.state == 4
    ));
    court.assert_accounted().await;
}

#[tokio::test]
async fn an_unbonding_stake_stays_slashable_and_stays_while_a_dispute_is_open() {
    let court = Court::new().await;
    let (w, p) = (&court.w, court.w.provider.wallet());
    // Two answers given while the service was listed.
    let (first, second) = (court.evidence().await, court.evidence().await);
    w.provider.remove_service(PROOF).await.unwrap();
    let unbond_at = w.user.stake_of(p).await.unwrap().unbond_at;
    assert_ne!(unbond_at, 0);

    let id = court.decide(&first, true).await;
    assert_eq!(court.state(id).await, DisputeState::Guilty);
    assert_eq!(court.stake().await, tokens(50));

    let (open, _) = court.open(&second).await.unwrap();
    w.chain
        .advance_time(court.rules.unbonding_period + 1)
        .await
        .unwrap();
    assert!(w.now().await > unbond_at);
    assert!(matches!(
        revert_of(w.provider.withdraw_stake().await),
        E::DisputesOpen(e) if e.provider == p && e.open == U256::from(1)
    ));
    w.user.expire_dispute(open).await.unwrap();
    let withdrawn = w.provider.withdraw_stake().await.unwrap();
    assert!(matches!(&withdrawn.events[..], [Ev::StakeReturned(s)] if s.amount == tokens(50)));
}

#[tokio::test]
async fn a_failed_service_is_listed_again_only_with_fresh_stake() {
    let court = Court::new().await;
    let (w, p) = (&court.w, court.w.provider.wallet());
    court.decide(&court.evidence().await, true).await;
    let mut listed = w.user.service(p, PROOF).await.unwrap().expect("listed");
    assert_ne!(listed.failed_at, 0);

    // Another service tops the slashed stake (50) up past the minimum: the
    // failed one still needs a minimum stake sent with it.
    w.provider
        .add_or_update_service(&service("extra", Address::ZERO), tokens(100))
        .await
        .unwrap();
    listed.url = "https://provider.example/fixed".into();
    for stake in [U256::ZERO, tokens(99)] {
        assert!(matches!(
            revert_of(w.provider.add_or_update_service(&listed, stake).await),
            E::FreshStakeRequired(e) if e.name == PROOF && e.required == tokens(100)
        ));
    }
    w.provider
        .add_or_update_service(&listed, tokens(100))
        .await
        .unwrap();
    let relisted = w.user.service(p, PROOF).await.unwrap().expect("listed");
    assert_eq!(
        (relisted.failed_at, relisted.url.as_str()),
        (0, "https://provider.example/fixed")
    );
    assert_eq!(court.stake().await, tokens(250));
}

#[tokio::test]
async fn re_keying_or_removing_a_service_leaves_its_past_receipts_disputable() {
    let court = Court::new().await;
    let (w, p) = (&court.w, court.w.provider.wallet());
    let before = court.evidence().await;
    // The provider replaces its receipt signer (and a moment later would
    // again): receipts signed by the old key stay disputable for a window.
    let mut listed = w.user.service(p, PROOF).await.unwrap().expect("listed");
    let new_signer = SigningKey::random();
    listed.signer = new_signer.address();
    w.provider
        .add_or_update_service(&listed, U256::ZERO)
        .await
        .unwrap();
    listed.signer = SigningKey::random().address();
    assert!(matches!(
        revert_of(w.provider.add_or_update_service(&listed, U256::ZERO).await),
        E::CommitmentHeld(e) if e.name == PROOF
    ));
    let id = court.decide(&before, true).await;
    assert_eq!(court.state(id).await, DisputeState::Guilty);
    // Receipts of the new key are checked against it.
    let after = court
        .evidence_signed(|_| {}, &new_signer, &court.domain())
        .await;
    court
        .open(&after)
        .await
        .expect("the new signer's receipt is disputable");

    // Removing the service does not end it either, and once the window is
    // over the old key's receipts are refused as any stranger's.
    let old = court.evidence().await;
    w.provider.remove_service(PROOF).await.unwrap();
    court
        .open(&old)
        .await
        .expect("a removed service's receipt is disputable");
    w.chain
        .advance_time(court.rules.window + 301)
        .await
        .unwrap();
    let late = court.evidence().await;
    assert!(matches!(
        revert_of(court.open(&late).await),
        E::BadReceiptSignature(_)
    ));
}

#[tokio::test]
async fn forged_and_foreign_receipts_are_refused() {
    let court = Court::new().await;
    let w = &court.w;
    let signer = court.signer.address();
    let forger = SigningKey::random();
    let forged = court
        .evidence_signed(|_| {}, &forger, &court.domain())
        .await;
    match revert_of(court.open(&forged).await) {
        E::BadReceiptSignature(e) => {
            assert_eq!((e.recovered, e.signer), (forger.address(), signer))
        }
        other => panic!("unexpected {other:?}"),
    }

    let other_chain = Domain::new(w.chain.chain_id() + 1, w.provider.contract_address());
    let second = ChainClient::deploy(w.chain.url(), &w.chain.keys()[0], DeployParams::default())
        .await
        .unwrap();
    for domain in [other_chain, second.domain()] {
        let foreign = court.evidence_signed(|_| {}, &court.signer, &domain).await;
        assert!(matches!(
            revert_of(court.open(&foreign).await),
            E::BadReceiptSignature(e) if e.signer == signer && e.recovered != signer
        ));
    }
    assert_eq!(w.user.dispute_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_receipt_of_another_service_or_model_is_refused() {
    let court = Court::new().await;
    let w = &court.w;
    let unknown = [
        court
            .evidence_with(|r| r.service = service_id("other"))
            .await,
        court
            .evidence_with(|r| r.provider = w.other_provider.wallet())
            .await,
    ];
    for evidence in &unknown {
        let r = &evidence.receipt.receipt;
        assert!(matches!(
            revert_of(court.open(evidence).await),
            E::UnknownService(e) if (e.provider, e.service) == (r.provider, r.service)
        ));
    }

    // The same provider's service without a proof method.
    w.provider
        .add_or_update_service(&service("plain", court.signer.address()), U256::ZERO)
        .await
        .unwrap();
    let plain = court
        .evidence_with(|r| r.service = service_id("plain"))
        .await;
    assert!(matches!(
        revert_of(court.open(&plain).await),
        E::NoProofMethod(e) if e.service == service_id("plain")
    ));

    let other_model = B256::repeat_byte(0xcd);
    let wrong = court.evidence_with(|r| r.model_digest = other_model).await;
    match revert_of(court.open(&wrong).await) {
        E::WrongModel(e) => assert_eq!(
            (e.registered, e.receipt),
            (service(PROOF, Address::ZERO).model_digest, other_model)
        ),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn evidence_that_is_not_what_the_receipt_signed_is_refused() {
    let court = Court::new().await;
    let good = court.evidence().await;
    let mut request = good.clone();
    request.request.push(' ');
    let mut nonce = good.clone();
    nonce.nonce = B128::repeat_byte(0x77);
    let mut response = good.clone();
    response.response = response.response.replace('4', "5");
    let mut proof = good.clone();
    proof.proof = Bytes::from_static(b"another proof");
    // A receipt that signed for no proof can't be disputed, whatever proof comes.
    let mut no_proof = court.evidence_with(|r| r.proof_digest = B256::ZERO).await;
    no_proof.proof = Bytes::new();
    for (evidence, part) in [
        (request, 0),
        (nonce, 0),
        (response, 1),
        (proof, 2),
        (no_proof, 2),
    ] {
        match revert_of(court.open(&evidence).await) {
            E::DigestMismatch(e) => {
                assert!(e.part == part && e.signed != e.computed, "{e:?}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    court.open(&good).await.unwrap();
}

#[tokio::test]
async fn a_wrong_bond_or_oversized_evidence_is_refused() {
    let court = Court::new().await;
    let w = &court.w;
    let evidence = court.evidence().await;
    let bond = court.rules.bond;
    for sent in [U256::ZERO, bond - U256::from(1), bond + U256::from(1)] {
        match revert_of(court.challenger.open_dispute(&evidence, sent).await) {
            E::WrongBond(e) => assert_eq!((e.sent, e.required), (sent, bond)),
            other => panic!("unexpected {other:?}"),
        }
    }

    let size = evidence.request.len() + evidence.response.len() + evidence.proof.len();
    let limit = |max: usize| DisputeRules {
        max_evidence_bytes: max as u32,
        ..court.rules
    };
    w.owner.set_dispute_rules(limit(size - 1)).await.unwrap();
    match revert_of(court.open(&evidence).await) {
        E::EvidenceTooLarge(e) => {
            assert_eq!((e.size, e.max), (U256::from(size), U256::from(size - 1)))
        }
        other => panic!("unexpected {other:?}"),
    }
    w.owner.set_dispute_rules(limit(size)).await.unwrap();
    court.open(&evidence).await.unwrap();
}

#[tokio::test]
async fn a_receipt_outside_its_dispute_window_is_refused() {
    let court = Court::new().await;
    let w = &court.w;
    // Dated beyond the five minutes of clock skew the contract allows.
    let future = court.evidence_with(|r| r.issued_at += 7 * 60).await;
    assert!(matches!(
        revert_of(court.open(&future).await),
        E::ReceiptFromFuture(e) if e.issuedAt == future.receipt.receipt.issued_at
    ));

    let old = court.evidence().await;
    let issued = old.receipt.receipt.issued_at;
    w.chain.advance_time(court.rules.window + 1).await.unwrap();
    match revert_of(court.open(&old).await) {
        E::DisputeWindowClosed(e) => assert_eq!(
            (e.issuedAt, e.closedAt),
            (issued, U256::from(issued + court.rules.window))
        ),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_receipt_is_disputed_once() {
    let court = Court::new().await;
    let evidence = court.evidence().await;
    let (id, _) = court.open(&evidence).await.unwrap();
    let digest = court.w.user.dispute(id).await.unwrap().receipt_digest;
    match revert_of(court.open(&evidence).await) {
        E::AlreadyDisputed(e) => assert_eq!((e.receiptDigest, e.id), (digest, U256::from(id))),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn verdicts_of_strangers_repeated_or_after_the_decision_are_refused() {
    let court = Court::new().await;
    let w = &court.w;
    let (id, _) = court.open(&court.evidence().await).await.unwrap();
    let relay = |verdict: Verdict, key: &SigningKey, domain: &Domain| {
        let signature = verdict.sign(key, domain);
        async move { revert_of(w.user.submit_verdict(verdict, &signature).await) }
    };
    let guilty = Verdict {
        dispute: id,
        guilty: true,
    };

    let stranger = SigningKey::random();
    assert!(matches!(
        relay(guilty, &stranger, &court.domain()).await,
        E::NotVerifier(e) if e.signer == stranger.address()
    ));
    // A verifier's signature moved to the other side, or made for another
    // chain, recovers to someone else.
    let v0 = &court.verifiers[0];
    let signature = guilty.sign(v0, &court.domain());
    let flipped = Verdict {
        guilty: false,
        ..guilty
    };
    assert!(matches!(
        revert_of(w.user.submit_verdict(flipped, &signature).await),
        E::NotVerifier(e) if e.signer != v0.address()
    ));
    let other_chain = Domain::new(w.chain.chain_id() + 1, w.user.contract_address());
    assert!(matches!(
        relay(guilty, v0, &other_chain).await,
        E::NotVerifier(e) if e.signer != v0.address()
    ));

    court.vote(id, 0, true).await.unwrap();
    for side in [true, false] {
        assert!(matches!(
            revert_of(court.vote(id, 0, side).await),
            E::AlreadyVoted(e) if e.verifier == v0.address()
        ));
    }
    court.vote(id, 1, true).await.unwrap();
    assert!(matches!(
        revert_of(court.vote(id, 2, false).await),
        E::DisputeNotOpen(e) if e.state == 2
    ));
    assert!(matches!(
        revert_of(court.vote(id + 1, 2, true).await),
        E::DisputeNotOpen(e) if e.state == 0
    ));

    // A verifier the owner removed no longer counts.
    w.owner
        .set_verifier(court.verifiers[2].address(), false)
        .await
        .unwrap();
    let (next, _) = court.open(&court.evidence().await).await.unwrap();
    assert!(matches!(
        revert_of(court.vote(next, 2, true).await),
        E::NotVerifier(_)
    ));
}

#[tokio::test]
async fn the_owner_sets_verifiers_quorum_and_rules_within_bounds() {
    let w = World::new().await;
    let (a, b) = (Address::repeat_byte(0xa1), Address::repeat_byte(0xb2));
    assert_eq!(w.user.verifier_set().await.unwrap(), (0, 0));
    // The first verifier makes a quorum of one.
    let first = w.owner.set_verifier(a, true).await.unwrap();
    assert!(
        matches!(&first.events[..], [Ev::VerifierSet(v), Ev::QuorumSet(q)]
        if v.verifier == a && v.active && q.quorum == 1)
    );
    assert!(w.user.is_verifier(a).await.unwrap());
    for (who, active) in [(a, true), (b, false), (Address::ZERO, true)] {
        assert!(matches!(
            revert_of(w.owner.set_verifier(who, active).await),
            E::VerifierUnchanged(_)
        ));
    }
    w.owner.set_verifier(b, true).await.unwrap();
    assert_eq!(w.user.verifier_set().await.unwrap(), (2, 1));
    for quorum in [0, 3] {
        match revert_of(w.owner.set_quorum(quorum).await) {
            E::QuorumOutOfBounds(e) => assert_eq!((e.quorum, e.verifiers), (quorum, 2)),
            other => panic!("unexpected {other:?}"),
        }
    }
    w.owner.set_quorum(2).await.unwrap();
    assert_eq!(w.user.verifier_set().await.unwrap(), (2, 2));
    // Removing a verifier never leaves a quorum the rest cannot reach.
    w.owner.set_verifier(b, false).await.unwrap();
    assert_eq!(w.user.verifier_set().await.unwrap(), (1, 1));
    w.owner.set_verifier(b, true).await.unwrap();
    w.owner.set_quorum(2).await.unwrap();

    assert_eq!(
        w.user.dispute_rules().await.unwrap(),
        DisputeRules {
            window: DAY,
            voting_period: DAY,
            unbonding_period: 2 * DAY,
            bond: tokens(10),
            slash_bps: 5000,
            reward_bps: 5000,
            max_evidence_bytes: 64 * 1024,
        }
    );
    // Every bound is inclusive.
    let low = DisputeRules {
        window: 60,
        voting_period: 60,
        // At least the window plus the 5 minutes a receipt may be dated ahead.
        unbonding_period: 360,
        bond: U256::from(1),
        slash_bps: 1,
        reward_bps: 0,
        max_evidence_bytes: 1,
    };
    let high = DisputeRules {
        window: 30 * DAY,
        voting_period: 30 * DAY,
        unbonding_period: 90 * DAY,
        bond: tokens(1_000_000_000),
        slash_bps: 10_000,
        reward_bps: 10_000,
        max_evidence_bytes: 256 * 1024,
    };
    for rules in [low, high] {
        let set = w.owner.set_dispute_rules(rules).await.unwrap();
        assert!(matches!(&set.events[..], [Ev::DisputeParamsSet(_)]));
        assert_eq!(w.user.dispute_rules().await.unwrap(), rules);
    }
    for rules in [
        DisputeRules { window: 59, ..low },
        DisputeRules {
            window: 30 * DAY + 1,
            ..high
        },
        DisputeRules {
            voting_period: 59,
            ..low
        },
        DisputeRules {
            voting_period: 30 * DAY + 1,
            ..high
        },
        // Unbonding shorter than the window (plus the clock skew) would let
        // a stake leave before its last receipts can be disputed.
        DisputeRules {
            window: 3600,
            unbonding_period: 3899,
            ..low
        },
        DisputeRules {
            unbonding_period: 90 * DAY + 1,
            ..high
        },
        DisputeRules {
            bond: U256::ZERO,
            ..low
        },
        DisputeRules {
            bond: tokens(1_000_000_000) + U256::from(1),
            ..high
        },
        DisputeRules {
            slash_bps: 0,
            ..low
        },
        DisputeRules {
            slash_bps: 10_001,
            ..high
        },
        DisputeRules {
            reward_bps: 10_001,
            ..high
        },
        DisputeRules {
            max_evidence_bytes: 0,
            ..low
        },
        DisputeRules {
            max_evidence_bytes: 256 * 1024 + 1,
            ..high
        },
    ] {
        assert!(
            matches!(
                revert_of(w.owner.set_dispute_rules(rules).await),
                E::DisputeParamsOutOfBounds(_)
            ),
            "{rules:?}"
        );
    }
    assert_eq!(w.user.dispute_rules().await.unwrap(), high);
}

#[tokio::test]
async fn dispute_settings_from_anyone_but_the_owner_are_refused() {
    let w = World::new().await;
    let rules = w.user.dispute_rules().await.unwrap();
    let not_owner =
        |e: E| matches!(e, E::OwnableUnauthorizedAccount(a) if a.account == w.user.wallet());
    assert!(not_owner(revert_of(
        w.user.set_verifier(w.user.wallet(), true).await
    )));
    assert!(not_owner(revert_of(w.user.set_quorum(1).await)));
    assert!(not_owner(revert_of(
        w.user
            .set_dispute_rules(DisputeRules {
                slash_bps: 10_000,
                ..rules
            })
            .await
    )));
    assert_eq!(w.user.verifier_set().await.unwrap(), (0, 0));
    assert_eq!(w.user.dispute_rules().await.unwrap(), rules);
}

#[tokio::test]
async fn a_disputes_evidence_reads_back_from_the_transaction_that_opened_it() {
    let court = Court::new().await;
    let w = &court.w;
    let evidence = court.evidence().await;
    let (id, opened) = court.open(&evidence).await.unwrap();
    assert_eq!(w.user.dispute_count().await.unwrap(), 1);
    let deadline = w.user.dispute(id).await.unwrap().deadline;
    assert_eq!(
        w.user.opened_disputes(0).await.unwrap(),
        vec![OpenedDispute {
            id,
            provider: w.provider.wallet(),
            service: service_id(PROOF),
            deadline,
            block: opened.block,
            tx_hash: opened.tx_hash,
        }]
    );
    assert_eq!(
        w.user.dispute_evidence(opened.tx_hash).await.unwrap(),
        evidence
    );

    // Any other transaction, or none, is not evidence.
    let deposit = w.user.deposit(tokens(1)).await.unwrap();
    for tx in [deposit.tx_hash, B256::repeat_byte(9)] {
        assert!(matches!(
            w.user.dispute_evidence(tx).await,
            Err(ChainError::Unexpected { .. })
        ));
    }
}
