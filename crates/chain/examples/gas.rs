//! `make gas`: deploys ZgServing on a fresh anvil and prints the gas of every
//! user and provider operation, and settlement gas per voucher for batches of
//! 1, 10 and 50 users, for a user's first settlement and in steady state.

use alloy::primitives::{B256, U256};
use anyhow::{Context, Result};
use futures::future::try_join_all;
use zg_chain::{ChainClient, DeployParams};
use zg_core::{Prices, Service, Signature, SigningKey, Voucher};
use zg_devnet::DevChain;

const TOKEN: u64 = 1_000_000_000_000_000_000;

fn tokens(n: u64) -> U256 {
    U256::from(n) * U256::from(TOKEN)
}

struct Table(Vec<(String, u64)>);

impl Table {
    fn row(&mut self, name: impl Into<String>, gas: u64) {
        let name = name.into();
        println!("| {name:<64} | {gas:>9} |");
        self.0.push((name, gas));
    }
}

fn service(name: &str, signer: alloy::primitives::Address) -> Service {
    Service {
        provider: Default::default(),
        name: name.into(),
        kind: "chat".into(),
        url: "https://provider.example/v1".into(),
        model: "qwen2.5-0.5b-instruct-q4_k_m".into(),
        model_digest: B256::repeat_byte(0x11),
        hardware: "cpu".into(),
        prices: Prices {
            input: U256::from(1_000_000u64),
            output: U256::from(2_000_000u64),
        },
        verifiability: "none".into(),
        signer,
        updated_at: 0,
    }
}

/// `n` fresh users, each with a key, a ledger deposit and escrow at `provider`.
async fn funded_users(
    chain: &DevChain,
    owner: &ChainClient,
    provider: alloy::primitives::Address,
    n: usize,
) -> Result<Vec<(SigningKey, ChainClient)>> {
    try_join_all((0..n).map(|_| async {
        let key = SigningKey::random();
        chain.set_balance(key.address(), tokens(10)).await?;
        let client = owner.with_key(&key.to_bytes())?;
        client.deposit(tokens(2)).await?;
        client.fund(provider, tokens(1)).await?;
        anyhow::Ok((key, client))
    }))
    .await
}

