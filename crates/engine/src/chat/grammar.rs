//! JSON Schema to GBNF through llama.cpp's own converter (the one its
//! server uses for `response_format` and tools), so constrained decoding
//! follows llama.cpp's reading of the schema.

use serde_json::Value;

use super::sampler::Grammar;
use crate::api::ApiError;

/// The grammar of JSON text valid for `schema` (JSON text: llama.cpp keeps
/// its property order); `param` names the request field the schema came
/// from, for the error.
pub(crate) fn from_schema(schema: &str, param: &'static str) -> Result<String, ApiError> {
    llama_cpp_2::json_schema_to_grammar(schema).map_err(|e| {
        ApiError::invalid(
            format!("this JSON schema cannot be turned into a grammar ({e}): use the subset llama.cpp supports (types, properties, required, enum, const, anyOf, items, min/max lengths)"),
            Some(param),
        )
    })
}

/// A whole-answer grammar for `schema`.
pub(crate) fn whole(schema: &Value, param: &'static str) -> Result<Grammar, ApiError> {
    Ok(Grammar {
        gbnf: from_schema(&schema.to_string(), param)?,
        trigger: None,
    })
}

/// `gbnf` with its start rule named `name` instead of `root`, so that it can
/// be part of a larger grammar; `None` when another rule refers to `root`.
pub(crate) fn rename_root(gbnf: &str, name: &str) -> Option<String> {
    let mut out = String::with_capacity(gbnf.len());
    for line in gbnf.lines() {
        if let Some(body) = line.strip_prefix("root ::=") {
            out.push_str(name);
            out.push_str(" ::=");
            out.push_str(body);
        } else {
            let refers_to_root = line
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .any(|word| word == "root");
            if refers_to_root {
                return None;
            }
            out.push_str(line);
        }
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_renamed_and_a_reference_to_it_refused() {
        let g = "root ::= \"[\" item \"]\"\nitem ::= \"a\"\n";
        assert_eq!(
            rename_root(g, "calls").as_deref(),
            Some("calls ::= \"[\" item \"]\"\nitem ::= \"a\"\n")
        );
        assert_eq!(rename_root("root ::= x\nx ::= root | \"a\"\n", "c"), None);
    }
}
