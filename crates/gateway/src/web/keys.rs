//! The API keys page: every local key with its limit and spending, a form
//! that makes one (its secret shown once) and one per key that revokes it.

use super::{answer, banners, frame};
use crate::{Gateway, KeyInfo};
use axum::{Extension, Form, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use std::sync::Arc;
use zg_core::parse_amount;
use zg_web::{Markup, Session, amount, html, notice, unix_time};

const TITLE: &str = "API keys · zg-serving gateway";

pub(super) async fn page(
    State(gw): State<Arc<Gateway>>,
    Extension(session): Extension<Session>,
) -> Markup {
    let (keys, problem) = match gw.keys.list().await {
        Ok(keys) => (keys, None),
        Err(e) => (Vec::new(), Some(format!("the keys could not be read: {e}"))),
    };
    let open = keys.is_empty();
    let closed = !open && keys.iter().all(|k| k.revoked);
    let body = html! {
        (banners(problem.as_slice()))
        p #open-state .muted {
            @if open { "No key yet: the gateway's /v1 is open to anyone who can reach it until one is made." }
            @else if closed { "Every key is revoked: /v1 refuses every request until a new key is made." }
            @else { "Requests to /v1 need one of these keys (Authorization: Bearer zgk-…)." }
        }
        div.scroll { (table(&session, &keys)) }
        h2 { "New key" }
        form #new-key .inline method="post" action="/keys/new" {
            (session.field())
            label { "Name" input name="name" required maxlength="64" autocomplete="off"; }
            label { "Spend limit (0G, empty: none)" input name="limit" inputmode="decimal" autocomplete="off"; }
            button type="submit" { "Make key" }
        }
    };
    frame(TITLE, "/keys", body)
}

fn table(session: &Session, keys: &[KeyInfo]) -> Markup {
    html! {
        table #keys .sortable data-live="" {
            thead { tr {
                th { "Id" } th { "Name" } th.num { "Limit (0G)" } th.num { "Spent (0G)" }
                th { "Revoked" } th { "Created" } th {}
            } }
            tbody {
                @for k in keys {
                    tr.key data-id=(k.id) {
                        td.id { code { (k.id) } }
                        td.name { (k.name) }
                        td.limit.num { (k.spend_limit.map_or("none".to_owned(), amount)) }
                        td.spent.num data-sort=(k.spent) { (amount(k.spent)) }
                        td.revoked { (if k.revoked { "yes" } else { "no" }) }
                        td.created data-sort=(k.created_at) { (unix_time(k.created_at)) }
                        td {
                            @if !k.revoked {
                                form.revoke.inline method="post" action="/keys/revoke" {
                                    (session.field())
                                    input type="hidden" name="id" value=(k.id);
                                    button type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
                @if keys.is_empty() {
                    tr.empty { td colspan="7" .muted { "No key yet." } }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct NewKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    limit: String,
}

/// `POST /keys/new`: makes a key and shows its secret, once.
pub(super) async fn add(State(gw): State<Arc<Gateway>>, Form(form): Form<NewKey>) -> Response {
    let refuse = |why: String| {
        let body = notice(false, html! { p #error-text { (why) } }, "/keys");
        answer(StatusCode::BAD_REQUEST, TITLE, "/keys", body)
    };
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return refuse("a key needs a name of 1 to 64 characters".into());
    }
    let limit = match form.limit.trim() {
        "" => None,
        text => match parse_amount(text) {
            Ok(limit) => Some(limit),
            Err(e) => {
                return refuse(format!(
                    "{text:?} is not a spend limit in 0G ({e}): write it in decimal, e.g. 0.5, or leave it empty"
                ));
            }
        },
    };
    match gw.keys.add(name, limit).await {
        Ok((info, secret)) => {
            gw.live.bump();
            let body = notice(
                true,
                html! {
                    p { "Key " code { (info.id) } " (" (info.name) ") made. Its secret, shown only now:" }
                    p { code #new-secret { (secret) } }
                    p.muted { "Send it as Authorization: Bearer … to this gateway's /v1." }
                },
                "/keys",
            );
            answer(StatusCode::OK, TITLE, "/keys", body)
        }
        Err(e) => {
            let body = notice(
                false,
                html! { p #error-text { "The key was not made: " (e) } },
                "/keys",
            );
            answer(StatusCode::INTERNAL_SERVER_ERROR, TITLE, "/keys", body)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Revoke {
    #[serde(default)]
    id: String,
}

/// `POST /keys/revoke`: revokes a key by its id.
pub(super) async fn revoke(State(gw): State<Arc<Gateway>>, Form(form): Form<Revoke>) -> Response {
    let id = form.id.trim();
    let revoked = if id.is_empty() {
        Ok(false)
    } else {
        gw.keys.revoke(id).await
    };
    let (ok, status, text) = match revoked {
        Ok(true) => (
            true,
            StatusCode::OK,
            format!("Key {id} is revoked: /v1 refuses it from now on."),
        ),
        Ok(false) => (
            false,
            StatusCode::NOT_FOUND,
            format!("There is no key {id:?}."),
        ),
        Err(e) => (
            false,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The key was not revoked: {e}"),
        ),
    };
    let closed = ok
        && gw
            .keys
            .list()
            .await
            .is_ok_and(|keys| keys.iter().all(|k| k.revoked));
    if ok {
        gw.live.bump();
    }
    let body = html! {
        p #result-text { (text) }
        @if closed { p.banner { "No active key is left: /v1 refuses every request until a new key is made." } }
    };
    let body = notice(ok, body, "/keys");
    answer(status, TITLE, "/keys", body)
}
