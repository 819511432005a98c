//! The user's `ft:` models answered on this machine: a chat request that
//! names one goes to a built-in engine running the base model (the GGUF in
//! the models directory whose sha256 is the job's base model) with the
//! job's adapter, started on first use and kept. Nothing is paid: the
//! adapter is the user's own, and so is the machine.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use tokio::sync::Mutex;
use zg_engine::{EngineConfig, ServerHandle};

use super::FtError;
use crate::Gateway;

/// Engines serving fine-tuned models, by model name.
pub(crate) struct Local {
    /// GGUF files of base models (`GatewayConfig::models_dir`).
    models: Option<Arc<zg_engine::verify::Shelf>>,
    engines: Mutex<HashMap<String, ServerHandle>>,
}

impl Local {
    pub(crate) fn new(models_dir: Option<PathBuf>) -> Self {
        Self {
            models: models_dir.map(|dir| Arc::new(zg_engine::verify::Shelf::new(&dir, 1))),
            engines: Mutex::default(),
        }
    }
}

/// Whether a chat body names a fine-tuned model (checked before parsing
/// anything, so other requests pay nothing for it).
pub(crate) fn names_fine_tuned(body: &[u8]) -> bool {
    body.windows(4).any(|w| w == b"\"ft:")
}

/// Answers a chat request for one of the user's `ft:` models (the
/// gateway's API keys apply), or None when the body names none of them
/// (the marketplace serves it).
pub(crate) async fn answer(
    gw: &Arc<Gateway>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Response> {
    let model = serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("model")?
        .as_str()?
        .to_owned();
    let (digest, adapter) = gw.fine_tuning.adapter_of(&model).await?;
    if let Err(refused) = super::authorize(gw, headers).await {
        return Some(refused.into_response());
    }
    Some(match url(gw, &model, digest, adapter).await {
        Ok(base) => forward(gw, &base, body.clone()).await,
        Err(e) => e.into_response(),
    })
}

/// The base URL of the engine serving `model`, started when there is none.
async fn url(
    gw: &Gateway,
    model: &str,
    digest: zg_core::B256,
    adapter: PathBuf,
) -> Result<String, FtError> {
    let local = &gw.fine_tuning.local;
    let mut engines = local.engines.lock().await;
    if let Some(engine) = engines.get(model) {
        return Ok(engine.base_url());
    }
    let Some(shelf) = &local.models else {
        return Err(FtError::invalid(
            format!(
                "{model} is a fine-tuned model of base model {digest}, and this gateway has no models directory to serve it from: start it with --models-dir DIR (a folder with that GGUF), or serve the adapter with `zg-serving engine --lora {}`",
                adapter.display()
            ),
            "model",
        ));
    };
    let hex = hex::encode(digest);
    let (found, wanted) = (shelf.clone(), hex.clone());
    // Hashing the folder's files is blocking work.
    let base = tokio::task::spawn_blocking(move || found.path_of(&wanted))
        .await
        .ok()
        .flatten();
    let base = base.ok_or_else(|| {
        FtError::invalid(
            format!(
                "no GGUF in the models directory has sha256 {hex}, the base model of {model}: put the base model there"
            ),
            "model",
        )
    })?;
    let config = EngineConfig {
        lora: Some(adapter),
        parallel: 2,
        // A proof of the adapted model checks against no registered weights.
        proofs: false,
        ..EngineConfig::new(base)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| FtError::Provider(format!("starting an engine for {model}: {e}")))?;
    let engine = zg_engine::spawn(config, listener)
        .await
        .map_err(|e| FtError::Provider(format!("starting an engine for {model}: {e}")))?;
    tracing::info!(model, url = %engine.base_url(), "serving a fine-tuned model on this machine");
    let url = engine.base_url();
    engines.insert(model.to_owned(), engine);
    Ok(url)
}

/// Sends the request to the engine and streams its answer back as it comes.
async fn forward(gw: &Gateway, base: &str, body: Bytes) -> Response {
    let sent = gw
        .payer
        .http()
        .post(format!("{base}/chat/completions"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => {
            return FtError::Provider(format!("the local engine did not answer: {e}"))
                .into_response();
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(header::HeaderValue::from_static("application/json"));
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(answer.bytes_stream()),
    )
        .into_response()
}
