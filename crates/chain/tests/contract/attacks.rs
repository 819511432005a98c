//! Each attack is rejected (reported, nothing moves) or harmless.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

use crate::common::{World, raw, service, sig_bytes, tokens, voucher_for};
use alloy::{
    primitives::{Address, Bytes, U256, address},
    providers::Provider,
    rpc::types::TransactionRequest,
    sol_types::{SolCall, SolInterface},
};
use zg_chain::{
    ChainClient, DeployParams, RejectReason, Settlement,
    bindings::ZgServing::{self, ZgServingErrors},
};
use zg_core::{Domain, SigningKey};
use zg_devnet::contracts::reentrancy::ReentrancyAttacker;

/// Settles one raw voucher and asserts it was rejected for `reason` with nothing paid.
async fn assert_rejected(w: &World, settlement: Settlement, reason: RejectReason) {
    assert_eq!(settlement.settled, vec![]);
    assert_eq!(settlement.rejected.len(), 1);
    assert_eq!(settlement.rejected[0].reason, reason);
    assert_eq!(settlement.paid, U256::ZERO);
    assert_eq!(w.escrow().await, (tokens(600), U256::ZERO));
    assert_eq!(
        w.provider.balance_of(w.provider.wallet()).await.unwrap(),
        U256::ZERO
    );
}

#[tokio::test]
async fn a_forged_or_tampered_signature_is_rejected() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    let v = voucher_for(w.user.wallet(), w.provider.wallet(), tokens(100));
    let forged = v.sign(&SigningKey::random(), &w.provider.domain());
    assert_rejected(
        &w,
        w.provider.settle(&[(v, forged)]).await.unwrap(),
        RejectReason::BadSignature,
    )
    .await;

    // The provider raises the amount of a voucher the user really signed.
    let (genuine, sig) = w.voucher(tokens(100));
    let raised = zg_core::Voucher {
        cumulative: tokens(600),
        ..genuine
    };
    assert_rejected(
        &w,
        w.provider.settle(&[(raised, sig)]).await.unwrap(),
        RejectReason::BadSignature,
    )
    .await;

    // Garbage: wrong length, bad v, all zeros.
    for bad in [
        sig.as_bytes()[..64].to_vec(),
        [&sig.as_bytes()[..64], &[29u8][..]].concat(),
        vec![0u8; 65],
    ] {
        let s = w
            .provider
            .settle_raw(vec![raw(&genuine)], vec![Bytes::from(bad)])
            .await
            .unwrap();
        assert_rejected(&w, s, RejectReason::BadSignature).await;
    }
}

#[tokio::test]
async fn a_voucher_for_another_provider_is_rejected() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    let q = w.other_provider.wallet();
    let v = voucher_for(w.user.wallet(), q, tokens(100));
    let sig = v.sign(&w.user_key, &w.provider.domain());
    assert_rejected(
        &w,
        w.provider.settle(&[(v, sig)]).await.unwrap(),
        RejectReason::WrongProvider,
    )
    .await;
    // Rewriting the provider field breaks the signature.
    let mine = zg_core::Voucher {
        provider: w.provider.wallet(),
        ..v
    };
    assert_rejected(
        &w,
        w.provider.settle(&[(mine, sig)]).await.unwrap(),
        RejectReason::BadSignature,
    )
    .await;
    // It is a good voucher for the provider it names.
    w.user.fund(q, tokens(100)).await.unwrap();
    assert_eq!(
        w.other_provider.settle(&[(v, sig)]).await.unwrap().paid,
        tokens(100)
    );
}

#[tokio::test]
async fn a_voucher_signed_for_another_chain_or_contract_is_rejected() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    let v = voucher_for(w.user.wallet(), w.provider.wallet(), tokens(100));
    let other_chain = Domain::new(w.chain.chain_id() + 1, w.provider.contract_address());
    let sig = v.sign(&w.user_key, &other_chain);
    assert_rejected(
        &w,
        w.provider.settle(&[(v, sig)]).await.unwrap(),
        RejectReason::BadSignature,
    )
    .await;

    // A second deployment on the same chain: its vouchers don't replay here.
    let second = ChainClient::deploy(w.chain.url(), &w.chain.keys()[0], DeployParams::default())
        .await
        .unwrap();
    let sig = v.sign(&w.user_key, &second.domain());
    assert_rejected(
        &w,
        w.provider.settle(&[(v, sig)]).await.unwrap(),
        RejectReason::BadSignature,
    )
    .await;
    // ...while the same voucher signed for this deployment pays.
    let sig = v.sign(&w.user_key, &w.provider.domain());
    assert_eq!(
        w.provider.settle(&[(v, sig)]).await.unwrap().paid,
        tokens(100)
    );
}

