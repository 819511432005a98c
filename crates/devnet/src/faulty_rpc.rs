//! A JSON-RPC proxy in front of a dev chain that misbehaves on command, for
//! testing what a broker does when its chain does: the node down (connections
//! closed unanswered), slow answers, errors on chosen methods, answers lost
//! after the node acted, results not served yet, sent transactions swallowed (answered with their
//! hash, never forwarded: dropped from the pool), and inflated gas prices.
//! It also drives anvil behind it (reorgs, mining) for faults of the chain itself.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy::primitives::{B256, Bytes as TxBytes, U256, keccak256};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::DevnetError;

/// The methods whose answers carry gas prices, inflated by [`FaultyRpc::set_gas_multiplier`].
const FEE_METHODS: [&str; 3] = ["eth_gasPrice", "eth_maxPriorityFeePerGas", "eth_feeHistory"];

#[derive(Default)]
struct Faults {
    down: bool,
    delay: Duration,
    /// Per method: how many more calls get an error without reaching the node.
    fail: HashMap<String, u32>,
    /// Per method: how many more calls reach the node but get an error back.
    lose: HashMap<String, u32>,
    /// Per method: how many more calls are answered `null` without reaching the node.
    hide: HashMap<String, u32>,
    /// How many more `eth_sendRawTransaction` are swallowed.
    swallow: u32,
    swallowed: Vec<B256>,
    gas_multiplier: u64,
    /// Calls seen per method, faulted or not.
    calls: HashMap<String, u64>,
}

/// What to do with one call, decided under the lock and done after it.
enum Plan {
    Close,
    Fail,
    Null,
    Swallow(B256),
    Forward { lose: bool, inflate: u64 },
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    faults: Mutex<Faults>,
}

/// The proxy, listening on a free port of 127.0.0.1 until dropped.
pub struct FaultyRpc {
    url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FaultyRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultyRpc {
    /// Starts the proxy in front of the JSON-RPC server at `upstream`, faultless.
    pub async fn start(upstream: &str) -> Result<Self, DevnetError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| DevnetError::rpc("binding the faulty RPC proxy", e))?;
        let addr: SocketAddr = listener
            .local_addr()
            .map_err(|e| DevnetError::rpc("binding the faulty RPC proxy", e))?;
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            http: reqwest::Client::new(),
            faults: Mutex::new(Faults {
                gas_multiplier: 1,
                ..Faults::default()
            }),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if serving.faults().down {
                    // Closed without a word, as a node that is down.
                    drop(stream);
                    continue;
                }
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            url: format!("http://{addr}"),
            shared,
            task,
        })
    }

    /// The proxy's URL, to give the code under test instead of the node's.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Down: every connection, new or kept alive, is closed unanswered.
    pub fn set_down(&self, down: bool) {
        self.shared.faults().down = down;
    }

    /// Every answer waits this long first (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.faults().delay = delay;
    }

    /// The next `times` calls of `method` get a JSON-RPC error and never reach the node.
    pub fn fail(&self, method: &str, times: u32) {
        self.shared.faults().fail.insert(method.into(), times);
    }

    /// The next `times` calls of `method` reach the node, which acts on them,
    /// but their answer is replaced by an error: the caller can't tell
    /// whether its transaction went out.
    pub fn lose_answers(&self, method: &str, times: u32) {
        self.shared.faults().lose.insert(method.into(), times);
    }

    /// The next `times` calls of `method` are answered `null`, never
    /// reaching the node: a node whose state already shows a block it does
    /// not serve yet (a receipt asked of it a moment after its nonce).
    pub fn hide_results(&self, method: &str, times: u32) {
        self.shared.faults().hide.insert(method.into(), times);
    }

    /// The next `times` `eth_sendRawTransaction` are answered with the
    /// transaction's hash and never forwarded: dropped from the pool.
    pub fn swallow_sends(&self, times: u32) {
        self.shared.faults().swallow = times;
    }

    /// The hashes of the transactions swallowed so far.
    pub fn swallowed(&self) -> Vec<B256> {
        self.shared.faults().swallowed.clone()
    }

    /// Multiplies every gas price the node reports (`eth_gasPrice`,
    /// `eth_maxPriorityFeePerGas`, `eth_feeHistory`): a spike; 1 ends it.
    pub fn set_gas_multiplier(&self, factor: u64) {
        self.shared.faults().gas_multiplier = factor.max(1);
    }

    /// How many calls of `method` came in, faulted or not.
    pub fn calls(&self, method: &str) -> u64 {
        self.shared.faults().calls.get(method).copied().unwrap_or(0)
    }

    /// Replaces the newest `depth` blocks of the anvil behind the proxy with
    /// empty ones (`anvil_reorg`): their transactions are gone, from the
    /// pool too.
    pub async fn anvil_reorg(&self, depth: u64) -> Result<(), DevnetError> {
        self.direct("anvil_reorg", json!([depth, []]))
            .await
            .map(drop)
    }

    /// Mines `blocks` empty blocks on the anvil behind the proxy.
    pub async fn anvil_mine(&self, blocks: u64) -> Result<(), DevnetError> {
        self.direct("anvil_mine", json!([blocks])).await.map(drop)
    }

    /// A call straight to the node, past every fault.
    async fn direct(&self, method: &str, params: Value) -> Result<Value, DevnetError> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let answer: Value = self
            .shared
            .http
            .post(&self.shared.upstream)
            .json(&body)
            .send()
            .await
            .map_err(|e| DevnetError::rpc(format!("calling {method}"), e))?
            .json()
            .await
            .map_err(|e| DevnetError::rpc(format!("reading the answer to {method}"), e))?;
        match answer.get("error") {
            Some(error) => Err(DevnetError::rpc(format!("calling {method}"), error)),
            None => Ok(answer.get("result").cloned().unwrap_or(Value::Null)),
        }
    }
}

