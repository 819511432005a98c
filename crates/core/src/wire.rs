//! The JSON and paths of the HTTP API that both the broker and the client
//! speak: route paths, OpenAI's error body and `usage` shape, and the body
//! of an acknowledgement voucher. One definition, so the sides can't drift.

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, Usage, Voucher};

/// The broker's routes. Paid ones take the `X-ZG-*` payment headers.
pub mod routes {
    pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";
    /// OpenAI's legacy text endpoint, served by chat services.
    pub const COMPLETIONS: &str = "/v1/completions";
    pub const EMBEDDINGS: &str = "/v1/embeddings";
    pub const MODELS: &str = "/v1/models";
    /// `GET /v1/receipts/{id}`: a stream's receipt, by `X-ZG-Request-Id`.
    pub const RECEIPT: &str = "/v1/receipts/{id}";
    /// `GET /v1/proofs/{id}`: the proof of model of an answer, by
    /// `X-ZG-Request-Id`, as raw bytes.
    pub const PROOF: &str = "/v1/proofs/{id}";
    /// `GET /v1/account/{user}`: the signed statement of a user's account.
    pub const ACCOUNT: &str = "/v1/account/{user}";
    /// `POST`: an acknowledgement voucher ([`super::AckBody`]).
    pub const VOUCHERS: &str = "/v1/vouchers";
    /// `GET /v1/quote?model=NAME`: the service's current prices as a
    /// [`crate::SignedQuote`].
    pub const QUOTE: &str = "/v1/quote";

    /// The path of a stream's receipt.
    pub fn receipt(id: &str) -> String {
        format!("/v1/receipts/{id}")
    }

    /// The path of an answer's proof of model (the broker's and the
    /// built-in engine's).
    pub fn proof(id: &str) -> String {
        format!("/v1/proofs/{id}")
    }

    /// The path of a user's account statement.
    pub fn account(user: impl std::fmt::Display) -> String {
        format!("/v1/account/{user}")
    }
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ErrorBody {
    /// The body of an error with a stable zg-serving code.
    pub fn new(code: ErrorCode, message: impl Into<String>, param: Option<&str>) -> Self {
        Self::raw(code.as_str(), code.error_type(), message, param)
    }

    /// The body of an error whose code and type are given as text (passed on
    /// from elsewhere).
    pub fn raw(code: &str, kind: &str, message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.to_owned(),
                param: param.map(str::to_owned),
                code: Some(code.to_owned()),
            },
        }
    }
}

impl ErrorBody {
    /// The body of a refusal a layer under the handlers answered (HTTP
    /// parsing, routing, methods, body limits, extractors) with `status` and
    /// plain `text`, often empty: [`ErrorCode::for_status`] names it.
    pub fn for_status(status: u16, text: &str) -> Self {
        let code = ErrorCode::for_status(status);
        let what = match code {
            ErrorCode::MethodNotAllowed => {
                "this path does not take this method (the Allow header lists the ones it does)"
            }
            ErrorCode::RequestTooLarge => {
                "the request body is over this server's size limit: send a smaller request"
            }
            ErrorCode::HeadersTooLarge => {
                "the request's headers are over this server's limit: send fewer or shorter headers"
            }
            ErrorCode::NotFound => "no such route: the OpenAI paths are under /v1",
            _ => "the request was refused",
        };
        let text = text.trim();
        let message = if text.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {text}")
        };
        Self::new(code, message, None)
    }
}

/// For servers built on axum (the broker, the gateway): their own refusals
/// in OpenAI's error shape.
#[cfg(feature = "axum")]
pub mod http {
    use axum::{
        Json,
        http::header,
        response::{IntoResponse, Response},
    };

    use super::ErrorBody;
    use crate::ErrorCode;

    /// Gives an error answer that is not JSON (axum's own refusals of a
    /// path, a method, a body or an extractor are plain text or empty)
    /// OpenAI's error shape, keeping its status and headers. Returns the
    /// code it gave, if it rewrote the answer.
    pub async fn json_errors(response: Response) -> (Response, Option<ErrorCode>) {
        let status = response.status();
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if !(status.is_client_error() || status.is_server_error()) || is_json {
            return (response, None);
        }
        let (mut parts, body) = response.into_parts();
        let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
        parts.headers.remove(header::CONTENT_LENGTH);
        let body = ErrorBody::for_status(status.as_u16(), &String::from_utf8_lossy(&text));
        let code = ErrorCode::for_status(status.as_u16());
        ((parts, Json(body)).into_response(), Some(code))
    }
}

/// `usage` as OpenAI-compatible servers report it.
#[derive(Debug, Deserialize, Serialize, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpenAiUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// OpenAI's `usage.prompt_tokens_details`: how many prompt tokens the
/// server's prompt cache served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

impl From<OpenAiUsage> for Usage {
    /// A cached count above the prompt's is the upstream's error: it counts
    /// as no cache at all, so nobody pays less than the prompt is worth.
    fn from(u: OpenAiUsage) -> Self {
        let cached = u.prompt_tokens_details.map_or(0, |d| d.cached_tokens);
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cached_input_tokens: if cached <= u.prompt_tokens { cached } else { 0 },
        }
    }
}

/// Body of `POST /v1/vouchers`: the voucher's requestDigest is the EIP-712
/// hash of the receipt it acknowledges; `signature` is 0x-prefixed hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AckBody {
    pub voucher: Voucher,
    pub signature: String,
}

/// Seconds since the Unix epoch (0 if the clock is before it).
/// Where the first whole server-sent event of `buf` ends: just after its
/// blank-line terminator (`\n\n` or `\r\n\r\n`, whichever comes first).
pub fn sse_event_end(buf: &[u8]) -> Option<usize> {
    let find = |needle: &[u8]| buf.windows(needle.len()).position(|w| w == needle);
    let lf = find(b"\n\n").map(|i| i + 2);
    let crlf = find(b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_openais_shape() {
        let body = ErrorBody::new(ErrorCode::UnknownModel, "no such model", Some("model"));
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["error"]["type"], ErrorCode::UnknownModel.error_type());
        assert_eq!(json["error"]["code"], "unknown_model");
        assert_eq!(json["error"]["param"], "model");
        assert_eq!(json["error"]["message"], "no such model");
    }
}
