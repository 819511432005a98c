//! The prompt of a chat: messages through the chat template stored in the
//! GGUF metadata, applied by llama.cpp.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};

use crate::api::ApiError;

/// The model's own template, or ChatML when the GGUF carries none.
pub(crate) fn model_template(model: &LlamaModel) -> LlamaChatTemplate {
    match model.chat_template(None) {
        Ok(template) => template,
        Err(_) => {
            tracing::warn!("the GGUF has no chat template; using ChatML");
            // A constant without NUL bytes.
            LlamaChatTemplate::new("chatml").unwrap_or_else(|_| unreachable!())
        }
    }
}

/// The prompt text for `messages` (role, content), ending with the opening
/// of the assistant's turn.
pub(crate) fn render(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    messages: Vec<(String, String)>,
) -> Result<String, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages is empty: send at least one message",
            Some("messages"),
        ));
    }
    let mut chat = Vec::with_capacity(messages.len());
    for (role, content) in messages {
        let role = match role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            "tool" => "tool",
            other => {
                return Err(ApiError::invalid(
                    format!(
                        "unknown message role {other:?}: expected system, developer, user, assistant or tool"
                    ),
                    Some("messages"),
                ));
            }
        };
        let message = LlamaChatMessage::new(role.to_string(), content).map_err(|_| {
            ApiError::invalid("message content contains a NUL character", Some("messages"))
        })?;
        chat.push(message);
    }
    model
        .apply_chat_template(template, &chat, true)
        .map_err(|e| ApiError::invalid(format!("the chat template failed: {e}"), Some("messages")))
}
