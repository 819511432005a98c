use crate::common::{LOCK, World, revert_of, tokens};
use alloy::primitives::U256;
use zg_chain::{
    PendingRefund,
    bindings::ZgServing::{ZgServingErrors as E, ZgServingEvents as Ev},
};

#[tokio::test]
async fn fund_moves_ledger_money_into_escrow_and_lists_the_account() {
    let w = World::new().await;
    let (me, p) = (w.user.wallet(), w.provider.wallet());
    w.user.deposit(tokens(1000)).await.unwrap();
    let funded = w.user.fund(p, tokens(300)).await.unwrap();
    assert!(
        matches!(&funded.events[..], [Ev::Funded(e)] if e.user == me && e.provider == p && e.amount == tokens(300) && e.escrow == tokens(300))
    );
    w.user.fund(p, tokens(200)).await.unwrap();
    w.user
        .fund(w.other_provider.wallet(), tokens(100))
        .await
        .unwrap();
    w.other_user.deposit(tokens(50)).await.unwrap();
    w.other_user.fund(p, tokens(50)).await.unwrap();

    assert_eq!(w.user.balance_of(me).await.unwrap(), tokens(400));
    let account = w.user.account(me, p).await.unwrap();
    assert_eq!(
        (account.escrow, account.settled, account.refund),
        (tokens(500), U256::ZERO, None)
    );

    // Paged: users at a provider, in first-funded order, each listed once.
    let page = w.user.accounts_of_provider(p, 0, 10).await.unwrap();
    assert_eq!(page.total, 2);
    let users: Vec<_> = page.items.iter().map(|a| (a.user, a.escrow)).collect();
    assert_eq!(
        users,
        vec![(me, tokens(500)), (w.other_user.wallet(), tokens(50))]
    );
    let second = w.user.accounts_of_provider(p, 1, 10).await.unwrap();
    assert_eq!(
        (second.total, second.items.len(), second.items[0].user),
        (2, 1, w.other_user.wallet())
    );
    assert!(
        w.user
            .accounts_of_provider(p, 2, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        w.user
            .accounts_of_provider(p, 0, 1)
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Paged: providers a user funded.
    let mine = w.user.accounts_of_user(me, 0, 10).await.unwrap();
    let providers: Vec<_> = mine.items.iter().map(|a| a.provider).collect();
    assert_eq!(
        (mine.total, providers),
        (2, vec![p, w.other_provider.wallet()])
    );
}

#[tokio::test]
async fn funding_more_than_the_free_balance_is_refused() {
    let w = World::new().await;
    w.user.deposit(tokens(100)).await.unwrap();
    assert!(matches!(
        revert_of(w.user.fund(w.provider.wallet(), tokens(101)).await),
        E::InsufficientBalance(_)
    ));
}

#[tokio::test]
async fn a_refund_returns_to_the_ledger_after_the_lock() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    let (me, p) = (w.user.wallet(), w.provider.wallet());
    let requested = w.user.request_refund(p, tokens(250)).await.unwrap();
    let Ev::RefundRequested(event) = &requested.events[0] else {
        panic!("{:?}", requested.events)
    };
    assert_eq!(event.amount, tokens(250));
    let account = w.user.account(me, p).await.unwrap();
    assert_eq!(
        account.refund,
        Some(PendingRefund {
            amount: tokens(250),
            unlock_at: event.unlockAt
        })
    );
    assert_eq!(w.user.lock_period().await.unwrap(), LOCK);

    w.chain.advance_time(LOCK).await.unwrap();
    let claimed = w.user.claim_refund(p).await.unwrap();
    assert!(
        matches!(&claimed.events[..], [Ev::RefundClaimed(e)] if e.amount == tokens(250) && e.escrow == tokens(350))
    );
    assert_eq!(w.user.balance_of(me).await.unwrap(), tokens(650));
    let account = w.user.account(me, p).await.unwrap();
    assert_eq!((account.escrow, account.refund), (tokens(350), None));
    // Claimed once only.
    assert!(matches!(
        revert_of(w.user.claim_refund(p).await),
        E::NoRefundPending(_)
    ));
}

#[tokio::test]
async fn a_claim_before_the_unlock_is_refused() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    let p = w.provider.wallet();
    assert!(matches!(
        revert_of(w.user.claim_refund(p).await),
        E::NoRefundPending(_)
    ));
    w.user.request_refund(p, tokens(600)).await.unwrap();
    w.chain.advance_time(LOCK - 10).await.unwrap();
    match revert_of(w.user.claim_refund(p).await) {
        E::RefundLocked(e) => assert_eq!(e.user, w.user.wallet()),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(w.escrow().await.0, tokens(600));
    assert_eq!(
        w.user.balance_of(w.user.wallet()).await.unwrap(),
        tokens(400)
    );
}

#[tokio::test]
async fn a_refund_larger_than_the_escrow_is_refused() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    assert!(matches!(
        revert_of(
            w.user
                .request_refund(w.provider.wallet(), tokens(601))
                .await
        ),
        E::InsufficientEscrow(_)
    ));
}

#[tokio::test]
async fn funding_again_cancels_a_pending_refund() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    let p = w.provider.wallet();
    w.user.request_refund(p, tokens(600)).await.unwrap();
    let funded = w.user.fund(p, tokens(100)).await.unwrap();
    assert!(
        matches!(&funded.events[..], [Ev::RefundCancelled(c), Ev::Funded(_)] if c.amount == tokens(600))
    );
    assert_eq!(
        w.user.account(w.user.wallet(), p).await.unwrap().refund,
        None
    );
    w.chain.advance_time(LOCK + 1).await.unwrap();
    assert!(matches!(
        revert_of(w.user.claim_refund(p).await),
        E::NoRefundPending(_)
    ));
    assert_eq!(w.escrow().await.0, tokens(700));
}

#[tokio::test]
async fn the_provider_settling_before_the_unlock_is_paid_first() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    let p = w.provider.wallet();
    w.user.request_refund(p, tokens(600)).await.unwrap();
    // Before the unlock the provider settles 450 of the 600 being refunded.
    let settled = w.provider.settle(&[w.voucher(tokens(450))]).await.unwrap();
    assert_eq!(settled.paid, tokens(450));
    w.chain.advance_time(LOCK).await.unwrap();
    let claimed = w.user.claim_refund(p).await.unwrap();
    assert!(
        matches!(&claimed.events[..], [Ev::RefundClaimed(e)] if e.amount == tokens(150) && e.escrow.is_zero())
    );
    assert_eq!(
        w.user.balance_of(w.user.wallet()).await.unwrap(),
        tokens(550)
    );
    assert_eq!(w.provider.balance_of(p).await.unwrap(), tokens(450));
}
