//! `GET /v1/proofs/{id}`: the proof of model of an answer, by its
//! `X-ZG-Request-Id`, kept with its receipt (which binds its keccak256 as
//! `proofDigest`). The proof is stored in the same step as the receipt, so
//! whoever has the receipt finds the proof.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use zg_core::ErrorCode;

use crate::{broker::Broker, error::ApiError};

pub(super) async fn get(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let proof = broker.store.proof(&id).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no proof for request {id:?}: the id is unknown, the request has no receipt yet, or its model server gives no proofs (its receipt's proofDigest is zero)"
            ),
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        proof,
    )
        .into_response())
}
