//! The provider page through a real broker, chain and SQLite file: it is
//! served on its own port behind the admin token (a bearer token or the
//! login cookie), never on the serving port; its four figures are exactly
//! what `provider status` prints after a paid request and a settlement,
//! whose transaction it lists; and with the chain and the upstream down it
//! still renders, saying so in banners.
// Test code: a panic is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::{StatusCode, header};
use zg_core::U256;
use zg_devnet::FaultyRpc;
use zg_provider::{Config, Running};

const TOKEN: &str = "0123456789abcdef-admin";

/// `plan`'s config with the provider page on a free port, its token read
/// from the variable the config names.
fn with_page(plan: &BrokerPlan) -> Config {
    let text = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"ZG_TEST_ADMIN_TOKEN\"\n",
        plan.toml()
    );
    Config::parse(
        &text,
        "test",
        [("ZG_TEST_ADMIN_TOKEN".to_owned(), TOKEN.to_owned())],
    )
    .expect("config with [admin]")
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The page as the token's bearer sees it.
async fn page(http: &reqwest::Client, broker: &Running) -> String {
    let r = http
        .get(broker.admin_url().unwrap())
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    r.text().await.unwrap()
}

/// The text inside the element with `id` (a leaf: no markup inside).
fn text_of<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let open = at + html[at..].find('>').unwrap() + 1;
    let close = open + html[open..].find('<').unwrap();
    &html[open..close]
}

/// The element with `id`, from its tag to the end of the page.
fn from_id<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    &html[at..]
}

