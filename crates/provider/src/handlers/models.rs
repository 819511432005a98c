//! `GET /v1/models`: the services of this broker, in OpenAI's list shape,
//! with what a client checks receipts against (digest, prices, signer) and
//! what a gateway routes on (capabilities, verifiability, max_choices).

use std::sync::Arc;

use axum::{Json, extract::State};
use serde_json::{Value, json};

use crate::broker::Broker;

pub(super) async fn list(State(broker): State<Arc<Broker>>) -> Json<Value> {
    let data: Vec<Value> = broker
        .services
        .iter()
        .map(|s| {
            json!({
                "id": s.config.name,
                "object": "model",
                "created": 0,
                "owned_by": broker.provider.to_string(),
                "kind": s.config.kind,
                "model": s.config.model,
                "model_digest": s.config.model_digest.to_string(),
                "input_price": s.prices.input.to_string(),
                "output_price": s.prices.output.to_string(),
                "signer": broker.signer.address().to_string(),
                "verifiability": s.verifiability.as_str(),
                "capabilities": s.capabilities,
                "max_choices": s.config.max_choices,
            })
        })
        .collect();
    Json(json!({ "object": "list", "data": data }))
}
