//! The gateway tests' marketplace: the user-side tests' one (a dev chain
//! with the contracts, real brokers in front of the real engine, funded
//! users), plus a gateway for a user.
#![allow(dead_code)]

pub(crate) mod fake;
#[path = "../../../client/tests/common/mod.rs"]
mod market;

pub(crate) use market::*;
use std::{sync::Arc, time::Duration};
use zg_chain::ChainClient;
use zg_client::{AckPolicy, Payer};
use zg_core::{Address, SigningKey};
use zg_gateway::{Gateway, GatewayConfig};

/// A gateway for `key`'s user on a free port; returns its `/v1` URL.
pub(crate) async fn start_gateway(
    market: &mut Market,
    key: &SigningKey,
    chain: ChainClient,
    config: GatewayConfig,
) -> (String, Arc<Gateway>, Payer) {
    let (payer, _) = market
        .payer(key, AckPolicy::WhenIdle(Duration::from_secs(2)))
        .await;
    let gateway = Gateway::new(payer.clone(), chain, config)
        .await
        .expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = gateway.clone().spawn(listener).await.expect("serve");
    (format!("http://{addr}/v1"), gateway, payer)
}

/// POSTs a chat body to the gateway at `url` (its `/v1`).
pub(crate) async fn post(url: &str, body: &serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/chat/completions"))
        .json(body)
        .send()
        .await
        .expect("gateway reachable")
}

/// The provider that answered, as the gateway says.
pub(crate) fn served_by(r: &reqwest::Response) -> Address {
    r.headers()
        .get("x-zg-provider")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("x-zg-provider")
}
