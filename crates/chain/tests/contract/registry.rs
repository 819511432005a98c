use crate::common::{World, revert_of, service, tokens};
use alloy::primitives::{Address, U256};
use zg_chain::{
    ProviderStake,
    bindings::ZgServing::{ZgServingErrors as E, ZgServingEvents as Ev},
};
use zg_core::service_id;

#[tokio::test]
async fn a_provider_lists_updates_and_removes_services_and_its_stake_unbonds() {
    let w = World::new().await;
    let p = w.provider.wallet();
    let signer = Address::repeat_byte(0x51);
    let before = w.provider.native_balance(p).await.unwrap();

    let added = w
        .provider
        .add_or_update_service(&service("chat", signer), tokens(100))
        .await
        .unwrap();
    assert!(
        matches!(&added.events[..], [Ev::Staked(s), Ev::ServiceUpdated(u)]
        if s.stake == tokens(100) && u.provider == p && u.nameHash == service_id("chat") && u.name == "chat" && u.added)
    );
    let second = w
        .provider
        .add_or_update_service(&service("embed", signer), U256::ZERO)
        .await
        .unwrap();
    assert_eq!(
        w.provider.stake_of(p).await.unwrap(),
        bonded(tokens(100), 2)
    );

    let listed = w
        .provider
        .service(p, "chat")
        .await
        .unwrap()
        .expect("listed");
    assert_eq!(
        (listed.provider, listed.signer, listed.url.as_str()),
        (p, signer, "https://provider.example/chat")
    );
    assert!(listed.updated_at > 0);
    assert_eq!(listed.failed_at, 0);

    let mut update = service("chat", signer);
    update.prices.output = U256::from(99u64);
    update.model = "llama-3.2-1b".into();
    let updated = w
        .provider
        .add_or_update_service(&update, U256::ZERO)
        .await
        .unwrap();
    assert!(matches!(&updated.events[..], [Ev::ServiceUpdated(u)] if !u.added));
    let listed = w
        .provider
        .service(p, "chat")
        .await
        .unwrap()
        .expect("listed");
    assert_eq!(
        (listed.prices.output, listed.model.as_str()),
        (U256::from(99u64), "llama-3.2-1b")
    );
    assert_eq!(w.provider.services_of(p, 0, 10).await.unwrap().total, 2);

    let removed = w.provider.remove_service("embed").await.unwrap();
    assert!(matches!(&removed.events[..], [Ev::ServiceRemoved(r)] if r.name == "embed"));
    assert_eq!(w.provider.service(p, "embed").await.unwrap(), None);
    assert_eq!(
        w.provider.stake_of(p).await.unwrap(),
        bonded(tokens(100), 1)
    );

    // The last service gone, the stake stays slashable for the unbonding period.
    let period = w.user.dispute_rules().await.unwrap().unbonding_period;
    let last = w.provider.remove_service("chat").await.unwrap();
    let unbond_at = w.now().await + period;
    assert!(
        matches!(&last.events[..], [Ev::ServiceRemoved(_), Ev::UnbondingStarted(u)]
        if u.provider == p && u.stake == tokens(100) && u.unbondAt == unbond_at)
    );
    assert_eq!(
        w.provider.stake_of(p).await.unwrap(),
        ProviderStake {
            stake: tokens(100),
            services: 0,
            open_disputes: 0,
            unbond_at,
        }
    );
    assert_eq!(w.provider.services(0, 10).await.unwrap().total, 0);
    match revert_of(w.provider.withdraw_stake().await) {
        E::StakeUnbonding(e) => assert_eq!((e.provider, e.unbondAt), (p, unbond_at)),
        other => panic!("unexpected {other:?}"),
    }

    w.chain.advance_time(period).await.unwrap();
    let withdrawn = w.provider.withdraw_stake().await.unwrap();
    assert!(
        matches!(&withdrawn.events[..], [Ev::StakeReturned(s)] if s.provider == p && s.amount == tokens(100))
    );
    assert_eq!(w.provider.stake_of(p).await.unwrap(), bonded(U256::ZERO, 0));
    let fees = added.fee + second.fee + updated.fee + removed.fee + last.fee + withdrawn.fee;
    assert_eq!(
        w.provider.native_balance(p).await.unwrap(),
        before - fees,
        "the whole stake came back"
    );
    assert_eq!(
        w.provider
            .native_balance(w.provider.contract_address())
            .await
            .unwrap(),
        U256::ZERO
    );
    assert!(matches!(
        revert_of(w.provider.withdraw_stake().await),
        E::NoStake(_)
    ));
}

/// A provider's stake with `services` listed, no dispute open, not unbonding.
fn bonded(stake: U256, services: u64) -> ProviderStake {
    ProviderStake {
        stake,
        services,
        open_disputes: 0,
        unbond_at: 0,
    }
}

