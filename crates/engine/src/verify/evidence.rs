//! Verifying one answer from its evidence: the receipt must bind exactly
//! these request, response and proof bytes and name this verifier's model;
//! then the request's messages and stop sequences and the response's text
//! (its first choice, the one the proof covers) are the claim the proof is
//! checked against.

use serde_json::Value;
use zg_core::Evidence;

use super::{Claim, Verdict, Verifier, VerifyError};
use crate::api::chat::ChatRequest;
use crate::chat::tools;

impl Verifier {
    /// Checks an answer from its evidence. A receipt for another model is
    /// refused (as [`VerifyError::WrongModel`]) before any model run.
    pub fn verify_evidence(&self, evidence: &Evidence) -> Result<Verdict, VerifyError> {
        evidence.check_binding()?;
        let registered = hex::encode(evidence.receipt.receipt.model_digest);
        if registered != self.digest {
            return Err(VerifyError::WrongModel {
                path: self.path.clone(),
                actual: self.digest.clone(),
                expected: registered,
            });
        }
        let (messages, stop) = read_request(&evidence.request)?;
        let answer = read_answer(&evidence.response)?;
        let prompt = self.prompt_tokens(messages)?;
        self.verify(
            &Claim {
                prompt: &prompt,
                answer: &answer,
                stop: &stop,
            },
            &evidence.proof,
        )
    }
}

fn request_error(why: impl std::fmt::Display) -> VerifyError {
    VerifyError::Exchange {
        part: "request",
        why: why.to_string(),
    }
}

fn response_error(why: impl std::fmt::Display) -> VerifyError {
    VerifyError::Exchange {
        part: "response",
        why: why.to_string(),
    }
}

/// The (role, text) messages and the stop sequences of a chat request, as
/// the engine reads them.
type Request = (Vec<(String, String)>, Vec<String>);

fn read_request(body: &str) -> Result<Request, VerifyError> {
    let request: ChatRequest = serde_json::from_str(body)
        .map_err(|e| request_error(format!("not a chat completion request: {e}")))?;
    let calls_tools = request.tools.as_ref().is_some_and(|t| !t.is_empty());
    if calls_tools {
        // The prompt then carries the tools' block and the answer may be a
        // call list rather than text: not a claim this version reads.
        return Err(request_error(
            "it offers tools; answers to requests with tools cannot be verified yet",
        ));
    }
    let messages = tools::turns(request.messages).map_err(|e| request_error(e.message))?;
    let stop = request
        .generation
        .stop
        .map(crate::api::generation::Stop::into_vec)
        .unwrap_or_default();
    Ok((messages, stop))
}

/// The text of the first choice: `message.content` of a JSON answer, or the
/// `delta.content` pieces of a stream's SSE events.
fn read_answer(body: &str) -> Result<String, VerifyError> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('{') {
        let answer: Value =
            serde_json::from_str(trimmed).map_err(|e| response_error(format!("not JSON: {e}")))?;
        let choice =
            first_choice(&answer).ok_or_else(|| response_error("it has no choice of index 0"))?;
        return Ok(choice
            .pointer("/message/content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned());
    }
    let mut text = String::new();
    let mut events = 0;
    for data in trimmed.lines().filter_map(|l| l.strip_prefix("data:")) {
        let data = data.trim();
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| response_error(format!("an SSE event is not JSON: {e}")))?;
        events += 1;
        if let Some(piece) = first_choice(&chunk)
            .and_then(|c| c.pointer("/delta/content"))
            .and_then(Value::as_str)
        {
            text.push_str(piece);
        }
    }
    if events == 0 {
        return Err(response_error(
            "it is neither a JSON chat completion nor an SSE stream of chunks",
        ));
    }
    Ok(text)
}

fn first_choice(value: &Value) -> Option<&Value> {
    value
        .get("choices")?
        .as_array()?
        .iter()
        .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_streamed_answers() {
        let plain = r#"{"choices":[{"index":1,"message":{"content":"no"}},{"index":0,"message":{"content":"Hi there"}}]}"#;
        assert_eq!(read_answer(plain).unwrap(), "Hi there");
        let sse = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n\
                   data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n\
                   data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"x\"}}]}\n\n\
                   data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}]}\n\n\
                   data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n\
                   data: [DONE]\n\n";
        assert_eq!(read_answer(sse).unwrap(), "Hi there");
        for garbage in ["", "hello", "{", "data: {", "{\"choices\":[]}"] {
            assert!(read_answer(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn reads_messages_and_stops_and_refuses_tools() {
        let (messages, stop) = read_request(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}],"stop":"END"}"#,
        )
        .unwrap();
        assert_eq!(messages, vec![("user".to_string(), "Hi".to_string())]);
        assert_eq!(stop, vec!["END".to_string()]);
        let tools = r#"{"messages":[{"role":"user","content":"Hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}]}"#;
        assert!(
            read_request(tools)
                .unwrap_err()
                .to_string()
                .contains("tools")
        );
        for garbage in ["", "[]", "{\"messages\": 3}"] {
            assert!(read_request(garbage).is_err(), "{garbage:?}");
        }
    }
}
