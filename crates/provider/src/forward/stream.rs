//! Streamed chat and legacy completions, metered. The upstream's SSE events pass
//! through unchanged, except the usage chunk that `include_usage` (forced on)
//! adds, which is removed when the user did not ask for it. The fee comes
//! from that usage; the answer's proof is fetched once the upstream's
//! stream is over, and the receipt is stored before the final `[DONE]` goes
//! out, so a client that saw the end of the stream finds it at
//! `GET /v1/receipts/{id}`. A stream the upstream cuts (or the client
//! leaves) is charged for the content chunks delivered, one token each.

use axum::{
    body::Body,
    http::{HeaderValue, header},
    response::Response,
};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::Instrument;
use zg_core::{Keccak256, OpenAiUsage, Usage, headers as zh, verifiability::PROOF_ID_HEADER};

use super::{Admitted, upstream_refused};
use crate::{error::ApiError, upstream::UpstreamResponse};

const DONE: &[u8] = b"data: [DONE]\n\n";

/// Sends a streaming request upstream and answers with its events; the
/// request ends (charged or released) when the stream does.
pub(crate) async fn stream(
    admitted: Admitted,
    body: Bytes,
    user_wants_usage: bool,
) -> Result<Response, ApiError> {
    let (admitted, upstream) = admitted.send(body).await?;
    let status = upstream.status();
    if !status.is_success() {
        let bytes = upstream.bytes().await.unwrap_or_default();
        admitted.release(&format!("status {status}")).await;
        return Err(upstream_refused(status, &bytes));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let id = admitted.id().to_string();
    let span = admitted.span();
    tokio::spawn(pump(admitted, upstream, tx, user_wants_usage).instrument(span));

    let body = Body::from_stream(tokio_stream(rx));
    let mut out = Response::new(body);
    let headers = out.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(zh::REQUEST_ID, v);
    }
    Ok(out)
}