impl Shared {
    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides a single call's fate (and counts it).
    fn plan(&self, call: &Value) -> Plan {
        let method = call.get("method").and_then(Value::as_str).unwrap_or("");
        let mut f = self.faults();
        *f.calls.entry(method.into()).or_default() += 1;
        if f.down {
            return Plan::Close;
        }
        if take(&mut f.fail, method) {
            return Plan::Fail;
        }
        if take(&mut f.hide, method) {
            return Plan::Null;
        }
        if method == "eth_sendRawTransaction" && f.swallow > 0 {
            let raw = call
                .pointer("/params/0")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<TxBytes>().ok());
            if let Some(raw) = raw {
                // A transaction's hash is keccak256 of its encoded envelope, as sent.
                let hash = keccak256(&raw);
                f.swallow -= 1;
                f.swallowed.push(hash);
                return Plan::Swallow(hash);
            }
        }
        let lose = take(&mut f.lose, method);
        let inflate = if FEE_METHODS.contains(&method) {
            f.gas_multiplier
        } else {
            1
        };
        Plan::Forward { lose, inflate }
    }
}

/// Counts one down from `method`'s budget; whether there was one.
fn take(budget: &mut HashMap<String, u32>, method: &str) -> bool {
    match budget.get_mut(method) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

type Answer = Response<Full<Bytes>>;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Answer, std::io::Error> {
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let delay = shared.faults().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let call: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // Batches pass through untouched but for the node being down.
    let plan = if call.is_array() {
        if shared.faults().down {
            Plan::Close
        } else {
            Plan::Forward {
                lose: false,
                inflate: 1,
            }
        }
    } else {
        shared.plan(&call)
    };
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let answer = match plan {
        // An error from the service makes hyper drop the connection unanswered.
        Plan::Close => return Err(std::io::Error::other("the faulty RPC is down")),
        Plan::Fail => error(&id, "injected fault: the call never reached the node"),
        Plan::Null => json!({ "jsonrpc": "2.0", "id": id, "result": null }),
        Plan::Swallow(hash) => json!({ "jsonrpc": "2.0", "id": id, "result": hash }),
        Plan::Forward { lose, inflate } => {
            let forwarded = shared
                .http
                .post(&shared.upstream)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let mut answer: Value = match forwarded {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(e) => return Err(std::io::Error::other(e)),
            };
            if lose {
                error(&id, "injected fault: the node acted, its answer was lost")
            } else {
                if inflate > 1
                    && let Some(result) = answer.get_mut("result")
                {
                    inflate_prices(result, U256::from(inflate));
                }
                answer
            }
        }
    };
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

fn error(id: &Value, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32000, "message": message } })
}

/// Multiplies every price in a fee answer: a quantity (`eth_gasPrice`,
/// `eth_maxPriorityFeePerGas`) or `eth_feeHistory`'s base fees and rewards.
fn inflate_prices(result: &mut Value, factor: U256) {
    match result {
        Value::String(hex) => {
            if let Ok(price) = hex.parse::<U256>() {
                *hex = format!("{:#x}", price.saturating_mul(factor));
            }
        }
        Value::Object(history) => {
            for key in ["baseFeePerGas", "reward"] {
                if let Some(v) = history.get_mut(key) {
                    inflate_prices(v, factor);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| inflate_prices(v, factor)),
        _ => {}
    }
}
