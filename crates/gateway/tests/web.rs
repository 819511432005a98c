//! The gateway's web page through real parts: anvil with the contracts (the
//! gateway's chain through a proxy that can go down), a real broker in
//! front of the real engine on the real model, and the page driven over
//! HTTP as a browser would (a session cookie, the forms' CSRF field).
//! One marketplace for the whole file: the steps run in order.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Market, chat_body, engine, eventually, neuron, start_gateway};
use reqwest::{StatusCode, header};
use zg_chain::ChainClient;
use zg_client::Accounts;
use zg_core::{Address, U256, format_amount};
use zg_devnet::FaultyRpc;
use zg_gateway::GatewayConfig;

const TOKEN: &str = "test-admin-token";
const EXPLORER: &str = "http://explorer.test";

/// The text of the element with `id` (up to its first child tag).
fn text_of(html: &str, id: &str) -> String {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let open = at + html[at..].find('>').unwrap() + 1;
    let close = open + html[open..].find('<').unwrap();
    html[open..close].trim().to_owned()
}

/// The text of the cell of `class` in the table row that holds `marker`.
fn cell(html: &str, marker: &str, class: &str) -> String {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no row {marker} in {html}"));
    let row = &html[at..at + html[at..].find("</tr>").unwrap()];
    let c = row
        .find(&format!("class=\"{class}"))
        .unwrap_or_else(|| panic!("no cell .{class} in {row}"));
    text_of(&row[c..].replacen("class=", "id=\"cell\" x=", 1), "cell")
}

fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

