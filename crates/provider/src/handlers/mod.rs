//! The HTTP routes of the broker. The paid ones read what admission needs
//! from the body and hand the request to `forward`.

mod account;
mod embeddings;
mod fine_tuning;
mod generation;
mod guard;
mod health;
mod models;
mod proofs;
mod receipts;
mod vouchers;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
};
use zg_core::{ErrorCode, fine_tuning::routes as ft, wire::routes};

use crate::{broker::Broker, error::ApiError};

/// Largest request body accepted (a long chat history, a batch of inputs).
const BODY_LIMIT: usize = 8 * 1024 * 1024;

pub(crate) fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route(
            routes::CHAT_COMPLETIONS,
            generation::post(&generation::CHAT),
        )
        .route(
            routes::COMPLETIONS,
            generation::post(&generation::COMPLETIONS),
        )
        .route(routes::EMBEDDINGS, post(embeddings::embeddings))
        .route(routes::MODELS, get(models::list))
        .route(routes::QUOTE, get(models::quote))
        .route(routes::RECEIPT, get(receipts::get))
        .route(routes::PROOF, get(proofs::get))
        .route(routes::ACCOUNT, get(account::statement))
        .route(routes::VOUCHERS, post(vouchers::ack))
        .route(ft::COUNT, post(fine_tuning::count))
        .route(ft::JOBS, post(fine_tuning::start))
        .route(ft::JOB, get(fine_tuning::get))
        .route(ft::CANCEL, post(fine_tuning::cancel))
        .route(ft::ADAPTER, get(fine_tuning::adapter))
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(guard::guard))
        .with_state(broker)
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such route: this broker serves /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, /v1/quote, /v1/receipts/{id}, /v1/proofs/{id}, /v1/account/{user}, /v1/vouchers, /v1/fine-tuning/...",
    )
}
