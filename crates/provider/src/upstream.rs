//! The HTTP client to the model servers: hyper's pooled HTTP/1 client with
//! each service's URI parsed once. reqwest, which wraps the same client,
//! re-parsed the URL and built a redirect layer around every request (about
//! 4% of the broker's CPU per request, docs/bench-broker.md); the broker
//! needs no redirects. https:// upstreams go through rustls (hyper-rustls).

use std::time::Duration;

use axum::http::{HeaderMap, Request, StatusCode, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// The upstream's URL for a broker `route`: the upstream's base URL ends in
/// `/v1` where the route starts with it.
pub(crate) fn url(base: &str, route: &str) -> String {
    format!("{base}{}", route.strip_prefix("/v1").unwrap_or(route))
}

/// Pooled keep-alive connections to every upstream.
#[derive(Clone)]
pub(crate) struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// Why an upstream gave no (complete) answer, with every cause.
#[derive(Debug)]
pub(crate) struct UpstreamError {
    text: String,
    body_refused: bool,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl UpstreamError {
    fn new(e: impl std::error::Error) -> Self {
        let mut text = e.to_string();
        let mut body_refused = false;
        let mut source = e.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            body_refused |= cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe);
            source = cause.source();
        }
        Self { text, body_refused }
    }

    /// The model server closed the connection while the request was still
    /// being written: it would not read the whole body, as a server does
    /// with a body over its size limit (its 413 is lost when it closes
    /// before reading the rest, which resets the connection).
    pub(crate) fn body_refused(&self) -> bool {
        self.body_refused
    }
}

/// An upstream's answer: status and headers came, the body is read on demand.
pub(crate) struct UpstreamResponse(axum::http::Response<Incoming>);

impl Upstream {
    /// Plain http:// upstreams, and https:// ones verified with `tls`.
    pub(crate) fn new(tls: rustls::ClientConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .build(connector),
        }
    }

    /// POSTs a JSON `body` to `uri` with the service's extra `headers`.
    pub(crate) async fn post(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let request = Request::post(uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(UpstreamError::new)?;
        self.send(request, headers).await
    }

    /// GETs `uri` with the service's extra `headers`.
    pub(crate) async fn get(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let request = Request::get(uri.clone())
            .body(Full::new(Bytes::new()))
            .map_err(UpstreamError::new)?;
        self.send(request, headers).await
    }

    async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
        headers: &HeaderMap,
    ) -> Result<UpstreamResponse, UpstreamError> {
        request
            .headers_mut()
            .extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.client
            .request(request)
            .await
            .map(UpstreamResponse)
            .map_err(UpstreamError::new)
    }
}

impl UpstreamResponse {
    pub(crate) fn status(&self) -> StatusCode {
        self.0.status()
    }

    /// A header of the answer, if present and text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.0.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The whole body.
    pub(crate) async fn bytes(self) -> Result<Bytes, UpstreamError> {
        Ok(self
            .0
            .into_body()
            .collect()
            .await
            .map_err(UpstreamError::new)?
            .to_bytes())
    }

    /// The whole body, refused past `limit` bytes.
    pub(crate) async fn bytes_at_most(self, limit: usize) -> Result<Bytes, UpstreamError> {
        let collected = http_body_util::Limited::new(self.0.into_body(), limit)
            .collect()
            .await
            .map_err(|e| UpstreamError {
                text: e.to_string(),
                body_refused: false,
            })?;
        Ok(collected.to_bytes())
    }

    /// The body as it comes: the next piece, or None at its end.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        loop {
            match self.0.body_mut().frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(UpstreamError::new(e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}
