//! `make gas`: deploys ZgServing on a fresh anvil and prints the gas of every
//! user and provider operation, settlement gas per voucher for batches of
//! 1, 10 and 50 users, for a user's first settlement and in steady state, and
//! the gas of a dispute's steps with evidence the size of a real chat answer.

use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Address, B128, B256, Bytes, U256},
    providers::Provider,
};
use anyhow::{Context, Result};
use futures::future::try_join_all;
use zg_chain::{ChainClient, DeployParams};
use zg_core::{
    Evidence, Nonce, Prices, Receipt, Service, Signature, SigningKey, Verdict, Voucher,
    headers::SignedReceipt, keccak256, proof_digest, request_digest, service_id,
};
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

fn service(name: &str, signer: Address) -> Service {
    Service {
        provider: Default::default(),
        name: name.into(),
        kind: "chat".into(),
        url: "https://provider.example/v1".into(),
        model: "qwen2.5-0.5b-instruct-q4_k_m".into(),
        model_digest: B256::repeat_byte(0x11),
        hardware: "cpu".into(),
        prices: Prices::new(U256::from(1_000_000u64), U256::from(2_000_000u64))
            .with_cached(U256::from(200_000u64)),
        verifiability: "none".into(),
        signer,
        updated_at: 0,
        failed_at: 0,
    }
}

/// `n` fresh users, each with a key, a ledger deposit and escrow at `provider`.
async fn funded_users(
    chain: &DevChain,
    owner: &ChainClient,
    provider: Address,
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

/// Evidence of one answer of the "proof" service, sized like a real chat
/// answer: a ~1 KB request, a ~2 KB response, a 300-byte proof.
fn evidence(
    user: Address,
    provider: Address,
    signer: &SigningKey,
    domain: &zg_core::Domain,
    issued_at: u64,
) -> Evidence {
    let nonce = Nonce::random();
    let prompt = "Summarise the paragraph below in one sentence for a newsletter. ".repeat(14);
    let request = format!(
        r#"{{"model":"qwen2.5-0.5b-instruct","messages":[{{"role":"user","content":"{prompt}"}}],"max_tokens":512,"temperature":0}}"#
    );
    let answer =
        "The paragraph argues that settlement in batches keeps fees low for everyone. ".repeat(25);
    let response = format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"{answer}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":230,"completion_tokens":470}}}}"#
    );
    // Logits look random: hashes stand in for them.
    let proof: Bytes = (0u64..10)
        .flat_map(|i| keccak256(i.to_be_bytes()).0)
        .take(300)
        .collect::<Vec<u8>>()
        .into();
    let receipt = Receipt {
        user,
        provider,
        service: service_id("proof"),
        model_digest: B256::repeat_byte(0x11),
        request_digest: request_digest(&nonce, request.as_bytes()),
        response_digest: keccak256(&response),
        input_tokens: U256::from(230u64),
        output_tokens: U256::from(470u64),
        input_price: U256::from(1_000_000u64),
        output_price: U256::from(2_000_000u64),
        cached_tokens: U256::ZERO,
        cached_price: U256::ZERO,
        fee: U256::from(1_170_000_000u64),
        owed: U256::from(1_170_000_000u64),
        proof_digest: proof_digest(&proof),
        issued_at,
    };
    let signature = receipt.sign(signer, domain);
    Evidence {
        receipt: SignedReceipt::new(receipt, &signature),
        nonce: B128::from(nonce.0),
        request,
        response,
        proof,
    }
}

/// A proof service, three verifiers at quorum 2, and one dispute decided
/// each way and one expired.
async fn disputes(
    chain: &DevChain,
    owner: &ChainClient,
    provider: &ChainClient,
    table: &mut Table,
) -> Result<()> {
    let signer = SigningKey::random();
    let mut proof = service("proof", signer.address());
    proof.verifiability = "zg-logits-v1".into();
    provider
        .add_or_update_service(&proof, DeployParams::default().min_stake)
        .await?;
    let verifiers = [(); 3].map(|_| SigningKey::random());
    let rows = [
        Some("owner: setVerifier (the first: quorum becomes 1)"),
        Some("owner: setVerifier (another)"),
        None,
    ];
    for (verifier, row) in verifiers.iter().zip(rows) {
        let gas = owner.set_verifier(verifier.address(), true).await?.gas_used;
        if let Some(row) = row {
            table.row(row, gas);
        }
    }
    table.row("owner: setQuorum", owner.set_quorum(2).await?.gas_used);

    let challenger = owner.with_key(&chain.keys()[3])?;
    let bond = owner.dispute_rules().await?.bond;
    let (signer, challenger) = (&signer, &challenger);
    let open = |user: Address| async move {
        let now = owner
            .provider()
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await?
            .context("no latest block")?
            .header
            .timestamp;
        let e = evidence(user, provider.wallet(), signer, &owner.domain(), now);
        let (id, outcome) = challenger.open_dispute(&e, bond).await?;
        anyhow::Ok((id, outcome, e))
    };
    // Verdicts are signed by the verifiers and relayed by anyone (here the owner).
    let vote = |id: u64, verifier: usize, guilty: bool| {
        let verdict = Verdict {
            dispute: id,
            guilty,
        };
        let signature = verdict.sign(&verifiers[verifier], &owner.domain());
        async move { anyhow::Ok(owner.submit_verdict(verdict, &signature).await?.gas_used) }
    };

    let (guilty, opened, e) = open(Address::repeat_byte(0x42)).await?;
    table.row(
        format!(
            "challenger: openDispute ({} + {} + {} B of evidence)",
            e.request.len(),
            e.response.len(),
            e.proof.len()
        ),
        opened.gas_used,
    );
    table.row(
        "verifier: submitVerdict (not deciding)",
        vote(guilty, 0, true).await?,
    );
    table.row(
        "verifier: submitVerdict (deciding: guilty, slashes)",
        vote(guilty, 1, true).await?,
    );
    let (innocent, _, _) = open(Address::repeat_byte(0x43)).await?;
    vote(innocent, 0, false).await?;
    table.row(
        "verifier: submitVerdict (deciding: not guilty)",
        vote(innocent, 1, false).await?,
    );
    let (undecided, _, _) = open(Address::repeat_byte(0x44)).await?;
    chain
        .advance_time(owner.dispute_rules().await?.voting_period + 1)
        .await?;
    table.row(
        "anyone: expireDispute",
        owner.expire_dispute(undecided).await?.gas_used,
    );
    Ok(())
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
        "provider: removeService (last: unbonding starts)",
        provider.remove_service("chat").await?.gas_used,
    );
    let rules = owner.dispute_rules().await?;
    chain.advance_time(rules.unbonding_period).await?;
    table.row(
        "provider: withdrawStake",
        provider.withdraw_stake().await?.gas_used,
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

    disputes(&chain, &owner, &provider, &mut table).await?;

    println!();
    for (batch, gas) in steady {
        println!("settle batch={batch} gas_per_voucher={gas}");
    }
    Ok(())
}
