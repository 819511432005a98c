//! Settlement against a chain that misbehaves: the real broker on a real
//! SQLite file, its chain RPC through zg-devnet's fault-injecting proxy in
//! front of anvil. One test per fault: the RPC down mid-settlement, errors
//! and timeouts, a transaction dropped from the pool, a gas spike past the
//! cap, the nonce taken by another transaction of the wallet, a reorg that
//! removes a mined settlement, and a refund whose settlement the chain
//! keeps refusing. Each ends with the contract's settled total for the user
//! exactly the sum of the receipts, the provider paid exactly that once, and
//! no unsettled voucher left in the store.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, Payer, scripted_upstream, sqlite_url};
use serde_json::json;
use zg_chain::ChainClient;
use zg_core::{Address, B256, SigningKey, U256};
use zg_devnet::FaultyRpc;
use zg_provider::{Config, Running};

/// Three chats of the scripted upstream (2e10 neuron each) and the
/// acknowledgement of the last: 6e10 vouched. The threshold is just under,
/// so the loop settles once, after the last voucher.
const THRESHOLD: &str = "0.00000005";
const DEADLINE: Duration = Duration::from_secs(40);

/// anvil, the proxy in front of it, and a broker that settles through the proxy.
struct Chaos {
    env: Env,
    rpc: FaultyRpc,
    broker: Running,
    _db: tempfile::TempDir,
}

impl Chaos {
    /// `tune` adjusts the settlement policy of the test's broker.
    async fn start(tune: impl FnOnce(&mut Config)) -> Chaos {
        let env = Env::start().await;
        let rpc = FaultyRpc::start(env.chain.url()).await.unwrap();
        let upstream = format!("http://{}/v1", scripted_upstream().await);
        let (db, dir) = sqlite_url();
        let mut plan = env.plan(&db, &upstream, "scripted", B256::ZERO, "1");
        plan.rpc_url = rpc.url().into();
        plan.settlement.interval_secs = 100_000;
        plan.settlement.threshold = THRESHOLD.into();
        plan.settlement.confirmations = 2;
        let mut config = plan.config().unwrap();
        config.settlement.rpc_timeout_secs = 1;
        tune(&mut config);
        let broker = env.broker(config).await;
        Chaos {
            env,
            rpc,
            broker,
            _db: dir,
        }
    }

    /// Dev account `index` as a user who is served three chats and
    /// acknowledges the last receipt; returns the sum of its receipts.
    async fn pay(&self, index: usize) -> (SigningKey, ChainClient, U256) {
        let escrow = U256::from(10u64).pow(U256::from(16u64));
        let (key, chain) = self.env.user(index, escrow).await;
        let mut payer = Payer::new(key.clone(), &self.env, &self.broker.url());
        let last = payer.chats(3).await;
        assert_eq!(payer.acknowledge(&last).await, 200);
        (key, chain, last.owed)
    }

    /// What the contract says `user` has settled at the provider.
    async fn settled_on_chain(&self, user: Address) -> U256 {
        self.env
            .deployer
            .account(user, self.env.provider())
            .await
            .unwrap()
            .settled
    }

    /// What the store still holds unsettled for `user`.
    async fn unsettled_in_store(&self, user: Address) -> U256 {
        self.broker
            .broker()
            .tab(user)
            .await
            .unwrap()
            .map(|t| t.unsettled())
            .unwrap_or_default()
    }

    async fn provider_balance(&self) -> U256 {
        self.env
            .deployer
            .balance_of(self.env.provider())
            .await
            .unwrap()
    }

    /// Waits until the store has taken `user`'s settlement as final, then
    /// checks it against the chain: settled exactly `total`, and the
    /// provider's ledger balance grew by exactly `total` since `before`.
    async fn assert_settled_exactly(&self, user: Address, total: U256, before: U256) {
        wait_for("the settlement to be final in the store", || async {
            self.unsettled_in_store(user).await.is_zero()
        })
        .await;
        assert_eq!(
            self.settled_on_chain(user).await,
            total,
            "settled on chain = the sum of the receipts"
        );
        assert_eq!(
            self.provider_balance().await - before,
            total,
            "the provider was paid exactly once"
        );
        let tab = self.broker.broker().tab(user).await.unwrap().unwrap();
        assert_eq!(tab.settled, total, "the store's settled total");
    }

    /// A counter of the broker's `/metrics` (summed over the process's brokers).
    async fn metric(&self, line: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.broker.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {line} in:\n{text}"))
    }

