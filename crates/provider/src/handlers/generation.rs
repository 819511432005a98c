//! `POST /v1/chat/completions` and `POST /v1/completions`, one handler: it
//! reads what admission needs from the body (model, max_tokens, n, stream,
//! and for the legacy endpoint how many prompts), caps max_tokens at the
//! service's limit, forces `stream_options.include_usage` on streams, then
//! admits the worst case (every prompt's n choices at max_tokens each) and
//! proxies. The fee comes from the upstream's `usage`, which covers every
//! choice.

use std::{borrow::Cow, fmt, sync::Arc};

use axum::{extract::State, http::HeaderMap, response::Response, routing::MethodRouter};
use bytes::Bytes;
use serde::{
    Deserialize, Deserializer,
    de::{SeqAccess, Visitor},
};
use serde_json::Value;
use tracing::Instrument;
use zg_core::wire::routes;

use crate::{broker::Broker, config::ServiceConfig, error::ApiError, forward, metrics};

/// What sets the two generation routes apart.
pub(super) struct Endpoint {
    route: &'static str,
    /// The body's name in errors.
    what: &'static str,
    /// Output tokens per choice when the request sets no limit (the
    /// service's cap when `None`).
    default_max_tokens: Option<u64>,
    plain: metrics::Kind,
    streamed: metrics::Kind,
}

pub(super) const CHAT: Endpoint = Endpoint {
    route: routes::CHAT_COMPLETIONS,
    what: "a chat completion request",
    default_max_tokens: None,
    plain: metrics::Kind::Chat,
    streamed: metrics::Kind::ChatStream,
};

/// The legacy endpoint's default of 16 tokens (OpenAI's, vLLM's and the
/// built-in engine's) is kept, not widened to the service's cap.
pub(super) const COMPLETIONS: Endpoint = Endpoint {
    route: routes::COMPLETIONS,
    what: "a completion request",
    default_max_tokens: Some(16),
    plain: metrics::Kind::Completions,
    streamed: metrics::Kind::CompletionsStream,
};

/// The POST route of `endpoint`.
pub(super) fn post(endpoint: &'static Endpoint) -> MethodRouter<Arc<Broker>> {
    axum::routing::post(
        move |State(broker): State<Arc<Broker>>, headers: HeaderMap, body: Bytes| {
            generate(endpoint, broker, headers, body)
        },
    )
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    max_tokens: Option<Value>,
    max_completion_tokens: Option<Value>,
    n: Option<Value>,
    /// The legacy endpoint's server-side candidates, `n` of which return.
    best_of: Option<Value>,
    /// The legacy endpoint's prompt, or batch of prompts.
    prompt: Option<Prompt>,
    #[serde(default)]
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

async fn generate(
    endpoint: &Endpoint,
    broker: Arc<Broker>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let peek: Peek = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("the body is not {}: {e}", endpoint.what)))?;
    let model = peek.model.as_deref().ok_or_else(|| {
        ApiError::invalid("`model` is required: name a service of GET /v1/models")
            .with_param("model")
    })?;
    let target = broker.service(model, endpoint.route)?;
    let service = &target.service.config;
    let cap = service.max_output_tokens;
    let asked = match peek
        .max_completion_tokens
        .as_ref()
        .or(peek.max_tokens.as_ref())
    {
        None | Some(Value::Null) => None,
        Some(v) => Some(positive(v).ok_or_else(|| {
            ApiError::invalid(format!("max_tokens must be a positive integer, got {v}"))
                .with_param("max_tokens")
        })?),
    };
    let max_out = asked
        .or(endpoint.default_max_tokens)
        .map_or(cap, |n| n.min(cap));
    let choices = choices(service, "n", peek.n.as_ref())?.max(choices(
        service,
        "best_of",
        peek.best_of.as_ref(),
    )?);
    let prompts = peek.prompt.map_or(1, |p| p.count());
    let stream = peek.stream.unwrap_or(false);
    let user_wants_usage = peek
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let needs_rewrite =
        model != service.model || asked != Some(max_out) || (stream && !user_wants_usage);

    let forward = if needs_rewrite {
        let mut value: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
        let object = value
            .as_object_mut()
            .ok_or_else(|| ApiError::invalid("the body must be a JSON object"))?;
        object.insert("model".into(), service.model.clone().into());
        object.remove("max_completion_tokens");
        object.insert("max_tokens".into(), max_out.into());
        if stream {
            object.insert(
                "stream_options".into(),
                serde_json::json!({ "include_usage": true }),
            );
        }
        Bytes::from(serde_json::to_vec(&value).map_err(ApiError::internal)?)
    } else {
        body.clone()
    };

    let prices = target.service.prices;
    let worst = prices.worst_case(body.len(), worst_output(max_out, choices, prompts));
    let admitted = forward::admit(&broker, &headers, &body, target, (worst, max_out)).await?;
    let span = admitted.span();
    if stream {
        metrics::global().request(endpoint.streamed);
        forward::stream(admitted, forward, user_wants_usage)
            .instrument(span)
            .await
    } else {
        metrics::global().request(endpoint.plain);
        forward::plain(admitted, forward).instrument(span).await
    }
}

