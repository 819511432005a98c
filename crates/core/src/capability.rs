//! What a service can do beyond a plain chat answer: the names a broker
//! lists in its `/v1/models` (`capabilities`) and a gateway matches a
//! request against, so a request that needs tools, a structured output,
//! log-probabilities, several choices or the legacy text endpoint goes only
//! to services that have them.

/// `tools` and `tool_choice`, assistant `tool_calls` and `tool` messages.
pub const TOOLS: &str = "tools";
/// `response_format` `json_object` and `json_schema`, decoded under a grammar.
pub const STRUCTURED_OUTPUTS: &str = "structured_outputs";
/// `logprobs` and `top_logprobs`.
pub const LOGPROBS: &str = "logprobs";
/// `n` above 1.
pub const N: &str = "n";
/// `POST /v1/completions`.
pub const COMPLETIONS: &str = "completions";
/// `seed`, the penalties and the sampling extras (`top_k`, `min_p`,
/// `repeat_penalty`) honoured rather than ignored.
pub const SAMPLING: &str = "sampling";

/// Every capability name, in the order `/v1/models` lists them.
pub const ALL: &[&str] = &[
    TOOLS,
    STRUCTURED_OUTPUTS,
    LOGPROBS,
    N,
    COMPLETIONS,
    SAMPLING,
];

/// The capability a name stands for, if it is one of [`ALL`].
pub fn known(name: &str) -> Option<&'static str> {
    ALL.iter().copied().find(|c| *c == name)
}

/// The capabilities a request body needs to be served as asked, for the
/// endpoint `completions` (the legacy text one) or chat. With
/// `require_parameters`, the sampling fields count too (OpenRouter's
/// meaning: every parameter of the request is honoured).
pub fn needed(
    body: &serde_json::Map<String, serde_json::Value>,
    completions: bool,
    require_parameters: bool,
) -> Vec<&'static str> {
    use serde_json::Value;
    let set = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
    let mut out = Vec::new();
    if completions {
        out.push(COMPLETIONS);
    }
    if body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty())
        || set("tool_choice") && body.get("tool_choice") != Some(&Value::from("none"))
    {
        out.push(TOOLS);
    }
    let format = body
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str);
    if matches!(format, Some("json_object" | "json_schema")) {
        out.push(STRUCTURED_OUTPUTS);
    }
    let wants_logprobs = match body.get("logprobs") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_u64().is_some_and(|n| n > 0),
        _ => false,
    };
    if wants_logprobs || set("top_logprobs") {
        out.push(LOGPROBS);
    }
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        out.push(N);
    }
    let sampling = [
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "top_k",
        "min_p",
        "repeat_penalty",
    ];
    if require_parameters && sampling.iter().any(|k| set(k)) {
        out.push(SAMPLING);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn needs(body: serde_json::Value, completions: bool, strict: bool) -> Vec<&'static str> {
        needed(body.as_object().unwrap(), completions, strict)
    }

    #[test]
    fn a_request_needs_what_its_fields_ask_for() {
        assert!(needs(json!({"model": "m", "messages": []}), false, true).is_empty());
        assert_eq!(
            needs(
                json!({"tools": [{"type": "function"}], "response_format": {"type": "json_schema"},
                       "logprobs": true, "n": 2, "seed": 1}),
                false,
                false
            ),
            vec![TOOLS, STRUCTURED_OUTPUTS, LOGPROBS, N]
        );
        assert_eq!(
            needs(json!({"logprobs": 2, "seed": 1}), true, true),
            vec![COMPLETIONS, LOGPROBS, SAMPLING]
        );
        assert!(needs(json!({"tool_choice": "none", "response_format": {"type": "text"}, "n": 1, "logprobs": false}), false, true).is_empty());
    }
}
