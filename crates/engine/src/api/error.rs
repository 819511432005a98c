//! Errors in OpenAI's shape, `{"error":{"message","type","param","code"}}`,
//! and a JSON extractor whose rejections use that shape too.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

/// An error answer: status, OpenAI error type, the offending parameter and a
/// stable code.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400 `invalid_request_error`.
    pub(crate) fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param: param.map(str::to_string),
            code: None,
        }
    }

    pub(crate) fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message: message.into(),
            param: None,
            code: Some("not_found"),
        }
    }

    /// 500: the engine itself failed (llama.cpp, candle).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: Some("engine_failed"),
        }
    }

    /// 503: the engine is shutting down.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: Some("unavailable"),
        }
    }

    /// The JSON body, also used inside an SSE stream.
    pub(crate) fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// Like `axum::Json`, but a body that is not valid JSON of the expected
/// shape gets a 400 in OpenAI's error shape instead of axum's plain text.
pub(crate) struct OpenAiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OpenAiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let mut err = ApiError::invalid(format!("could not read the request body: {e}"), None);
            err.status = e.status();
            err
        })?;
        serde_json::from_slice(&bytes)
            .map(OpenAiJson)
            .map_err(invalid_body)
    }
}

/// A body that is JSON but not of the endpoint's shape.
pub(crate) fn invalid_body(e: serde_json::Error) -> ApiError {
    ApiError::invalid(
        format!("the request body is not valid JSON for this endpoint: {e}"),
        None,
    )
    .with_code("invalid_body")
}