#[tokio::test]
async fn a_listed_stake_stays_and_listing_again_ends_the_unbonding() {
    let w = World::new().await;
    let p = w.provider.wallet();
    assert!(matches!(
        revert_of(w.provider.withdraw_stake().await),
        E::NoStake(e) if e.provider == p
    ));
    w.provider
        .add_or_update_service(&service("chat", Address::ZERO), tokens(100))
        .await
        .unwrap();
    assert!(matches!(
        revert_of(w.provider.withdraw_stake().await),
        E::StakeStillListed(e) if e.services == U256::from(1)
    ));

    w.provider.remove_service("chat").await.unwrap();
    assert_ne!(w.provider.stake_of(p).await.unwrap().unbond_at, 0);
    // Listing again, even without new stake, bonds the stake again.
    w.provider
        .add_or_update_service(&service("chat", Address::ZERO), U256::ZERO)
        .await
        .unwrap();
    assert_eq!(
        w.provider.stake_of(p).await.unwrap(),
        bonded(tokens(100), 1)
    );
    let period = w.user.dispute_rules().await.unwrap().unbonding_period;
    w.chain.advance_time(period + 1).await.unwrap();
    assert!(matches!(
        revert_of(w.provider.withdraw_stake().await),
        E::StakeStillListed(_)
    ));
}

#[tokio::test]
async fn a_stake_below_the_minimum_is_refused() {
    let w = World::new().await;
    match revert_of(
        w.provider
            .add_or_update_service(&service("chat", Address::ZERO), tokens(99))
            .await,
    ) {
        E::StakeTooLow(e) => assert_eq!((e.stake, e.required), (tokens(99), tokens(100))),
        other => panic!("unexpected {other:?}"),
    }
    // Raising the minimum later asks existing providers for more on their next listing.
    w.provider
        .add_or_update_service(&service("chat", Address::ZERO), tokens(100))
        .await
        .unwrap();
    w.owner.set_min_stake(tokens(150)).await.unwrap();
    assert!(matches!(
        revert_of(
            w.provider
                .add_or_update_service(&service("embed", Address::ZERO), U256::ZERO)
                .await
        ),
        E::StakeTooLow(_)
    ));
    w.provider
        .add_or_update_service(&service("embed", Address::ZERO), tokens(50))
        .await
        .unwrap();
    assert_eq!(
        w.provider
            .stake_of(w.provider.wallet())
            .await
            .unwrap()
            .stake,
        tokens(150)
    );
}

#[tokio::test]
async fn unnamed_and_unknown_services_are_refused() {
    let w = World::new().await;
    assert!(matches!(
        revert_of(
            w.provider
                .add_or_update_service(&service("", Address::ZERO), tokens(100))
                .await
        ),
        E::EmptyServiceName(_)
    ));
    // A cached prompt token may not be listed dearer than an uncached one.
    let mut dear_cache = service("chat", Address::ZERO);
    dear_cache.prices.cached = dear_cache.prices.input + U256::from(1u64);
    assert!(matches!(
        revert_of(
            w.provider
                .add_or_update_service(&dear_cache, tokens(100))
                .await
        ),
        E::CachedPriceAboveInput(_)
    ));
    assert!(matches!(
        revert_of(w.provider.remove_service("nope").await),
        E::ServiceNotFound(_)
    ));
    // Another provider's service of the same name is not the caller's to remove.
    w.provider
        .add_or_update_service(&service("chat", Address::ZERO), tokens(100))
        .await
        .unwrap();
    assert!(matches!(
        revert_of(w.other_provider.remove_service("chat").await),
        E::ServiceNotFound(_)
    ));
    assert!(
        w.provider
            .service(w.provider.wallet(), "chat")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn services_page_across_providers_and_survive_removal() {
    let w = World::new().await;
    let (a, b) = (&w.provider, &w.other_provider);
    for name in ["a1", "a2", "a3"] {
        a.add_or_update_service(&service(name, Address::ZERO), tokens(100))
            .await
            .unwrap();
    }
    for name in ["b1", "a1"] {
        b.add_or_update_service(&service(name, Address::ZERO), tokens(100))
            .await
            .unwrap();
    }
    let names = |page: zg_chain::Page<zg_core::Service>| {
        page.items
            .into_iter()
            .map(|s| (s.provider, s.name))
            .collect::<Vec<_>>()
    };
    let all = w.user.services(0, 100).await.unwrap();
    assert_eq!(all.total, 5);
    let first = names(w.user.services(0, 2).await.unwrap());
    let rest = names(w.user.services(2, 2).await.unwrap());
    let last = names(w.user.services(4, 2).await.unwrap());
    assert_eq!([first, rest, last].concat(), names(all));

    a.remove_service("a1").await.unwrap();
    let mut left = names(w.user.services(0, 100).await.unwrap());
    left.sort();
    let mut expected = vec![
        (a.wallet(), "a2".to_string()),
        (a.wallet(), "a3".to_string()),
        (b.wallet(), "b1".to_string()),
        (b.wallet(), "a1".to_string()),
    ];
    expected.sort();
    assert_eq!(left, expected);
    let of_b = w.user.services_of(b.wallet(), 0, 100).await.unwrap();
    assert_eq!((of_b.total, of_b.items.len()), (2, 2));
    assert!(w.user.service(b.wallet(), "a1").await.unwrap().is_some());
}