/// The four figures of `provider status`'s last line: owed, settled,
/// unsettled, earnings.
fn status_figures(status: &str) -> [String; 4] {
    let last = status.lines().last().unwrap();
    let figure = |label: &str| {
        let at = last.find(label).unwrap() + label.len();
        last[at..].split(" 0G").next().unwrap().trim().to_owned()
    };
    [
        figure("owed "),
        figure("settled "),
        figure("unsettled vouchers "),
        figure("earnings on the ledger "),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_needs_the_token_and_shows_the_books_as_status_prints_them() {
    let env = Env::start().await;
    let upstream = format!("http://{}/v1", scripted_upstream().await);
    let (db, _dir) = sqlite_url();
    let plan = env.plan(&db, &upstream, "scripted", Default::default(), "1");
    let broker = env.broker(with_page(&plan)).await;
    let http = no_redirects();
    let admin = broker.admin_url().unwrap();
    assert_eq!(broker.admin_token(), Some(TOKEN));
    assert_ne!(broker.admin_addr().unwrap(), broker.addr());

    // The serving port serves no page: not the overview, not the login.
    for path in ["/", "/login", "/events", "/assets/app.js"] {
        let r = http
            .get(format!("{}{path}", broker.url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{path} on the serving port"
        );
    }
    // Without the token: a browser goes to /login, a write is refused.
    let r = http.get(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/login");
    let r = http.post(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http.get(&admin).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http.get(format!("{admin}login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let (key, tx) = pay_and_settle(&env, &broker).await;

    let status = broker.broker().status().await.unwrap();
    let [owed, settled, unsettled, earnings] = status_figures(&status);
    let html = page(&http, &broker).await;
    assert_eq!(text_of(&html, "owed"), owed, "{status}");
    assert_eq!(text_of(&html, "settled"), settled);
    assert_eq!(text_of(&html, "unsettled"), unsettled);
    assert_eq!(text_of(&html, "earnings"), earnings);
    assert_ne!(settled, "0", "the settlement shows");
    assert!(!html.contains("class=\"banner"), "all is up: no banner");

    // The settlement, with its transaction; the user's row; the service.
    let settlements = from_id(&html, "settlements");
    assert!(
        settlements.contains(&format!("data-tx=\"{tx}\"")),
        "{settlements}"
    );
    let user_row = format!("data-user=\"{}\"", key.address());
    assert!(from_id(&html, "users").contains(&user_row));
    let services = from_id(&html, "services");
    assert!(services.contains("data-service=\"chat\""));
    assert!(from_id(&html, "rate-chart").contains("<polyline"));
    for id in [
        "refunds",
        "disputes",
        "errors",
        "earnings",
        "owed",
        "settled",
        "unsettled",
    ] {
        let tag = &html[..html.find(&format!("id=\"{id}\"")).unwrap()];
        let element = &html[tag.rfind('<').unwrap()..];
        let head = &element[..element.find('>').unwrap()];
        assert!(head.contains("data-live"), "#{id} refreshes live: {head}");
    }
    // Every script is a file of the page's own (the CSP allows no other).
    assert!(!html.contains("<script>"));
    assert!(html.contains("data-events=\"/events\""));

    // The login cookie opens the same page.
    let r = http
        .post(format!("{admin}login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()[header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let r = http
        .get(&admin)
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert_eq!(text_of(&html, "owed"), owed);

    // The events the page listens to.
    let r = http
        .get(format!("{admin}events"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // An open event stream does not hold the shutdown.
    tokio::time::timeout(std::time::Duration::from_secs(20), broker.shutdown())
        .await
        .expect("shutdown with an open event stream")
        .unwrap();
    drop(r);
}

/// User 2 pays for a request, acknowledges its fee and the broker settles
/// it; then one more paid request stays unsettled. Returns the user's key
/// and the settlement's transaction hash.
async fn pay_and_settle(env: &Env, broker: &Running) -> (zg_core::SigningKey, String) {
    let (key, _) = env.user(2, U256::from(10u64).pow(U256::from(16u64))).await;
    let mut payer = Payer::new(key.clone(), env, &broker.url());
    let a = payer
        .send("/v1/chat/completions", &chat_body("chat", "hi", 8))
        .await;
    assert_eq!(a.status, 200);
    let receipt = a.receipt.unwrap().receipt;
    payer.owed = receipt.owed;
    assert_eq!(payer.acknowledge(&receipt).await, 200);
    let round = broker.broker().settler().settle_now().await.unwrap();
    assert_eq!((round.settled, round.txs.len()), (1, 1));
    let b = payer
        .send("/v1/chat/completions", &chat_body("chat", "hi", 8))
        .await;
    assert_eq!(b.status, 200);
    (key, format!("{:#x}", round.txs[0]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settlement_history_is_kept_in_postgresql_too() {
    let env = Env::start().await;
    let upstream = format!("http://{}/v1", scripted_upstream().await);
    let (db, name) = pg_url().await;
    let plan = env.plan(&db, &upstream, "scripted", Default::default(), "1");
    let broker = env.broker(with_page(&plan)).await;
    let (key, tx) = pay_and_settle(&env, &broker).await;
    let html = page(&no_redirects(), &broker).await;
    assert!(from_id(&html, "settlements").contains(&format!("data-tx=\"{tx}\"")));
    assert!(from_id(&html, "users").contains(&format!("data-user=\"{}\"", key.address())));
    let status = broker.broker().status().await.unwrap();
    assert_eq!(text_of(&html, "owed"), status_figures(&status)[0]);
    broker.shutdown().await.unwrap();
    drop_pg(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_chain_and_the_upstream_down_the_page_says_so() {
    let env = Env::start().await;
    let rpc = FaultyRpc::start(env.chain.url()).await.unwrap();
    // An upstream that is gone: a port nobody listens on.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (db, _dir) = sqlite_url();
    let mut plan = env.plan(
        &db,
        &format!("http://{gone}/v1"),
        "scripted",
        Default::default(),
        "1",
    );
    plan.rpc_url = rpc.url().to_owned();
    plan.settlement.enabled = false;
    let mut config = with_page(&plan);
    config.settlement.rpc_timeout_secs = 2;
    let broker = env.broker(config).await;
    let http = no_redirects();

    rpc.set_down(true);
    let html = page(&http, &broker).await;
    assert!(html.contains("id=\"chain-down\""), "{html}");
    assert!(html.contains("class=\"banner upstream-down\""), "{html}");
    assert_eq!(text_of(&html, "earnings"), "—");
    // What the broker's database knows is still there.
    assert_eq!(text_of(&html, "owed"), "0");
    assert!(from_id(&html, "services").contains("data-service=\"chat\""));

    rpc.set_down(false);
    let html = page(&http, &broker).await;
    assert!(!html.contains("id=\"chain-down\""));
    assert_eq!(text_of(&html, "earnings"), "0");
    broker.shutdown().await.unwrap();
}