/// A browser: keeps no redirects and sends the session cookie once it has one.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookie: None,
        }
    }

    fn with_cookie(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(c) => r.header(header::COOKIE, c),
            None => r,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .with_cookie(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn post(
        &self,
        path: &str,
        form: &impl serde::Serialize,
        origin: Option<&str>,
    ) -> (StatusCode, String) {
        let mut r = self.with_cookie(self.http.post(format!("{}{path}", self.base)).form(form));
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        let r = r.send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn log_in(&mut self, token: &str) -> StatusCode {
        let r = self
            .http
            .post(format!("{}/login", self.base))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        if let Some(c) = r.headers().get(header::SET_COOKIE) {
            self.cookie = Some(c.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        r.status()
    }
}

async fn escrow(chain: &ChainClient, provider: Address) -> U256 {
    Accounts::new(chain.clone())
        .escrow(provider)
        .await
        .unwrap()
        .escrow
}

/// POSTs a chat to the gateway's /v1 with `key` (if any).
async fn chat(base: &str, key: Option<&str>, body: &serde_json::Value) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_users_page_shows_and_moves_the_money_and_the_answers_it_paid_for() {
    let e = engine();
    let mut market = Market::start().await;
    let provider = market
        .broker(1, &e.url, &e.model, e.digest, "0.000000001", "0.000000002")
        .await;
    let p = provider.address();
    let (key, chain) = market.user(2, neuron("0.1"), &[p]).await;
    // Some free ledger balance to fund from.
    chain.deposit(neuron("0.05")).await.unwrap();
    let rpc = FaultyRpc::start(market.chain.url()).await.unwrap();
    let gateway_chain = ChainClient::connect(rpc.url(), chain.contract_address(), &key.to_bytes())
        .await
        .unwrap();
    let config = GatewayConfig {
        admin_token: Some(TOKEN.into()),
        explorer_url: Some(EXPLORER.into()),
        ..Default::default()
    };
    let (url, gateway, payer) = start_gateway(&mut market, &key, gateway_chain, config).await;
    assert_eq!(gateway.admin_token(), TOKEN);
    let base = url.trim_end_matches("/v1").to_owned();
    let mut browser = Browser::new(&base);
    let fund = |csrf: &str, amount: &str, confirm: bool| {
        let mut form = vec![
            ("provider", p.to_string()),
            ("amount", amount.to_owned()),
            ("csrf", csrf.to_owned()),
        ];
        if confirm {
            form.push(("confirm", "yes".into()));
        }
        form
    };

    // Without a session: pages go to /login, actions are refused and move nothing.
    let r = browser.http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/login");
    let before = escrow(&chain, p).await;
    let (status, _) = browser
        .post("/actions/fund", &fund("x", "0.01", true), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(escrow(&chain, p).await, before, "nothing moved");
    assert_eq!(browser.log_in("wrong").await, StatusCode::UNAUTHORIZED);
    assert!(browser.cookie.is_none());

    // Logged in, the money page shows what the chain says.
    assert_eq!(browser.log_in(TOKEN).await, StatusCode::SEE_OTHER);
    let r = browser
        .with_cookie(browser.http.get(format!("{base}/")))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let money = r.text().await.unwrap();
    let summary = Accounts::new(chain.clone()).summary().await.unwrap();
    assert_eq!(text_of(&money, "wallet"), format_amount(summary.wallet));
    assert_eq!(text_of(&money, "balance"), format_amount(summary.balance));
    let row = format!("data-provider=\"{p}\"");
    assert_eq!(cell(&money, &row, "escrow"), format_amount(before));
    for id in [
        "nav-money",
        "nav-providers",
        "nav-activity",
        "nav-fine-tuning",
        "nav-keys",
        "nav-playground",
    ] {
        assert!(money.contains(&format!("id=\"{id}\"")), "{id}");
    }
    let token = csrf(&money);

    // Fund: first what it will do, and nothing moves...
    let (status, page) = browser
        .post("/actions/fund", &fund(&token, "0.01", false), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let what = text_of(&page, "confirm-text");
    assert!(
        what.starts_with("fund(provider, amount): moves 0.01 0G of your ledger balance")
            && what.contains(&p.to_string())
            && what.contains(&format!("(now {} 0G)", format_amount(summary.balance))),
        "{what}"
    );
    assert!(page.contains("id=\"confirm\""));
    assert_eq!(escrow(&chain, p).await, before);
    // ...not from another site, nor with another session's field...
    for (csrf, origin) in [
        ("forged", None),
        (token.as_str(), Some("http://evil.example")),
    ] {
        let (status, _) = browser
            .post("/actions/fund", &fund(csrf, "0.01", true), origin)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{csrf} {origin:?}");
    }
    assert_eq!(escrow(&chain, p).await, before);
    // ...and confirmed, exactly the amount.
    let (status, done) = browser
        .post("/actions/fund", &fund(&token, "0.01", true), Some(&base))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(escrow(&chain, p).await, before + neuron("0.01"));
    assert!(
        done.contains(&format!("href=\"{EXPLORER}/tx/0x")),
        "the transaction is linked: {done}"
    );
    let (status, bad) = browser
        .post("/actions/fund", &fund(&token, "1e9", true), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text_of(&bad, "error-text").contains("not an amount"),
        "{bad}"
    );
    let (status, broke) = browser
        .post("/actions/fund", &fund(&token, "1000", true), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text_of(&broke, "error-text").contains("ledger balance"),
        "{broke}"
    );
    assert_eq!(escrow(&chain, p).await, before + neuron("0.01"));

    // A paid chat through /v1 (open: no key yet) shows on the activity page.
    let r = chat(&base, None, &chat_body(&e.model, "Say yes.", 4)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-zg-receipt-status"], "paid");
    let book = payer.book().clone();
    let paid = book.receipts(None, false, 1).await.unwrap().remove(0);
    let (_, activity) = browser.get("/activity").await;
    let row = format!("data-id=\"{}\"", paid.id);
    assert_eq!(cell(&activity, &row, "fee"), format_amount(paid.fee));
    assert!(cell(&activity, &row, "check").starts_with("paid"));
    assert!(activity.contains("id=\"spend-chart\"") && activity.contains("id=\"provider-chart\""));

    // A streamed chat, as the playground sends it: its receipt is found by the request id.
    let mut body = chat_body(&e.model, "Say no.", 4);
    body["stream"] = true.into();
    body["stream_options"] = serde_json::json!({ "include_usage": true });
    let r = chat(&base, None, &body).await;
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-zg-request-id"].to_str().unwrap().to_owned();
    let streamed = r.text().await.unwrap();
    assert!(streamed.contains("\"cost\""), "{streamed}");
    let (status, found) = browser
        .get(&format!("/receipts/by-request/{request_id}"))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "noted before the stream's last byte"
    );
    let found: serde_json::Value = serde_json::from_str(&found).unwrap();
    let newest = book.receipts(None, false, 1).await.unwrap().remove(0);
    assert_eq!(found["receipt_id"], newest.id);
    assert_eq!(found["check"], "paid");
    assert_eq!(found["fee"], format_amount(newest.fee));

    // A key made on the page works for /v1 (and makes /v1 need one); revoked, it is refused.
    let (_, keys) = browser.get("/keys").await;
    let (status, made) = browser
        .post(
            "/keys/new",
            &[("name", "app"), ("limit", "0.5"), ("csrf", &csrf(&keys))],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let secret = text_of(&made, "new-secret");
    assert!(secret.starts_with("zgk-"), "{secret}");
    let body = chat_body(&e.model, "Say ok.", 4);
    assert_eq!(chat(&base, None, &body).await.status(), 401);
    assert_eq!(chat(&base, Some(&secret), &body).await.status(), 200);
    let by_key = book.receipts(None, false, 1).await.unwrap().remove(0);
    let id = gateway.keys().list().await.unwrap()[0].id.clone();
    let (_, activity) = browser.get("/activity").await;
    assert_eq!(
        cell(&activity, &format!("data-id=\"{}\"", by_key.id), "key"),
        format!("app ({id})")
    );
    let (_, keys) = browser.get("/keys").await;
    assert_eq!(
        cell(&keys, &format!("data-id=\"{id}\""), "spent"),
        format_amount(by_key.fee)
    );
    let (_, other) = browser
        .post(
            "/keys/new",
            &[("name", "other"), ("csrf", &csrf(&keys))],
            None,
        )
        .await;
    let other = text_of(&other, "new-secret");
    let (status, _) = browser
        .post("/keys/revoke", &[("id", &id), ("csrf", &csrf(&keys))], None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(chat(&base, Some(&secret), &body).await.status(), 401);
    assert_eq!(chat(&base, Some(&other), &body).await.status(), 200);
    let (_, keys) = browser.get("/keys").await;
    assert_eq!(cell(&keys, &format!("data-id=\"{id}\""), "revoked"), "yes");
    // Every key revoked: /v1 stays closed, it does not open again.
    let (status, _) = browser
        .post(
            "/keys/revoke",
            &[("id", "other"), ("csrf", &csrf(&keys))],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(chat(&base, None, &body).await.status(), 401);
    assert_eq!(chat(&base, Some(&other), &body).await.status(), 401);
    let (_, keys) = browser.get("/keys").await;
    assert!(keys.contains("Every key is revoked"), "{keys}");

    // The other pages, and the live updates.
    let (status, providers) = browser.get("/providers").await;
    assert_eq!(status, StatusCode::OK);
    assert!(providers.contains("id=\"providers\""));
    let service = format!("data-provider=\"{p}\"");
    assert_eq!(cell(&providers, &service, "model"), e.model);
    assert_ne!(
        cell(&providers, &service, "quote"),
        "—",
        "the broker quotes"
    );
    let (_, playground) = browser.get("/playground").await;
    assert!(playground.contains(&format!("<option value=\"{}\">", e.model)));
    assert!(playground.contains("src=\"/assets/playground.js\""));
    let (status, script) = browser.get("/assets/playground.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(script.contains("/receipts/by-request/"));
    let events = browser
        .with_cookie(browser.http.get(format!("{base}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()[header::CONTENT_TYPE], "text/event-stream");
    drop(events);

    // The chain down: pages still render and say so; actions fail with a reason.
    rpc.set_down(true);
    let (status, money) = browser.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        money.contains("class=\"banner\"") && money.contains("did not answer"),
        "{money}"
    );
    let (status, failed) = browser
        .post("/actions/fund", &fund(&token, "0.01", true), None)
        .await;
    assert!(status.is_server_error(), "{status}");
    assert!(
        text_of(&failed, "error-text").contains("fund was not done"),
        "{failed}"
    );
    let (status, _) = browser.get("/providers").await;
    assert_eq!(status, StatusCode::OK);
    rpc.set_down(false);
    assert!(
        eventually(async || !browser.get("/").await.1.contains("class=\"banner\"")).await,
        "the banner goes when the chain is back"
    );
    assert_eq!(escrow(&chain, p).await, before + neuron("0.01"));
}
