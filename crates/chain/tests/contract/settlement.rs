use crate::common::{World, raw, revert_of, sig_bytes, tokens, voucher_for};
use alloy::primitives::{Address, U256};
use zg_chain::{
    RejectReason, SettledVoucher,
    bindings::ZgServing::{ZgServingErrors as E, ZgServingEvents as Ev},
};
use zg_core::SigningKey;

#[tokio::test]
async fn a_voucher_signed_in_rust_settles_on_chain() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    let (me, p) = (w.user.wallet(), w.provider.wallet());
    let settlement = w.provider.settle(&[w.voucher(tokens(250))]).await.unwrap();
    assert!(settlement.rejected.is_empty());
    assert_eq!(
        settlement.settled,
        vec![SettledVoucher {
            user: me,
            paid: tokens(250),
            settled: tokens(250),
            escrow: tokens(350)
        }]
    );
    assert_eq!(
        (settlement.paid, settlement.provider_balance),
        (tokens(250), tokens(250))
    );
    assert!(
        matches!(settlement.outcome.events.last(), Some(Ev::BatchSettled(b)) if b.provider == p && b.vouchers == U256::from(1))
    );
    assert_eq!(w.escrow().await, (tokens(350), tokens(250)));
    assert_eq!(w.provider.balance_of(p).await.unwrap(), tokens(250));

    // A newer voucher pays only the difference; the provider can withdraw its earnings.
    let settlement = w.provider.settle(&[w.voucher(tokens(400))]).await.unwrap();
    assert_eq!(settlement.paid, tokens(150));
    assert_eq!(w.escrow().await, (tokens(200), tokens(400)));
    w.provider.withdraw(tokens(400)).await.unwrap();
    assert_eq!(w.provider.balance_of(p).await.unwrap(), U256::ZERO);
}

#[tokio::test]
async fn a_short_escrow_pays_partly_and_the_same_voucher_pays_the_rest_after_a_top_up() {
    let w = World::funded(tokens(1000), tokens(100)).await;
    let voucher = w.voucher(tokens(250));
    let first = w.provider.settle(&[voucher]).await.unwrap();
    assert_eq!(
        (first.paid, first.settled[0].escrow),
        (tokens(100), U256::ZERO)
    );
    assert_eq!(w.escrow().await, (U256::ZERO, tokens(100)));

    let empty = w.provider.settle(&[voucher]).await.unwrap();
    assert_eq!(empty.rejected[0].reason, RejectReason::EscrowEmpty);
    assert_eq!(empty.paid, U256::ZERO);

    w.user.fund(w.provider.wallet(), tokens(200)).await.unwrap();
    let rest = w.provider.settle(&[voucher]).await.unwrap();
    assert_eq!(rest.paid, tokens(150));
    assert_eq!(w.escrow().await, (tokens(50), tokens(250)));
    let again = w.provider.settle(&[voucher]).await.unwrap();
    assert_eq!(again.rejected[0].reason, RejectReason::NotNewer);
    assert_eq!(
        w.provider.balance_of(w.provider.wallet()).await.unwrap(),
        tokens(250)
    );
}

#[tokio::test]
async fn a_voucher_not_newer_than_what_was_settled_pays_nothing() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    w.provider.settle(&[w.voucher(tokens(300))]).await.unwrap();
    for cumulative in [tokens(300), tokens(299), U256::ZERO] {
        let s = w.provider.settle(&[w.voucher(cumulative)]).await.unwrap();
        assert_eq!(
            (s.settled.len(), s.rejected[0].reason),
            (0, RejectReason::NotNewer),
            "{cumulative}"
        );
    }
    assert_eq!(w.escrow().await, (tokens(300), tokens(300)));
}

#[tokio::test]
async fn one_bad_voucher_does_not_stop_the_batch() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    w.other_user.deposit(tokens(100)).await.unwrap();
    w.other_user
        .fund(w.provider.wallet(), tokens(100))
        .await
        .unwrap();
    let p = w.provider.wallet();
    let other = voucher_for(w.other_user.wallet(), p, tokens(40));
    let forged = voucher_for(w.user.wallet(), p, tokens(500));
    let batch = [
        w.voucher(tokens(10)),
        (
            forged,
            forged.sign(&SigningKey::random(), &w.provider.domain()),
        ),
        (other, other.sign(&w.other_user_key, &w.provider.domain())),
    ];
    let s = w.provider.settle(&batch).await.unwrap();
    assert_eq!(
        s.settled.iter().map(|v| v.user).collect::<Vec<_>>(),
        vec![w.user.wallet(), w.other_user.wallet()]
    );
    assert_eq!(s.rejected.len(), 1);
    let rejected = s.rejected[0];
    assert_eq!(
        (rejected.index, rejected.user, rejected.reason),
        (1, w.user.wallet(), RejectReason::BadSignature)
    );
    assert_eq!(s.paid, tokens(50));
    assert!(
        matches!(s.outcome.events.last(), Some(Ev::BatchSettled(b)) if b.vouchers == U256::from(2) && b.paid == tokens(50))
    );
    assert_eq!(w.escrow().await, (tokens(590), tokens(10)));
}

#[tokio::test]
async fn a_delegated_signer_signs_for_the_user_until_revoked() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    let delegate = SigningKey::random();
    let me = w.user.wallet();
    let signed_by_delegate = |cumulative| {
        let v = voucher_for(me, w.provider.wallet(), cumulative);
        (v, v.sign(&delegate, &w.provider.domain()))
    };
    let before = w
        .provider
        .settle(&[signed_by_delegate(tokens(10))])
        .await
        .unwrap();
    assert_eq!(before.rejected[0].reason, RejectReason::BadSignature);

    let set = w.user.set_voucher_signer(delegate.address()).await.unwrap();
    assert!(
        matches!(&set.events[..], [Ev::VoucherSignerSet(e)] if e.user == me && e.signer == delegate.address())
    );
    assert_eq!(
        w.user.voucher_signer(me).await.unwrap(),
        Some(delegate.address())
    );
    let s = w
        .provider
        .settle(&[signed_by_delegate(tokens(10)), w.voucher(tokens(30))])
        .await
        .unwrap();
    assert_eq!(
        (s.settled.len(), s.paid),
        (2, tokens(30)),
        "the user's own key still works"
    );

    w.user.set_voucher_signer(Address::ZERO).await.unwrap();
    assert_eq!(w.user.voucher_signer(me).await.unwrap(), None);
    let after = w
        .provider
        .settle(&[signed_by_delegate(tokens(50))])
        .await
        .unwrap();
    assert_eq!(after.rejected[0].reason, RejectReason::BadSignature);
    assert_eq!(w.escrow().await, (tokens(570), tokens(30)));
}

#[tokio::test]
async fn a_batch_with_mismatched_lengths_reverts_and_an_empty_one_pays_nothing() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    let (v, _) = w.voucher(tokens(1));
    assert!(matches!(
        revert_of(w.provider.settle_raw(vec![raw(&v)], vec![]).await),
        E::LengthMismatch(_)
    ));
    let s = w.provider.settle(&[]).await.unwrap();
    assert_eq!(
        (s.paid, s.settled.len(), s.rejected.len()),
        (U256::ZERO, 0, 0)
    );
    let (v, sig) = w.voucher(tokens(1));
    let ok = w
        .provider
        .settle_raw(vec![raw(&v)], vec![sig_bytes(&sig)])
        .await
        .unwrap();
    assert_eq!(ok.paid, tokens(1));
}