    /// Mines a block on anvil every 250 ms (past the proxy), as a real
    /// chain does, so confirmations come; stops when dropped.
    fn keep_mining(&self) -> Miner {
        let url = self.env.chain.url().to_string();
        Miner(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let _ = http
                    .post(&url)
                    .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": [] }))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }))
    }
}

struct Miner(tokio::task::JoinHandle<()>);

impl Drop for Miner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_down_mid_settlement_loses_nothing_and_pays_once() {
    let chaos = Chaos::start(|_| {}).await;
    let _miner = chaos.keep_mining();
    let before = chaos.provider_balance().await;
    // The node takes the settlement, the answer is lost, then the node is unreachable.
    chaos.rpc.lose_answers("eth_sendRawTransaction", 1);
    let sent = chaos.rpc.calls("eth_sendRawTransaction");
    let (key, _, total) = chaos.pay(2).await;
    wait_for("the settlement to be sent", || async {
        chaos.rpc.calls("eth_sendRawTransaction") > sent
    })
    .await;
    chaos.rpc.set_down(true);
    wait_for("the settlement to be mined", || async {
        chaos.settled_on_chain(key.address()).await == total
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        chaos.unsettled_in_store(key.address()).await,
        total,
        "not final while the broker can't see it"
    );
    chaos.rpc.set_down(false);
    chaos
        .assert_settled_exactly(key.address(), total, before)
        .await;
    chaos.broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_errors_and_timeouts_are_retried() {
    let chaos = Chaos::start(|_| {}).await;
    let _miner = chaos.keep_mining();
    let before = chaos.provider_balance().await;
    let estimated = chaos.rpc.calls("eth_estimateGas");
    let sent = chaos.rpc.calls("eth_sendRawTransaction");
    chaos.rpc.fail("eth_estimateGas", 2);
    chaos.rpc.fail("eth_sendRawTransaction", 2);
    chaos.rpc.fail("eth_getTransactionReceipt", 3);
    let (key, _, total) = chaos.pay(2).await;
    // Every answer slower than the settler waits (rpc_timeout_secs = 1).
    chaos.rpc.set_delay(Duration::from_millis(1500));
    tokio::time::sleep(Duration::from_secs(3)).await;
    chaos.rpc.set_delay(Duration::ZERO);
    chaos
        .assert_settled_exactly(key.address(), total, before)
        .await;
    assert!(chaos.rpc.calls("eth_estimateGas") >= estimated + 3);
    assert!(chaos.rpc.calls("eth_sendRawTransaction") >= sent + 3);
    chaos.broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_settlement_is_replaced_with_higher_fees() {
    let chaos = Chaos::start(|c| c.settlement.resubmit_secs = 2).await;
    let _miner = chaos.keep_mining();
    let stuck = r#"zg_provider_settlement_resubmits_total{reason="stuck"}"#;
    let replaced = chaos.metric(stuck).await;
    let before = chaos.provider_balance().await;
    chaos.rpc.swallow_sends(1);
    let (key, _, total) = chaos.pay(2).await;
    wait_for("the settlement to be swallowed", || async {
        !chaos.rpc.swallowed().is_empty()
    })
    .await;
    chaos
        .assert_settled_exactly(key.address(), total, before)
        .await;
    let dropped = chaos.rpc.swallowed()[0];
    let receipt = alloy_receipt(&chaos.env, dropped).await;
    assert!(receipt.is_none(), "the dropped version never landed");
    assert!(chaos.metric(stuck).await > replaced);
    chaos.broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gas_spike_past_the_cap_waits_then_settles() {
    let chaos = Chaos::start(|c| c.settlement.max_fee = 50_000_000_000).await;
    let _miner = chaos.keep_mining();
    let capped = "zg_provider_settlement_fee_capped_total";
    let waited = chaos.metric(capped).await;
    let before = chaos.provider_balance().await;
    // anvil asks about 1 gwei; a thousand times that is far past the cap.
    chaos.rpc.set_gas_multiplier(1000);
    let sent = chaos.rpc.calls("eth_sendRawTransaction");
    let (key, _, total) = chaos.pay(2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        chaos.settled_on_chain(key.address()).await.is_zero(),
        "nothing sent above the cap"
    );
    assert_eq!(chaos.rpc.calls("eth_sendRawTransaction"), sent);
    assert!(
        chaos.metric(capped).await > waited,
        "the wait shows in metrics"
    );
    chaos.rpc.set_gas_multiplier(1);
    chaos
        .assert_settled_exactly(key.address(), total, before)
        .await;
    chaos.broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_taken_by_the_operator_is_recovered() {
    // Replacement is off for the test's length: only noticing the stolen nonce recovers.
    let chaos = Chaos::start(|c| c.settlement.resubmit_secs = 600).await;
    let _miner = chaos.keep_mining();
    let taken = r#"zg_provider_settlement_resubmits_total{reason="nonce_taken"}"#;
    let seen = chaos.metric(taken).await;
    let before = chaos.provider_balance().await;
    chaos.rpc.swallow_sends(1);
    let (key, _, total) = chaos.pay(2).await;
    wait_for("the settlement to be swallowed", || async {
        !chaos.rpc.swallowed().is_empty()
    })
    .await;
    // The operator sends something with the provider's wallet: it gets the
    // settlement's nonce, which the node never saw.
    let operator = chaos
        .env
        .deployer
        .with_key(&chaos.env.provider_key.to_bytes())
        .unwrap();
    operator.set_voucher_signer(Address::ZERO).await.unwrap();
    chaos
        .assert_settled_exactly(key.address(), total, before)
        .await;
    assert!(chaos.metric(taken).await > seen);
    chaos.broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_the_node_serves_late_is_not_taken_for_a_lost_settlement() {
    let chaos = Chaos::start(|_| {}).await;
    let _miner = chaos.keep_mining();
    let taken = r#"zg_provider_settlement_resubmits_total{reason="nonce_taken"}"#;
    let seen = chaos.metric(taken).await;
    let before = chaos.provider_balance().await;
    let sent = chaos.rpc.calls("eth_sendRawTransaction");
    // The node counts the settlement's nonce as spent, but its receipt
    // answers null for a while (anvil does so for a moment after mining):
    // the first look is before the send, the second after it was mined.
    chaos.rpc.hide_results("eth_getTransactionReceipt", 2);
    let (key, _, total) = chaos.pay(2).await;
    chaos
        .assert_settled_exactly(key.address(), total, before)
        .await;
    assert_eq!(chaos.metric(taken).await, seen, "not counted as lost");
    assert_eq!(
        chaos.rpc.calls("eth_sendRawTransaction"),
        sent + 1,
        "one settlement sent, not a second with the same vouchers"
    );
    chaos.broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_that_removes_a_mined_settlement_sends_it_again() {
    // No blocks but the settlement's own and the ones this test mines.
    let chaos = Chaos::start(|_| {}).await;
    let reorg = r#"zg_provider_settlement_resubmits_total{reason="reorg"}"#;
    let seen = chaos.metric(reorg).await;
    let before = chaos.provider_balance().await;
    let (key, _, total) = chaos.pay(2).await;
    let user = key.address();
    wait_for("the settlement to be mined", || async {
        chaos.settled_on_chain(user).await == total
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        chaos.unsettled_in_store(user).await,
        total,
        "mined without confirmations is not final"
    );
    // The broker looks away while the block that mined it is replaced.
    chaos.rpc.set_down(true);
    chaos.rpc.anvil_reorg(1).await.unwrap();
    assert!(
        chaos.settled_on_chain(user).await.is_zero(),
        "the reorg undid the settlement"
    );
    chaos.rpc.set_down(false);
    wait_for("the settlement to be mined again", || async {
        chaos.settled_on_chain(user).await == total
    })
    .await;
    assert_eq!(chaos.unsettled_in_store(user).await, total);
    chaos.rpc.anvil_mine(2).await.unwrap();
    chaos.assert_settled_exactly(user, total, before).await;
    assert!(chaos.metric(reorg).await > seen);
    chaos.broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_whose_settlement_fails_alerts_then_settles_first() {
    // The threshold is never reached: only the refund makes the loop settle.
    let chaos =
        Chaos::start(|c| c.settlement.threshold = U256::from(10u64).pow(U256::from(18u64))).await;
    let _miner = chaos.keep_mining();
    let at_risk = "zg_provider_refunds_at_risk_total";
    let alerts = chaos.metric(at_risk).await;
    let before = chaos.provider_balance().await;
    let (key, user_chain, total) = chaos.pay(2).await;
    chaos.rpc.fail("eth_sendRawTransaction", 1_000);
    // The lock is 60 s, inside the 600 s margin: settlement must land now.
    user_chain
        .request_refund(chaos.env.provider(), U256::from(1u64))
        .await
        .unwrap();
    wait_for("the at-risk alert", || async {
        chaos.metric(at_risk).await > alerts
    })
    .await;
    assert_eq!(chaos.unsettled_in_store(key.address()).await, total);
    chaos.rpc.fail("eth_sendRawTransaction", 0);
    chaos
        .assert_settled_exactly(key.address(), total, before)
        .await;
    chaos.broker.shutdown().await.unwrap();
}

/// The receipt of `tx`, read from anvil directly.
async fn alloy_receipt(env: &Env, tx: B256) -> Option<serde_json::Value> {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(env.chain.url())
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt", "params": [tx] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer.get("result").filter(|r| !r.is_null()).cloned()
}
