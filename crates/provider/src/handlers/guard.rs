//! What every route shares, outside the handlers: the protocol's headers
//! each sent once and a bounded header block, and every refusal of a layer
//! under the handlers (routing, methods, body limits, extractors) answered
//! in OpenAI's error shape like the handlers' own.

use axum::{
    extract::Request,
    http::HeaderMap,
    middleware::Next,
    response::{IntoResponse, Response},
};
use zg_core::{ErrorCode, headers as zh};

use crate::error::ApiError;

/// Most bytes of header names and values a request may carry. HTTP parsing
/// itself stops at about 400 KiB (or 100 headers) with a bare 431.
const HEADER_LIMIT: usize = 64 * 1024;

/// The one layer around every route (one, not two: each layer boxes a
/// future per request): checks the headers, then gives any refusal of the
/// layers under the handlers OpenAI's error shape.
pub(super) async fn guard(request: Request, next: Next) -> Response {
    match headers_ok(request.headers()) {
        Ok(()) => json_errors(next.run(request).await).await,
        Err(e) => e.into_response(),
    }
}

fn headers_ok(headers: &HeaderMap) -> Result<(), ApiError> {
    let size: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > HEADER_LIMIT {
        return Err(ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "the request's headers take {size} bytes, more than the {HEADER_LIMIT} this broker reads: send fewer or shorter headers"
            ),
        ));
    }
    // A signed value sent twice leaves which one counts to the reader: refuse.
    let twice = headers.keys().find(|name| {
        name.as_str().starts_with(zh::PREFIX) && headers.get_all(*name).iter().count() > 1
    });
    match twice {
        Some(name) => Err(ApiError::new(
            ErrorCode::DuplicateHeader,
            format!(
                "header {name} is sent {} times: each X-ZG-* header must come once, with the value that was signed",
                headers.get_all(name).iter().count()
            ),
        )),
        None => Ok(()),
    }
}

/// Every refusal in OpenAI's error shape, counted like the handlers' own.
async fn json_errors(response: Response) -> Response {
    let (response, code) = zg_core::wire::http::json_errors(response).await;
    if let Some(code) = code {
        crate::metrics::global().error(code);
    }
    response
}