/// A positive integer, as JSON has it.
fn positive(v: &Value) -> Option<u64> {
    v.as_u64().filter(|n| *n > 0)
}

/// The choices `param` (`n`, or the legacy `best_of`) asks for: 1 when
/// absent, refused unless a whole number from 1 to the service's
/// `max_choices`.
fn choices(
    service: &ServiceConfig,
    param: &'static str,
    value: Option<&Value>,
) -> Result<u64, ApiError> {
    let n = match value {
        None | Some(Value::Null) => return Ok(1),
        Some(v) => positive(v).ok_or_else(|| {
            ApiError::invalid(format!("{param} must be a positive integer, got {v}"))
                .with_param(param)
        })?,
    };
    if n > service.max_choices {
        return Err(ApiError::invalid(format!(
            "{param} = {n} asks for more choices than service {:?} answers in one request ({}): ask for fewer, or send several requests",
            service.name, service.max_choices
        ))
        .with_param(param));
    }
    Ok(n)
}

/// The most output tokens a request can be billed: each prompt's choices,
/// each up to `max_out` tokens.
fn worst_output(max_out: u64, choices: u64, prompts: u64) -> u64 {
    max_out.saturating_mul(choices).saturating_mul(prompts)
}

/// The shape of a legacy `prompt`, read without copying its text: a
/// string, a token (an item of a token list) or a list.
enum Prompt {
    Text,
    Token,
    List { items: u64, tokens: bool },
}

impl Prompt {
    /// How many prompts it holds: a string or a list of tokens is one; a
    /// list of strings or of token lists is one per item (a batch, as vLLM
    /// and llama-server take it).
    fn count(&self) -> u64 {
        match self {
            Prompt::List {
                items,
                tokens: false,
            } => (*items).max(1),
            _ => 1,
        }
    }
}

impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PromptVisitor)
    }
}

struct PromptVisitor;

impl<'de> Visitor<'de> for PromptVisitor {
    type Value = Prompt;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a list of strings, a list of tokens or a list of token lists")
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Prompt, E> {
        Ok(Prompt::Text)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Prompt, E> {
        Ok(Prompt::Token)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Prompt, E> {
        Ok(Prompt::Token)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Prompt, A::Error> {
        let (mut items, mut tokens) = (0u64, false);
        while let Some(item) = seq.next_element::<Prompt>()? {
            items += 1;
            tokens |= matches!(item, Prompt::Token);
        }
        Ok(Prompt::List { items, tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompts(json: &str) -> u64 {
        serde_json::from_str::<Prompt>(json).unwrap().count()
    }

    #[test]
    fn a_batch_counts_one_prompt_per_item() {
        assert_eq!(prompts(r#""Once upon a time""#), 1);
        assert_eq!(prompts(r#"["Once", "Twice", "Thrice"]"#), 3);
        assert_eq!(prompts("[1, 2, 3, 4]"), 1);
        assert_eq!(prompts("[[1, 2], [3], [4, 5]]"), 3);
        assert_eq!(prompts("[]"), 1);
        assert!(serde_json::from_str::<Prompt>("{}").is_err());
        assert!(serde_json::from_str::<Prompt>("[{}]").is_err());
    }

    #[test]
    fn the_worst_case_counts_every_choice_of_every_prompt() {
        assert_eq!(worst_output(16, 1, 1), 16);
        assert_eq!(worst_output(16, 2, 1), 32);
        assert_eq!(worst_output(16, 4, 3), 192);
        assert_eq!(worst_output(u64::MAX, 8, 2), u64::MAX);
    }

    #[test]
    fn n_is_a_whole_number_within_the_services_cap() {
        let config: ServiceConfig = toml::from_str(
            "name = \"chat\"\nkind = \"chat\"\nmodel = \"m\"\n\
             model_digest = \"0x0000000000000000000000000000000000000000000000000000000000000000\"\n\
             upstream = \"http://127.0.0.1:1/v1\"\ninput_price = \"0\"\noutput_price = \"0\"\n\
             credit_limit = \"0\"\nmax_choices = 4\n",
        )
        .unwrap();
        assert_eq!(choices(&config, "n", None).unwrap(), 1);
        assert_eq!(choices(&config, "n", Some(&Value::Null)).unwrap(), 1);
        assert_eq!(choices(&config, "n", Some(&4.into())).unwrap(), 4);
        for bad in [
            Value::from(5),
            0.into(),
            (-1).into(),
            1.5.into(),
            "2".into(),
        ] {
            let e = choices(&config, "n", Some(&bad)).unwrap_err();
            assert_eq!(e.param, Some("n"), "{bad}");
        }
    }
}