#[tokio::test]
async fn a_high_s_twin_of_a_valid_signature_is_rejected() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    let (v, sig) = w.voucher(tokens(100));
    // (r, n - s, v ^ 1) recovers to the same key: the malleable twin.
    let n = U256::from_be_slice(&alloy::hex!(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141"
    ));
    let bytes = sig.as_bytes();
    let high_s = n - U256::from_be_slice(&bytes[32..64]);
    let mut twin = bytes.to_vec();
    twin[32..64].copy_from_slice(&high_s.to_be_bytes::<32>());
    twin[64] = if bytes[64] == 27 { 28 } else { 27 };
    assert!(
        zg_core::Signature::from_slice(&twin).is_err(),
        "Rust refuses to hold it too"
    );

    // Raw ecrecover (precompile 0x01) accepts the twin: only the contract's check stops it.
    let digest = w.provider.voucher_digest(&v).await.unwrap();
    let mut input = digest.to_vec();
    input.extend_from_slice(&U256::from(twin[64]).to_be_bytes::<32>());
    input.extend_from_slice(&twin[..64]);
    let ecrecover = address!("0000000000000000000000000000000000000001");
    let out = w
        .provider
        .provider()
        .call(
            TransactionRequest::default()
                .to(ecrecover)
                .input(input.into()),
        )
        .await
        .unwrap();
    assert_eq!(Address::from_slice(&out[12..]), w.user.wallet());

    let s = w
        .provider
        .settle_raw(vec![raw(&v)], vec![Bytes::from(twin)])
        .await
        .unwrap();
    assert_rejected(&w, s, RejectReason::BadSignature).await;
    let s = w
        .provider
        .settle_raw(vec![raw(&v)], vec![sig_bytes(&sig)])
        .await
        .unwrap();
    assert_eq!(s.paid, tokens(100));
}

/// Deploys the attacker against `w`'s contract from the user's wallet.
async fn attacker(
    w: &World,
) -> ReentrancyAttacker::ReentrancyAttackerInstance<alloy::providers::DynProvider> {
    ReentrancyAttacker::deploy(w.user.provider().clone(), w.user.contract_address())
        .await
        .unwrap()
}

async fn assert_reentry_refused(
    a: &ReentrancyAttacker::ReentrancyAttackerInstance<alloy::providers::DynProvider>,
) {
    assert_eq!(
        a.reentryAttempts().call().await.unwrap(),
        U256::from(1),
        "the payout called back"
    );
    assert!(!a.reentrySucceeded().call().await.unwrap());
    let error = a.reentryError().call().await.unwrap();
    assert!(matches!(
        ZgServingErrors::abi_decode(&error),
        Ok(ZgServingErrors::ReentrancyGuardReentrantCall(_))
    ));
}

#[tokio::test]
async fn reentry_through_a_withdrawal_is_refused() {
    let w = World::new().await;
    let a = attacker(&w).await;
    let me = *a.address();
    a.execute(ZgServing::depositCall {}.abi_encode().into())
        .value(tokens(100))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let withdraw: Bytes = ZgServing::withdrawCall { amount: tokens(60) }
        .abi_encode()
        .into();
    a.setReentry(withdraw.clone())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let receipt = a
        .execute(withdraw)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());

    assert_reentry_refused(&a).await;
    assert_eq!(w.user.balance_of(me).await.unwrap(), tokens(40));
    assert_eq!(
        w.user.native_balance(me).await.unwrap(),
        tokens(60),
        "paid once"
    );
    assert_eq!(
        w.user
            .native_balance(w.user.contract_address())
            .await
            .unwrap(),
        tokens(40)
    );
}

#[tokio::test]
async fn reentry_through_a_returned_stake_is_refused() {
    let w = World::new().await;
    let a = attacker(&w).await;
    let me = *a.address();
    let s = service("chat", Address::ZERO);
    let add = ZgServing::addOrUpdateServiceCall {
        params: ZgServing::ServiceParams {
            name: s.name.clone(),
            kind: s.kind,
            url: s.url,
            model: s.model,
            modelDigest: s.model_digest,
            hardware: s.hardware,
            inputPrice: s.prices.input,
            outputPrice: s.prices.output,
            cachedInputPrice: s.prices.cached,
            verifiability: s.verifiability,
            signer: s.signer,
        },
    };
    a.execute(add.abi_encode().into())
        .value(tokens(100))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    a.execute(ZgServing::depositCall {}.abi_encode().into())
        .value(tokens(10))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    // While its stake comes back, it tries to withdraw its ledger balance too.
    a.setReentry(
        ZgServing::withdrawCall { amount: tokens(10) }
            .abi_encode()
            .into(),
    )
    .send()
    .await
    .unwrap()
    .get_receipt()
    .await
    .unwrap();
    let remove = ZgServing::removeServiceCall {
        name: "chat".into(),
    };
    let unbonding = w.user.dispute_rules().await.unwrap().unbonding_period;
    for (call, wait) in [
        (remove.abi_encode(), unbonding),
        (ZgServing::withdrawStakeCall {}.abi_encode(), 0),
    ] {
        assert!(
            a.execute(call.into())
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap()
                .status()
        );
        w.chain.advance_time(wait).await.unwrap();
    }

    assert_reentry_refused(&a).await;
    assert_eq!(
        w.user.native_balance(me).await.unwrap(),
        tokens(100),
        "the stake, once"
    );
    assert_eq!(w.user.balance_of(me).await.unwrap(), tokens(10));
    assert_eq!(w.user.stake_of(me).await.unwrap().stake, U256::ZERO);
}
