//! `zg-serving chain info`: a deployment as an operator checks it before
//! staking or funding: the network, the contract's parameters and owner,
//! whether its code is this build's, and what only the owner can change.

use anyhow::Result;
use clap::Args;
use serde_json::json;
use zg_core::{SigningKey, format_amount};

use crate::{network::DeploymentArgs, user::Out};

#[derive(Args)]
pub(super) struct InfoArgs {
    #[command(flatten)]
    deployment: DeploymentArgs,
}

pub(super) async fn run(args: InfoArgs, out: Out) -> Result<()> {
    let network = args.deployment.network.load()?;
    // Only views are called: any key will do, and none is asked for.
    let reader = SigningKey::random();
    let chain = args.deployment.connect(&reader.to_bytes()).await?;
    let contract = chain.contract_address();
    let owner = chain.owner().await?;
    let min_stake = chain.min_stake().await?;
    let max_min_stake = chain.max_min_stake().await?;
    let lock_period = chain.lock_period().await?;
    let (min_lock, max_lock) = chain.lock_period_bounds().await?;
    let latest = chain.block_number().await?;
    let rules = chain.dispute_rules().await?;
    let (verifiers, quorum) = chain.verifier_set().await?;
    let disputes = chain.dispute_count().await?;
    let code = match chain.check_code().await {
        Ok(()) => "this build's ZgServing".to_string(),
        Err(e) => e.to_string(),
    };
    let name = network.as_ref().map(|n| n.name.clone());
    let explorer = network.as_ref().and_then(|n| n.explorer_url.clone());
    let deployment_block = network.as_ref().and_then(|n| n.deployment_block);
    let set = |what: &str| {
        format!(
            "zg-serving chain set --network {} --key-file OWNER_KEYSTORE {what}",
            name.as_deref().unwrap_or("NAME")
        )
    };
    let settings = [
        (
            "lock_period",
            format!("refund lock, {min_lock} ..= {max_lock} s (setLockPeriod)"),
            set("--lock-period SECONDS"),
        ),
        (
            "min_stake",
            format!(
                "minimum provider stake, at most {} 0G (setMinStake)",
                format_amount(max_min_stake)
            ),
            set("--min-stake 0G"),
        ),
        (
            "verifiers",
            format!("{verifiers} registered, quorum {quorum} (setVerifier, setQuorum)"),
            set("--add-verifier 0x... --remove-verifier 0x... --quorum N"),
        ),
        (
            "disputes",
            format!(
                "window {} s, voting {} s, unbonding {} s, bond {} 0G, slash {} bps, reward {} bps (setDisputeParams)",
                rules.window,
                rules.voting_period,
                rules.unbonding_period,
                format_amount(rules.bond),
                rules.slash_bps,
                rules.reward_bps
            ),
            set(
                "--dispute-window S --voting-period S --unbonding-period S --dispute-bond 0G --slash-bps N --reward-bps N",
            ),
        ),
        (
            "owner",
            "who may change the settings above (transferOwnership)".to_string(),
            set("--owner 0xNEW_OWNER"),
        ),
    ];
    out.print(
        json!({
            "network": name,
            "chain_id": chain.chain_id(),
            "rpc_url": chain.rpc_url(),
            "explorer_url": explorer,
            "contract": contract,
            "deployment_block": deployment_block,
            "latest_block": latest,
            "code": code,
            "owner": owner,
            "min_stake": format_amount(min_stake),
            "max_min_stake": format_amount(max_min_stake),
            "lock_period": lock_period,
            "lock_period_bounds": [min_lock, max_lock],
            "verifiers": verifiers,
            "quorum": quorum,
            "disputes_opened": disputes,
            "dispute_rules": {
                "window_s": rules.window,
                "voting_period_s": rules.voting_period,
                "unbonding_period_s": rules.unbonding_period,
                "bond": format_amount(rules.bond),
                "slash_bps": rules.slash_bps,
                "reward_bps": rules.reward_bps,
                "max_evidence_bytes": rules.max_evidence_bytes,
            },
            "owner_settings": settings
                .iter()
                .map(|(key, what, how)| json!({ "setting": key, "what": what, "how": how }))
                .collect::<Vec<_>>(),
        }),
        || {
            let mut text = format!(
                "network     {}\nchain id    {}\nrpc         {}\nexplorer    {}\ncontract    {contract}\n\
                 deployed    {}\nlatest      block {latest}\ncode        {code}\n\
                 owner       {owner}\nmin stake   {} 0G\nlock period {lock_period} s\n\
                 verifiers   {verifiers} (quorum {quorum}), {disputes} disputes opened\n\
                 \nowner-only settings:\n",
                name.as_deref().unwrap_or("(none: --rpc-url and --contract)"),
                chain.chain_id(),
                chain.rpc_url(),
                explorer.as_deref().unwrap_or("-"),
                deployment_block.map_or("-".to_string(), |b| format!("block {b}")),
                format_amount(min_stake),
            );
            for (key, what, how) in &settings {
                text.push_str(&format!("  {key:<12} {what}\n               {how}\n"));
            }
            text.trim_end().to_string()
        },
    );
    Ok(())
}
