use crate::common::{World, revert_of, tokens};
use zg_chain::bindings::ZgServing::{ZgServingErrors as E, ZgServingEvents as Ev};

#[tokio::test]
async fn the_owner_sets_lock_period_and_minimum_stake_within_bounds() {
    let w = World::new().await;
    assert_eq!(w.owner.owner().await.unwrap(), w.owner.wallet());
    assert_eq!(w.user.lock_period_bounds().await.unwrap(), (60, 30 * 86400));
    assert_eq!(w.user.max_min_stake().await.unwrap(), tokens(1_000_000_000));
    let set = w.owner.set_lock_period(120).await.unwrap();
    assert!(matches!(&set.events[..], [Ev::LockPeriodSet(e)] if e.lockPeriod == 120));
    assert_eq!(w.user.lock_period().await.unwrap(), 120);
    assert!(matches!(
        revert_of(w.owner.set_lock_period(59).await),
        E::LockPeriodOutOfBounds(_)
    ));
    assert!(matches!(
        revert_of(w.owner.set_lock_period(30 * 86400 + 1).await),
        E::LockPeriodOutOfBounds(_)
    ));
    w.owner.set_lock_period(30 * 86400).await.unwrap();

    let set = w.owner.set_min_stake(tokens(5)).await.unwrap();
    assert!(matches!(&set.events[..], [Ev::MinStakeSet(e)] if e.minStake == tokens(5)));
    assert_eq!(w.user.min_stake().await.unwrap(), tokens(5));
    assert!(matches!(
        revert_of(w.owner.set_min_stake(tokens(1_000_000_001)).await),
        E::MinStakeOutOfBounds(_)
    ));
}

#[tokio::test]
async fn admin_calls_from_anyone_but_the_owner_are_refused() {
    let w = World::new().await;
    let not_owner =
        |e: E| matches!(e, E::OwnableUnauthorizedAccount(a) if a.account == w.user.wallet());
    assert!(not_owner(revert_of(w.user.set_lock_period(120).await)));
    assert!(not_owner(revert_of(w.user.set_min_stake(tokens(1)).await)));
    assert!(not_owner(revert_of(
        w.user.transfer_ownership(w.user.wallet()).await
    )));
    assert_eq!(w.user.lock_period().await.unwrap(), crate::common::LOCK);
    assert_eq!(w.user.min_stake().await.unwrap(), tokens(100));

    // Ownership moves only when the owner moves it.
    w.owner.transfer_ownership(w.user.wallet()).await.unwrap();
    w.user.set_lock_period(120).await.unwrap();
    assert!(matches!(
        revert_of(w.owner.set_lock_period(60).await),
        E::OwnableUnauthorizedAccount(_)
    ));
}
