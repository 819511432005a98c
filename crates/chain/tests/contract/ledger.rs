use crate::common::{World, revert_of, tokens};
use alloy::primitives::U256;
use zg_chain::bindings::ZgServing::{ZgServingErrors as E, ZgServingEvents as Ev};

#[tokio::test]
async fn deposit_and_withdraw_move_tokens_between_wallet_and_ledger() {
    let w = World::new().await;
    let me = w.user.wallet();
    let before = w.user.native_balance(me).await.unwrap();

    let deposit = w.user.deposit(tokens(1500)).await.unwrap();
    assert!(
        matches!(&deposit.events[..], [Ev::Deposited(e)] if e.account == me && e.amount == tokens(1500) && e.balance == tokens(1500))
    );
    let withdraw = w.user.withdraw(tokens(500)).await.unwrap();
    assert!(
        matches!(&withdraw.events[..], [Ev::Withdrawn(e)] if e.amount == tokens(500) && e.balance == tokens(1000))
    );

    assert_eq!(w.user.balance_of(me).await.unwrap(), tokens(1000));
    let after = w.user.native_balance(me).await.unwrap();
    assert_eq!(before - after, tokens(1000) + deposit.fee + withdraw.fee);
    assert_eq!(
        w.user
            .native_balance(w.user.contract_address())
            .await
            .unwrap(),
        tokens(1000)
    );
}

#[tokio::test]
async fn withdrawing_more_than_is_free_is_refused_escrow_included() {
    let w = World::funded(tokens(1000), tokens(600)).await;
    let me = w.user.wallet();
    match revert_of(w.user.withdraw(tokens(401)).await) {
        E::InsufficientBalance(e) => {
            assert_eq!(
                (e.account, e.available, e.requested),
                (me, tokens(400), tokens(401))
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // The error tells a person what to do.
    let message = w.user.withdraw(tokens(401)).await.unwrap_err().to_string();
    assert!(message.contains("deposit more"), "{message}");

    w.user.withdraw(tokens(400)).await.unwrap();
    assert_eq!(w.user.balance_of(me).await.unwrap(), U256::ZERO);
    assert_eq!(w.escrow().await.0, tokens(600));
}

#[tokio::test]
async fn zero_amounts_are_refused() {
    let w = World::new().await;
    assert!(matches!(
        revert_of(w.user.deposit(U256::ZERO).await),
        E::ZeroAmount(_)
    ));
    assert!(matches!(
        revert_of(w.user.withdraw(U256::ZERO).await),
        E::ZeroAmount(_)
    ));
    assert!(matches!(
        revert_of(w.user.fund(w.provider.wallet(), U256::ZERO).await),
        E::ZeroAmount(_)
    ));
    assert!(matches!(
        revert_of(w.user.request_refund(w.provider.wallet(), U256::ZERO).await),
        E::ZeroAmount(_)
    ));
}
