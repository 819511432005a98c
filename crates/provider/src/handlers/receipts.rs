//! `GET /v1/receipts/{id}`: the signed receipt of a request, for streams
//! (whose SSE body can't carry a header at its end). Waits briefly while
//! the request is still running.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Path, State},
};
use zg_core::{ErrorCode, headers::SignedReceipt};

use crate::{broker::Broker, error::ApiError, store::RequestState};

const WAIT: Duration = Duration::from_secs(10);

pub(super) async fn get(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
) -> Result<Json<SignedReceipt>, ApiError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let record = broker.store.request(&id).await?;
        match record {
            None => {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("no request {id:?} here: use the X-ZG-Request-Id of an answer"),
                ));
            }
            Some(r) if r.state == RequestState::Failed => {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("request {id} failed upstream: it cost nothing and has no receipt"),
                ));
            }
            Some(r) => {
                if let Some(receipt) = r.receipt {
                    return Ok(Json(receipt));
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("request {id} is still running: ask again when its stream has ended"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