fn tokio_stream(
    mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// What the stream has delivered so far.
struct Meter {
    hasher: Keccak256,
    content_chunks: u64,
    usage: Option<Usage>,
    client_gone: bool,
}

impl Meter {
    async fn send(&mut self, tx: &mpsc::Sender<Result<Bytes, std::io::Error>>, bytes: Bytes) {
        if self.client_gone {
            return;
        }
        if tx.send(Ok(bytes.clone())).await.is_ok() {
            self.hasher.update(&bytes);
        } else {
            self.client_gone = true;
        }
    }
}

/// Reads the upstream's events, forwards them, and charges at the end.
async fn pump(
    admitted: Admitted,
    mut upstream: UpstreamResponse,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    user_wants_usage: bool,
) {
    let mut meter = Meter {
        hasher: Keccak256::new(),
        content_chunks: 0,
        usage: None,
        client_gone: false,
    };
    // The engine names a stream's proof up front and stores it before the
    // stream's end; it is fetched once the stream is over.
    let proof_id = upstream.header(PROOF_ID_HEADER).map(str::to_owned);
    let mut held_usage: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut done = false;
    let mut cut_reason = String::new();
    'read: while !meter.client_gone {
        match upstream.chunk().await {
            Ok(Some(chunk)) => {
                buf.extend_from_slice(&chunk);
                while let Some(event) = take_event(&mut buf) {
                    match classify(&event) {
                        Event::Done => {
                            done = true;
                            break 'read;
                        }
                        Event::UsageOnly(u) => {
                            meter.usage = Some(u);
                            if user_wants_usage {
                                held_usage = Some(event);
                            }
                        }
                        Event::Chunk { content, usage } => {
                            if content {
                                meter.content_chunks += 1;
                            }
                            if usage.is_some() {
                                meter.usage = usage;
                            }
                            meter.send(&tx, event).await;
                        }
                    }
                }
            }
            Err(e) => {
                cut_reason = e.to_string();
                break;
            }
            Ok(None) => {
                cut_reason = "the upstream closed the stream before [DONE]".into();
                break;
            }
        }
    }
    drop(upstream);

    let complete = done && !meter.client_gone;
    let usage = match (complete, meter.usage) {
        (true, Some(u)) => u,
        (true, None) => {
            tracing::warn!("stream ended without usage; charging the chunks delivered");
            Usage::uncached(0, meter.content_chunks)
        }
        // Cut short: only what reached the client is owed.
        (false, _) => Usage::uncached(0, meter.content_chunks),
    };
    if !complete && meter.content_chunks == 0 {
        let why = if meter.client_gone {
            "client left before any content"
        } else {
            cut_reason.as_str()
        };
        admitted.release(why).await;
        return;
    }
    if !complete {
        tracing::warn!(delivered = meter.content_chunks, client_gone = meter.client_gone, reason = %cut_reason, "stream cut short");
    }
    let mut tail = Vec::new();
    if complete {
        if let Some(u) = &held_usage {
            tail.extend_from_slice(u);
        }
        tail.extend_from_slice(DONE);
    }
    let mut hasher = meter.hasher.clone();
    hasher.update(&tail);
    let digest = hasher.finalize();
    match admitted.charge(usage, digest, proof_id.as_deref()).await {
        // Charged, or released for want of a proof: the stream ends either way.
        Ok(_) => {
            if complete {
                let _ = tx.send(Ok(Bytes::from(tail))).await;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "charging a stream failed");
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    }
}

enum Event {
    Done,
    UsageOnly(Usage),
    Chunk { content: bool, usage: Option<Usage> },
}

#[derive(Deserialize)]
struct ChunkPeek {
    #[serde(default)]
    choices: Option<Vec<ChoicePeek>>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

/// A chunk's choice: chat's carries `delta.content` or `delta.tool_calls`,
/// a legacy completion's `text`.
#[derive(Deserialize)]
struct ChoicePeek {
    #[serde(default)]
    delta: Option<DeltaPeek>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct DeltaPeek {
    #[serde(default)]
    content: Option<String>,
    /// Pieces of tool calls: generated tokens like content.
    #[serde(default)]
    tool_calls: Option<Vec<serde::de::IgnoredAny>>,
}

impl ChoicePeek {
    /// Whether the choice carries generated output.
    fn has_output(&self) -> bool {
        let delta = self.delta.as_ref();
        delta
            .and_then(|d| d.content.as_deref())
            .or(self.text.as_deref())
            .is_some_and(|s| !s.is_empty())
            || delta
                .and_then(|d| d.tool_calls.as_ref())
                .is_some_and(|calls| !calls.is_empty())
    }
}

/// Takes one whole SSE event (with its blank-line terminator) off `buf`.
fn take_event(buf: &mut Vec<u8>) -> Option<Bytes> {
    let end = zg_core::wire::sse_event_end(buf)?;
    let rest = buf.split_off(end);
    Some(Bytes::from(std::mem::replace(buf, rest)))
}

fn classify(event: &[u8]) -> Event {
    let text = String::from_utf8_lossy(event);
    let data: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n");
    if data == "[DONE]" {
        return Event::Done;
    }
    match serde_json::from_str::<ChunkPeek>(&data) {
        Ok(peek) => {
            let choices = peek.choices.unwrap_or_default();
            let usage = peek.usage.map(Usage::from);
            let content = choices.iter().any(ChoicePeek::has_output);
            match usage {
                Some(u) if choices.is_empty() => Event::UsageOnly(u),
                _ => Event::Chunk { content, usage },
            }
        }
        Err(_) => Event::Chunk {
            content: false,
            usage: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_and_finds_usage() {
        let mut buf = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\r\n\r\ndata: [DONE]\n\npartial".to_vec();
        let a = take_event(&mut buf).unwrap();
        assert!(matches!(
            classify(&a),
            Event::Chunk {
                content: true,
                usage: None
            }
        ));
        let b = take_event(&mut buf).unwrap();
        assert!(matches!(
            classify(&b),
            Event::UsageOnly(Usage {
                input_tokens: 3,
                output_tokens: 1,
                cached_input_tokens: 0
            })
        ));
        let c = take_event(&mut buf).unwrap();
        assert!(matches!(classify(&c), Event::Done));
        assert!(take_event(&mut buf).is_none());
        assert_eq!(buf, b"partial");
    }

    #[test]
    fn a_tool_call_delta_is_output() {
        let call = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"ci\"}}]}}]}\n\n";
        assert!(matches!(
            classify(call),
            Event::Chunk {
                content: true,
                usage: None
            }
        ));
    }

    #[test]
    fn a_legacy_completion_chunk_with_text_is_content() {
        let text = b"data: {\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"hi\"}]}\n\n";
        let empty = b"data: {\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"stop\"}]}\n\n";
        assert!(matches!(
            classify(text),
            Event::Chunk {
                content: true,
                usage: None
            }
        ));
        assert!(matches!(
            classify(empty),
            Event::Chunk {
                content: false,
                usage: None
            }
        ));
    }
}
