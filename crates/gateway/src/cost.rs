//! What an answer cost, in its `usage` (OpenRouter's `usage.cost`): the fee
//! of its checked receipt as a decimal string of 0G, and the id by which
//! the broker serves that receipt (`receipt_id`). A whole answer gets them
//! at once; a stream's usage chunk (and the `[DONE]` after it) is held
//! until the stream is over and its receipt checked.

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};
use zg_core::{U256, format_amount};

/// `usage` with the cost and receipt id added.
fn add_cost(usage: &mut Map<String, Value>, fee: U256, receipt_id: &str) {
    usage.insert("cost".into(), Value::from(format_amount(fee)));
    usage.insert("receipt_id".into(), Value::from(receipt_id));
}

/// A whole JSON answer with its cost in `usage`; None when it has no usage
/// object (an error body, say), to send as it came.
pub(crate) fn priced(body: &[u8], fee: U256, receipt_id: &str) -> Option<Bytes> {
    let mut answer: Map<String, Value> = serde_json::from_slice(body).ok()?;
    add_cost(answer.get_mut("usage")?.as_object_mut()?, fee, receipt_id);
    serde_json::to_vec(&answer).ok().map(Bytes::from)
}

/// Whether an SSE event's data carries a usage object (not `"usage":null`).
fn has_usage(event: &[u8]) -> bool {
    let key = b"\"usage\"";
    event
        .windows(key.len())
        .position(|w| w == key)
        .is_some_and(|at| {
            event[at + key.len()..]
                .iter()
                .find(|b| !b.is_ascii_whitespace() && **b != b':')
                == Some(&b'{')
        })
}

/// A streamed answer's SSE events, split as bytes come: the events to pass
/// on at once, and the usage event with the `[DONE]` after it, held.
#[derive(Default)]
pub(crate) struct StreamCost {
    partial: BytesMut,
    usage: Option<Bytes>,
    done: Option<Bytes>,
}

impl StreamCost {
    /// Takes a chunk; returns what can go on now.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.partial.extend_from_slice(chunk);
        let mut pass = BytesMut::new();
        while let Some(end) = zg_core::wire::sse_event_end(&self.partial) {
            let event = self.partial.split_to(end).freeze();
            if has_usage(&event) {
                self.usage = Some(event);
            } else if self.usage.is_some() && event.starts_with(b"data: [DONE]") {
                self.done = Some(event);
            } else {
                pass.extend_from_slice(&event);
            }
        }
        pass.freeze()
    }

    /// The end of the stream: what was held, with the usage priced when the
    /// receipt came (`fee` and id), and any bytes of an unfinished event.
    pub(crate) fn finish(self, cost: Option<(U256, &str)>) -> Bytes {
        let mut out = BytesMut::new();
        if let Some(event) = self.usage {
            let priced = cost.and_then(|(fee, id)| {
                let json = event.strip_prefix(b"data: ")?.trim_ascii_end();
                let priced = priced(json, fee, id)?;
                Some([&b"data: "[..], &priced, b"\n\n"].concat())
            });
            match priced {
                Some(p) => out.extend_from_slice(&p),
                None => out.extend_from_slice(&event),
            }
        }
        if let Some(done) = self.done {
            out.extend_from_slice(&done);
        }
        out.extend_from_slice(&self.partial);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_answer_gets_its_cost_and_receipt_id() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        let priced = priced(body, U256::from(1_500_000_000_000_000u64), "r-1").unwrap();
        let v: Value = serde_json::from_slice(&priced).unwrap();
        assert_eq!(v["usage"]["cost"], "0.0015");
        assert_eq!(v["usage"]["receipt_id"], "r-1");
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert!(super::priced(br#"{"error":{}}"#, U256::ZERO, "r").is_none());
    }

    #[test]
    fn a_streams_usage_chunk_and_done_wait_for_the_receipt_whatever_the_chunking() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\": {\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n",
            "data: [DONE]\n\n"
        )
        .as_bytes();
        for cut in [1, 7, 60, stream.len()] {
            let mut s = StreamCost::default();
            let mut passed = Vec::new();
            for chunk in stream.chunks(cut) {
                passed.extend_from_slice(&s.push(chunk));
            }
            assert_eq!(
                passed,
                b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n"
            );
            let end = s.finish(Some((U256::from(7u64), "r-2")));
            let text = String::from_utf8(end.to_vec()).unwrap();
            assert!(text.contains("\"cost\":\"0.000000000000000007\""), "{text}");
            assert!(text.contains("\"receipt_id\":\"r-2\""), "{text}");
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        }
        // Without a usage chunk, [DONE] goes on at once.
        let mut s = StreamCost::default();
        assert_eq!(&s.push(b"data: [DONE]\n\n")[..], b"data: [DONE]\n\n");
        assert!(s.finish(None).is_empty());
    }
}
