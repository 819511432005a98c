//! The HTTP routes: one module per endpoint, all answering errors in
//! OpenAI's shape.

mod chat;
mod completions;
mod embeddings;
mod generate;
mod models;
mod proofs;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::api::ApiError;
use crate::engine::Engine;

pub(crate) fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(models::list))
        .route("/v1/proofs/{id}", get(proofs::get))
        .route("/health", get(health))
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::not_found(format!("no route for {uri}: this engine serves /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models and /v1/proofs/{{id}}"))
        })
        .with_state(engine)
}

/// `GET /health`: up, and how busy the slots are.
async fn health(
    axum::extract::State(engine): axum::extract::State<Arc<Engine>>,
) -> axum::Json<serde_json::Value> {
    let (slots, busy, waiting) = engine.chat().occupancy();
    axum::Json(serde_json::json!({
        "status": "ok",
        "slots": slots,
        "busy_slots": busy,
        "waiting": waiting,
    }))
}
