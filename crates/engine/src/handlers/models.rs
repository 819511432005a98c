//! `GET /v1/models`: the served models, each with its file's sha256 (the
//! identity the marketplace registers on chain) and its capabilities (what
//! a broker in front lists for it).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::engine::Engine;

pub(super) async fn list(State(engine): State<Arc<Engine>>) -> Json<Value> {
    let data: Vec<Value> = engine
        .models()
        .iter()
        .map(|card| {
            json!({
                "id": card.id,
                "object": "model",
                "created": card.created,
                "owned_by": "zg-serving",
                "kind": card.kind,
                "sha256": card.sha256,
                "proof_method": card.proof_method,
                "capabilities": card.capabilities,
            })
        })
        .collect();
    Json(json!({ "object": "list", "data": data }))
}