fn vouchers(
    users: &[(SigningKey, ChainClient)],
    provider: &ChainClient,
    cumulative: U256,
) -> Vec<(Voucher, Signature)> {
    users
        .iter()
        .map(|(key, _)| {
            let voucher = Voucher {
                user: key.address(),
                provider: provider.wallet(),
                cumulative,
                request_digest: zg_core::keccak256(format!(
                    "request {} {cumulative}",
                    key.address()
                )),
            };
            (voucher, voucher.sign(key, &provider.domain()))
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let chain = DevChain::start().await.context("starting anvil")?;
    let params = DeployParams {
        lock_period: 60,
        ..DeployParams::default()
    };
    let owner = ChainClient::deploy(chain.url(), &chain.keys()[0], params).await?;
    let provider = owner.with_key(&chain.keys()[1])?;
    let user = owner.with_key(&chain.keys()[2])?;
    let delegate = SigningKey::random();
    let mut table = Table(vec![]);

    println!("| {:<64} | {:>9} |", "operation", "gas");
    println!("|{}|{}|", "-".repeat(66), "-".repeat(11));
    // Provider
    let first = provider
        .add_or_update_service(&service("chat", delegate.address()), params.min_stake)
        .await?;
    table.row(
        "provider: addOrUpdateService (first service, with stake)",
        first.gas_used,
    );
    let second = provider
        .add_or_update_service(&service("embed", delegate.address()), U256::ZERO)
        .await?;
    table.row(
        "provider: addOrUpdateService (another service)",
        second.gas_used,
    );
    let mut updated = service("chat", delegate.address());
    updated.prices.output = U256::from(3_000_000u64);
    table.row(
        "provider: addOrUpdateService (update)",
        provider
            .add_or_update_service(&updated, U256::ZERO)
            .await?
            .gas_used,
    );
    table.row(
        "provider: removeService (not the last)",
        provider.remove_service("embed").await?.gas_used,
    );
    table.row(
        "provider: removeService (last: stake returned)",
        provider.remove_service("chat").await?.gas_used,
    );
    provider.deposit(tokens(1)).await?; // the provider's ledger balance exists, as after any earlier batch

    // User
    table.row(
        "user: deposit (first)",
        user.deposit(tokens(5)).await?.gas_used,
    );
    table.row(
        "user: deposit (again)",
        user.deposit(tokens(1)).await?.gas_used,
    );
    table.row(
        "user: fund (first at this provider)",
        user.fund(provider.wallet(), tokens(2)).await?.gas_used,
    );
    table.row(
        "user: fund (again)",
        user.fund(provider.wallet(), tokens(1)).await?.gas_used,
    );
    table.row(
        "user: requestRefund",
        user.request_refund(provider.wallet(), tokens(1))
            .await?
            .gas_used,
    );
    table.row(
        "user: fund (cancels a pending refund)",
        user.fund(provider.wallet(), tokens(1)).await?.gas_used,
    );
    user.request_refund(provider.wallet(), tokens(1)).await?;
    chain.advance_time(61).await?;
    table.row(
        "user: claimRefund",
        user.claim_refund(provider.wallet()).await?.gas_used,
    );
    table.row("user: withdraw", user.withdraw(tokens(1)).await?.gas_used);
    table.row(
        "user: setVoucherSigner",
        user.set_voucher_signer(delegate.address()).await?.gas_used,
    );

    // Settlement: vouchers from different users; "first" is each user's first
    // settlement at this provider, "steady" the next one.
    let mut steady = vec![];
    for batch in [1usize, 10, 50] {
        let users = funded_users(&chain, &owner, provider.wallet(), batch).await?;
        let first = provider
            .settle(&vouchers(&users, &provider, U256::from(1_000_000u64)))
            .await?;
        anyhow::ensure!(
            first.settled.len() == batch,
            "first settlement rejected {:?}",
            first.rejected
        );
        let again = provider
            .settle(&vouchers(&users, &provider, U256::from(2_000_000u64)))
            .await?;
        anyhow::ensure!(
            again.settled.len() == batch,
            "steady settlement rejected {:?}",
            again.rejected
        );
        let per = |gas: u64| gas / batch as u64;
        table.row(
            format!("provider: settle batch={batch} first, per voucher"),
            per(first.outcome.gas_used),
        );
        table.row(
            format!("provider: settle batch={batch} steady, per voucher"),
            per(again.outcome.gas_used),
        );
        steady.push((batch, per(again.outcome.gas_used)));
    }

    // The same with every voucher signed by a delegated key (one more SLOAD each).
    let users = funded_users(&chain, &owner, provider.wallet(), 50).await?;
    try_join_all(
        users
            .iter()
            .map(|(_, c)| c.set_voucher_signer(delegate.address())),
    )
    .await?;
    let delegated = |cumulative: u64| -> Vec<(Voucher, Signature)> {
        vouchers(&users, &provider, U256::from(cumulative))
            .into_iter()
            .map(|(v, _)| (v, v.sign(&delegate, &provider.domain())))
            .collect()
    };
    provider.settle(&delegated(1_000_000)).await?;
    let again = provider.settle(&delegated(2_000_000)).await?;
    anyhow::ensure!(
        again.settled.len() == 50,
        "delegated settlement rejected {:?}",
        again.rejected
    );
    table.row(
        "provider: settle batch=50 steady, delegated signer, per voucher",
        again.outcome.gas_used / 50,
    );

    println!();
    for (batch, gas) in steady {
        println!("settle batch={batch} gas_per_voucher={gas}");
    }
    Ok(())
}
