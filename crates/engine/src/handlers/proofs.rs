//! `GET /v1/proofs/{id}`: the proof of model of a recent chat answer, by
//! the answer's id (also sent as the `X-Engine-Proof-Id` header).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;
use crate::engine::Engine;
use crate::proof::PROOF_METHOD;

const PROOF_ID: HeaderName = HeaderName::from_static(zg_core::verifiability::PROOF_ID_HEADER);
const PROOF_METHOD_HEADER: HeaderName = HeaderName::from_static("x-engine-proof-method");

/// The header that names an answer's proof; ids are ASCII.
pub(super) fn id_header(id: &str) -> [(HeaderName, HeaderValue); 1] {
    let value = HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static(""));
    [(PROOF_ID, value)]
}

pub(super) async fn get(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = engine.proofs().ok_or_else(|| {
        ApiError::not_found("this engine records no proofs (started with proofs off)")
    })?;
    let proof = store.get(&id).ok_or_else(|| {
        ApiError::not_found(format!(
            "no proof for answer {id}: the id is unknown, the answer is still running, or its proof was evicted"
        ))
    })?;
    Ok((
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (PROOF_METHOD_HEADER, HeaderValue::from_static(PROOF_METHOD)),
        ],
        proof.to_vec(),
    )
        .into_response())
}
