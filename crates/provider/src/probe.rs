//! The start's look at each service's upstream model list (`GET
//! {upstream}/models`): that the upstream produces the proof method the
//! service registers, and, for a chat service whose config declares no
//! capabilities, the ones the upstream's model card lists (the built-in
//! engine lists its own; a server that lists none is taken for plain chat).

use std::time::Duration;

use axum::http::Uri;
use serde::Deserialize;
use serde_json::Value;
use zg_core::{ServiceKind, Verifiability, capability, wire::routes};

use crate::{broker::ServiceRuntime, error::StartError, upstream::Upstream};

/// How long the start waits for an upstream's model list.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct Models {
    data: Vec<Model>,
}

#[derive(Deserialize)]
struct Model {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    proof_method: Option<String>,
    /// Read loosely: other servers put other shapes under this name.
    #[serde(default)]
    capabilities: Option<Value>,
}

/// Checks `service`'s upstream; returns the capabilities to list where the
/// config declares none (`None`: keep what the config says). A service
/// registered with a proof method its upstream does not produce is
/// refused: the upstream's model list must list a model with that
/// `proof_method` (the built-in engine does with proofs on). An upstream
/// that can't be asked only costs a chat service its listed capabilities.
pub(crate) async fn upstream(
    http: &Upstream,
    service: &ServiceRuntime,
) -> Result<Option<Vec<&'static str>>, StartError> {
    let proof = service.verifiability.proof_method();
    let config = &service.config;
    let asks = config.kind == ServiceKind::Chat && config.capabilities.is_none();
    if proof.is_none() && !asks {
        return Ok(None);
    }
    let url = crate::upstream::url(&service.base, routes::MODELS);
    let models = models(http, service, &url).await;
    if let Some(method) = proof {
        check_proof(service, method, &url, &models)?;
    }
    if !asks {
        return Ok(None);
    }
    match models {
        Ok(models) => Ok(Some(listed(&models, &config.model))),
        Err(why) => {
            tracing::warn!(service = %config.name, %why, "the upstream's capabilities are unknown: listing none (declare them with `capabilities` in the config)");
            Ok(Some(Vec::new()))
        }
    }
}

/// The upstream's model list, or why it has none.
async fn models(http: &Upstream, service: &ServiceRuntime, url: &str) -> Result<Models, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url} is not a URL ({e})"))?;
    let body = tokio::time::timeout(PATIENCE, crate::proofs::get(http, service, &uri))
        .await
        .map_err(|_| format!("its upstream's {url} did not answer in {PATIENCE:?}"))??;
    serde_json::from_slice(&body)
        .map_err(|e| format!("its upstream's {url} is not an OpenAI model list ({e})"))
}

fn check_proof(
    service: &ServiceRuntime,
    method: &str,
    url: &str,
    models: &Result<Models, String>,
) -> Result<(), StartError> {
    let refuse = |why: &str| StartError::Verifiability {
        service: service.config.name.clone(),
        why: format!(
            "it registers verifiability {method:?}, but {why}; point it at a zg-serving engine with proofs on, or register \"{}\"",
            Verifiability::None.as_str()
        ),
    };
    let models = models.as_ref().map_err(|why| refuse(why))?;
    let methods: Vec<&str> = models
        .data
        .iter()
        .filter_map(|m| m.proof_method.as_deref())
        .collect();
    if methods.contains(&method) {
        return Ok(());
    }
    Err(refuse(&format!(
        "its upstream's {url} lists no model that produces it (proof methods listed: {methods:?})"
    )))
}

/// The capabilities the card of `model` lists (the only card, where the
/// upstream names its one model otherwise), those this build knows.
fn listed(models: &Models, model: &str) -> Vec<&'static str> {
    let card = match models.data.as_slice() {
        [only] => Some(only),
        all => all.iter().find(|m| m.id.as_deref() == Some(model)),
    };
    let names = card
        .and_then(|m| m.capabilities.as_ref())
        .and_then(Value::as_array);
    names
        .into_iter()
        .flatten()
        .filter_map(|name| name.as_str().and_then(capability::known))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_come_from_the_models_card_and_only_known_names() {
        let models: Models = serde_json::from_value(serde_json::json!({ "data": [
            { "id": "chat-model", "capabilities": ["tools", "telepathy", "n"] },
            { "id": "embedder", "capabilities": [] },
        ]}))
        .unwrap();
        assert_eq!(
            listed(&models, "chat-model"),
            vec![capability::TOOLS, capability::N]
        );
        assert!(listed(&models, "embedder").is_empty());
        assert!(listed(&models, "other").is_empty());
        // Another server's shape under the same name lists nothing.
        let other: Models = serde_json::from_value(serde_json::json!({ "data": [
            { "id": "x", "capabilities": { "completion": true } },
        ]}))
        .unwrap();
        assert!(listed(&other, "y").is_empty());
    }
}
