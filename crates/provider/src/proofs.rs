//! Proofs of model from the upstream: the start's check that a service
//! registered with a proof method sits in front of an upstream that
//! produces it, and the fetch of each answer's proof (named by the
//! upstream's `X-Engine-Proof-Id`) before its receipt is signed.

use axum::http::Uri;
use bytes::Bytes;
use serde::Deserialize;
use zg_core::{Verifiability, wire::routes};

use crate::{broker::ServiceRuntime, error::StartError, upstream::Upstream};

/// Largest proof taken from an upstream: 16 MiB, about two million tokens'
/// worth of `zg-logits-v1`, far beyond any answer.
const MAX_PROOF: usize = 16 * 1024 * 1024;

#[derive(Deserialize)]
struct Models {
    data: Vec<Model>,
}

#[derive(Deserialize)]
struct Model {
    #[serde(default)]
    proof_method: Option<String>,
}

/// Refuses a service whose registered proof method its upstream does not
/// produce: the upstream's `GET /models` must list a model with that
/// `proof_method` (the built-in engine lists it with proofs on).
pub(crate) async fn check_upstream(
    http: &Upstream,
    service: &ServiceRuntime,
) -> Result<(), StartError> {
    let Verifiability::Proof(method) = service.verifiability else {
        return Ok(());
    };
    let name = &service.config.name;
    let refuse = |why: String| StartError::Verifiability {
        service: name.clone(),
        why: format!(
            "it registers verifiability {method:?}, but {why}; point it at a zg-serving engine with proofs on, or register \"none\""
        ),
    };
    let url = format!("{}{}", service.base, models_path());
    let uri: Uri = url
        .parse()
        .map_err(|e| refuse(format!("{url} is not a URL ({e})")))?;
    let body = get(http, service, &uri).await.map_err(refuse)?;
    let models: Models = serde_json::from_slice(&body).map_err(|e| {
        refuse(format!(
            "its upstream's {url} is not an OpenAI model list ({e})"
        ))
    })?;
    let methods: Vec<&str> = models
        .data
        .iter()
        .filter_map(|m| m.proof_method.as_deref())
        .collect();
    if methods.contains(&method) {
        return Ok(());
    }
    Err(refuse(format!(
        "its upstream's {url} lists no model that produces it (proof methods listed: {methods:?})"
    )))
}

/// The path of the model list under the upstream's base (which ends in `/v1`).
fn models_path() -> &'static str {
    routes::MODELS.trim_start_matches("/v1")
}

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
    let path = routes::proof(id);
    let url = format!("{}{}", service.base, path.trim_start_matches("/v1"));
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url} is not a URL ({e})"))?;
    let proof = get(http, service, &uri).await?;
    if proof.is_empty() {
        return Err(format!("{url} answered an empty proof"));
    }
    Ok(proof)
}

/// GETs `uri` from the service's upstream: the body of a 200, else why not.
async fn get(http: &Upstream, service: &ServiceRuntime, uri: &Uri) -> Result<Bytes, String> {
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
