//! The playground: a chat with any of the marketplace's chat models, sent
//! by the page's script to this gateway's own `/v1/chat/completions` as any
//! OpenAI client would (streamed), then its receipt, found by the request id
//! the answer carried (`/receipts/by-request/{id}`).

use super::{Page, banners, listed_or_noted, nav};
use crate::Gateway;
use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use std::{collections::BTreeSet, sync::Arc};
use zg_core::ServiceKind;
use zg_web::{Markup, html};

const SCRIPT: &str = include_str!("assets/playground.js");

pub(super) async fn page(State(gw): State<Arc<Gateway>>) -> Markup {
    let mut problems = Vec::new();
    let services = listed_or_noted(&gw, &mut problems).await;
    let chat = ServiceKind::Chat;
    let models: BTreeSet<&str> = services
        .iter()
        .filter(|s| s.kind == chat.as_str() && gw.config.limits.matches(s))
        .map(|s| s.model.as_str())
        .collect();
    let open = match gw.keys.list().await {
        Ok(keys) => keys.is_empty(),
        Err(e) => {
            problems.push(format!("the keys could not be read: {e}"));
            false
        }
    };
    let body = html! {
        (banners(&problems))
        section.card {
            form #chat {
                div.inline {
                    label { "Model" select #model name="model" {
                        @for m in &models { option value=(m) { (m) } }
                    } }
                    label { "API key" input #api-key type="password" autocomplete="off"
                        placeholder=(if open { "none needed: the gateway is open" } else { "zgk-…" }); }
                    label { "Max tokens" input #max-tokens type="number" min="1" value="128"; }
                }
                label.wide { "Prompt" textarea #prompt required { "Say hello in five words." } }
                button #send type="submit" { "Send" }
                @if models.is_empty() { p.muted { "No chat model is listed within this gateway's limits." } }
            }
        }
        section.card {
            h2 { "Answer" }
            div #answer aria-live="polite" {}
            div #receipt .muted {}
        }
    };
    Page::new("Playground · zg-serving gateway", nav("/playground"))
        .live("/events")
        .script("/assets/playground.js")
        .render(body)
}

/// `GET /assets/playground.js`.
pub(super) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}
