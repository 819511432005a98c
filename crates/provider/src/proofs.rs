//! Proofs of model from the upstream: the fetch of each answer's proof
//! (named by the upstream's `X-Engine-Proof-Id`) before its receipt is
//! signed. (`probe` checks at start that the upstream produces them.)

use axum::http::Uri;
use bytes::Bytes;
use zg_core::wire::routes;

use crate::{broker::ServiceRuntime, upstream::Upstream};

/// Largest proof taken from an upstream: 16 MiB, about two million tokens'
/// worth of `zg-logits-v1`, far beyond any answer.
const MAX_PROOF: usize = 16 * 1024 * 1024;

/// Fetches the proof the upstream named `id` for an answer of `service`.
pub(crate) async fn fetch(
    http: &Upstream,
    service: &ServiceRuntime,
    id: &str,
) -> Result<Bytes, String> {
    // The id comes from the upstream's header and goes into a path.
    let safe = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !safe || id.starts_with('.') {
        return Err(format!(
            "the upstream named the proof {id:?}, not an id of letters, digits, '-', '_' and '.'"
        ));
    }
    let url = crate::upstream::url(&service.base, &routes::proof(id));
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url} is not a URL ({e})"))?;
    let proof = get(http, service, &uri).await?;
    if proof.is_empty() {
        return Err(format!("{url} answered an empty proof"));
    }
    Ok(proof)
}

/// GETs `uri` from the service's upstream: the body of a 200 (at most
/// 16 MiB), else why not.
pub(crate) async fn get(
    http: &Upstream,
    service: &ServiceRuntime,
    uri: &Uri,
) -> Result<Bytes, String> {
    let response = http
        .get(uri, &service.headers)
        .await
        .map_err(|e| format!("GET {uri} failed: {e}"))?;
    let status = response.status();
    let body = response
        .bytes_at_most(MAX_PROOF)
        .await
        .map_err(|e| format!("GET {uri}: reading the answer failed: {e}"))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(format!("GET {uri} answered {status}: {text}"));
    }
    Ok(body)
}
