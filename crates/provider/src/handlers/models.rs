//! `GET /v1/models`: the services of this broker, in OpenAI's list shape,
//! with what a client checks receipts against (digest, prices, signer) and
//! what a gateway routes on (capabilities, verifiability, max_choices, the
//! prices in force as a signed quote); and `GET /v1/quote?model=NAME`, one
//! service's quote alone.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Query, State},
};
use serde::Deserialize;
use serde_json::{Value, json};
use zg_core::SignedQuote;

use crate::{broker::Broker, error::ApiError};

#[derive(Deserialize)]
pub(super) struct QuoteQuery {
    model: Option<String>,
}

/// The signed prices in force now of the service `model` names.
pub(super) async fn quote(
    State(broker): State<Arc<Broker>>,
    Query(query): Query<QuoteQuery>,
) -> Result<Json<SignedQuote>, ApiError> {
    let model = query.model.ok_or_else(|| {
        ApiError::invalid("GET /v1/quote needs ?model=NAME, a service this broker serves")
            .with_param("model")
    })?;
    let service = broker.service_named(&model)?;
    Ok(Json(
        broker.quote(service).sign(&broker.signer, &broker.domain),
    ))
}

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
                "cached_input_price": s.prices.cached.to_string(),
                "max_output_tokens": s.config.max_output_tokens,
                "quote": broker.quote(s).sign(&broker.signer, &broker.domain),
                "signer": broker.signer.address().to_string(),
                "verifiability": s.verifiability.as_str(),
                "capabilities": s.capabilities,
                "max_choices": s.config.max_choices,
            })
        })
        .collect();
    Json(json!({ "object": "list", "data": data }))
}
