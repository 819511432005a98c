//! The fine-tuning routes (`zg_core::fine_tuning::routes`): count a
//! training file, start a job on a signed order, read a job, cancel it,
//! and download its sealed adapter, resumable with a `Range` header.

use std::sync::Arc;

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use zg_core::{
    B256, ErrorCode,
    fine_tuning::{CancelJob, Count, CountRequest, JobView, StartJob},
};

use crate::{broker::Broker, error::ApiError, fine_tuning::Tuner};

fn tuner(broker: &Broker) -> Result<&Arc<Tuner>, ApiError> {
    broker.tuner.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "this provider offers no fine-tuning service",
        )
    })
}

fn job_id(text: &str) -> Result<B256, ApiError> {
    text.parse().map_err(|_| {
        ApiError::invalid(format!(
            "a job id is the order's 32-byte digest in hex, got {text:?}"
        ))
    })
}

/// A JSON body, with OpenAI's error shape when it is not the expected one.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("request body: {e}")))
}

pub(super) async fn count(
    State(broker): State<Arc<Broker>>,
    body: axum::body::Bytes,
) -> Result<Json<Count>, ApiError> {
    let request: CountRequest = parse(&body)?;
    Ok(Json(tuner(&broker)?.count(request).await?))
}

pub(super) async fn start(
    State(broker): State<Arc<Broker>>,
    body: axum::body::Bytes,
) -> Result<Json<JobView>, ApiError> {
    let start: StartJob = parse(&body)?;
    Ok(Json(tuner(&broker)?.start(start).await?))
}

pub(super) async fn get(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = job_id(&id)?;
    tuner(&broker)?
        .view(&id)
        .map(Json)
        .ok_or_else(|| crate::fine_tuning::unknown_job(&id))
}

pub(super) async fn cancel(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<JobView>, ApiError> {
    let id = job_id(&id)?;
    let cancel: CancelJob = parse(&body)?;
    Ok(Json(tuner(&broker)?.cancel(id, cancel).await?))
}

/// The sealed adapter, whole or the one byte range asked for. Anyone may
/// fetch it: only the key sealed to the order's signer opens it.
pub(super) async fn adapter(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let path = tuner(&broker)?.sealed_adapter(&id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("job {id} has no delivered adapter (unknown, or not delivered yet)"),
        )
    })?;
    let bytes = tokio::fs::read(&path).await.map_err(ApiError::internal)?;
    let total = bytes.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| byte_range(v, total));
    let octets = HeaderValue::from_static("application/octet-stream");
    let accept = HeaderValue::from_static("bytes");
    Ok(match range {
        None => (
            [
                (header::CONTENT_TYPE, octets),
                (header::ACCEPT_RANGES, accept),
            ],
            bytes,
        )
            .into_response(),
        Some(Some((start, end))) => {
            let content_range = format!("bytes {start}-{end}/{total}");
            let part = bytes[start as usize..=end as usize].to_vec();
            (
                StatusCode::PARTIAL_CONTENT,
                [
                    (header::CONTENT_TYPE, octets),
                    (header::ACCEPT_RANGES, accept),
                    (
                        header::CONTENT_RANGE,
                        HeaderValue::from_str(&content_range).map_err(ApiError::internal)?,
                    ),
                ],
                Body::from(part),
            )
                .into_response()
        }
        Some(None) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{total}")).map_err(ApiError::internal)?,
            )],
        )
            .into_response(),
    })
}

/// The inclusive byte range of a one-range `Range` header (`bytes=A-B`,
/// `bytes=A-`, `bytes=-N`) within `total` bytes; None when it cannot be
/// served.
fn byte_range(header: &str, total: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (total.saturating_sub(n), total - 1)
        }
        (a, "") => (a.parse().ok()?, total - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(total - 1)),
    };
    (start <= end && start < total).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=9-0", 100), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
        assert_eq!(byte_range("bytes=x-", 100), None);
        assert_eq!(byte_range("bytes=0-0", 0), None);
    }
}
