//! The user's web page, served next to `/v1`: money (wallet, ledger,
//! escrows and the forms that move them), providers (listing, live quotes,
//! measured standing, audits), activity (receipts with the key that asked,
//! spend charts), fine-tuning jobs, API keys, and a playground that chats through `/v1` like
//! any OpenAI client. Every page needs the admin token (zg-web's session
//! guard); chain and broker reads have short timeouts, so a page still
//! renders, with a banner saying what failed, when one of them is down.

mod activity;
mod fine_tuning;
mod keys;
mod money;
mod playground;
mod providers;

use crate::Gateway;
use axum::{
    Router,
    extract::State,
    http::StatusCode,
    middleware::{from_fn_with_state, map_response},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use std::{future::Future, sync::Arc, time::Duration};
use zg_client::ClientError;
use zg_web::{Admin, Markup, Nav, Page, html};

/// An open page refreshes at least this often (the chain changes without
/// the gateway knowing).
pub(crate) const TICK: Duration = Duration::from_secs(15);

/// How long a page waits for a chain read before it says the chain is down.
const CHAIN_WAIT: Duration = Duration::from_secs(4);

const LINKS: &[(&str, &str, &str)] = &[
    ("nav-money", "/", "Money"),
    ("nav-providers", "/providers", "Providers"),
    ("nav-activity", "/activity", "Activity"),
    ("nav-fine-tuning", "/fine-tuning", "Fine-tuning"),
    ("nav-keys", "/keys", "API keys"),
    ("nav-playground", "/playground", "Playground"),
];

/// The page routes (behind the admin token), the login routes and the
/// embedded assets, all with the pages' security headers.
pub(crate) fn router(gw: Arc<Gateway>) -> Router {
    let admin = gw.admin.clone();
    Router::new()
        .route("/", get(money::page))
        .route("/actions/{action}", post(money::act))
        .route("/providers", get(providers::page))
        .route("/activity", get(activity::page))
        .route(
            "/receipts/by-request/{request_id}",
            get(activity::by_request),
        )
        .route("/fine-tuning", get(fine_tuning::page))
        .route("/keys", get(keys::page))
        .route("/keys/new", post(keys::add))
        .route("/keys/revoke", post(keys::revoke))
        .route("/playground", get(playground::page))
        .route("/events", get(events))
        .layer(from_fn_with_state(admin.clone(), Admin::guard))
        .with_state(gw)
        .route("/assets/playground.js", get(playground::script))
        .merge(zg_web::public_routes(admin))
        .layer(map_response(zg_web::secure))
}

/// The gateway side's navigation, on the page at `active`.
fn nav(active: &'static str) -> Nav {
    Nav {
        brand: "zg-serving gateway",
        links: LINKS,
        active,
    }
}

/// A page of the gateway's side with its navigation.
fn frame(title: &str, active: &'static str, body: Markup) -> Markup {
    Page::new(title, nav(active)).live("/events").render(body)
}

/// A page answered with `status` (the outcome of an action).
fn answer(status: StatusCode, title: &str, active: &'static str, body: Markup) -> Response {
    (status, frame(title, active, body)).into_response()
}

/// What failed while the page was read, said at its top.
fn banners(problems: &[String]) -> Markup {
    html! {
        @for problem in problems { p.banner role="alert" { (problem) } }
    }
}

/// Waits at most [`CHAIN_WAIT`] for a read from the chain; the error says
/// which chain did not answer and why.
async fn chain_read<T>(
    gw: &Gateway,
    read: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, String> {
    let url = gw.chain.rpc_url();
    match tokio::time::timeout(CHAIN_WAIT, read).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("the chain at {url} did not answer: {e}")),
        Err(_) => Err(format!(
            "the chain at {url} did not answer within {} s",
            CHAIN_WAIT.as_secs()
        )),
    }
}

/// The listed services, or why the listing could not be read.
async fn listed(gw: &Gateway) -> Result<Arc<Vec<zg_core::Service>>, String> {
    chain_read(gw, gw.services(false)).await
}

/// The listed services, or none with why noted among the page's `problems`.
async fn listed_or_noted(gw: &Gateway, problems: &mut Vec<String>) -> Arc<Vec<zg_core::Service>> {
    listed(gw)
        .await
        .map_err(|e| problems.push(e))
        .unwrap_or_default()
}

/// An address shortened for a table cell (checksummed head and tail; the
/// cell's title holds it whole).
fn short(address: zg_core::Address) -> String {
    let full = address.to_string();
    match (full.get(..8), full.get(full.len().saturating_sub(6)..)) {
        (Some(head), Some(tail)) => format!("{head}…{tail}"),
        _ => full,
    }
}

/// Server-sent "refresh" events for open pages.
async fn events(State(gw): State<Arc<Gateway>>) -> Response {
    gw.live.events().into_response()
}
