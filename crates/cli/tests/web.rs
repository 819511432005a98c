//! The user's and the provider's web pages in a real Chromium (headless,
//! through chromedriver), against a real `zg-serving dev`: log in with the
//! token the banner prints, check that every figure equals what the CLI
//! says, move money through the forms and chat in the playground. With
//! ZG_SCREENSHOTS set (`make screenshots`) the screenshots land there.

#[path = "common/dev.rs"]
mod dev;

use std::{
    future::Future,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use dev::{Banner, Dev, amount, bin, json_amount, json_output, run_ok};
use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use zg_core::{U256, parse_amount};

/// How long a page may take to show what the test waits for. Generous: two
/// dev stacks and two browsers share the machine when the tests run together.
const PATIENCE: Duration = Duration::from_secs(120);

/// Headless Chromium driven by its own chromedriver, killed with its whole
/// process group (the browser included) on drop.
struct Browser {
    driver: Child,
    client: Client,
    shots: PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver (run `make deps`: Debian's chromium-driver)");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,900"],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        // chromedriver listens a moment after it starts.
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("no browser session at {url}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let shots = std::env::var_os("ZG_SCREENSHOTS").map_or_else(
            || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
            PathBuf::from,
        );
        std::fs::create_dir_all(&shots).expect("screenshot directory");
        Browser {
            driver,
            client,
            shots,
        }
    }

    async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The element `css` finds once it is on the page.
    async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let url = self.client.current_url().await.map(String::from);
                let source = self.client.source().await.unwrap_or_default();
                let head: String = source.chars().take(3000).collect();
                panic!("no {css} on {url:?}: {e}\npage:\n{head}")
            }
        }
    }

    async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Types `text` into the field `css`, replacing what it held.
    async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear field");
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Chooses the option of the select `css` whose value or label is
    /// `wanted` (case-insensitive, as addresses may be checksummed).
    async fn choose(&self, css: &str, wanted: &str) {
        let select = self.find(css).await;
        for option in select
            .find_all(Locator::Css("option"))
            .await
            .expect("options")
        {
            let value = option.attr("value").await.ok().flatten();
            let label = option.text().await.unwrap_or_default();
            if [value.unwrap_or_default(), label]
                .iter()
                .any(|v| v.trim().eq_ignore_ascii_case(wanted))
            {
                option.click().await.expect("choose option");
                return;
            }
        }
        panic!("{css} offers no {wanted:?}");
    }

    async fn text(&self, css: &str) -> String {
        text(&self.find(css).await).await
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.shots.join(name);
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        println!("screenshot {}", path.display());
    }

    /// Logs in at `page` with `token`, checking on the way that the page
    /// and one of its sub-pages send a visitor without a session to the login
    /// form; returns once the logged-in page shows `landmark`.
    async fn login(&self, page: &str, token: &str, landmark: &str) {
        self.goto(page).await;
        self.find("form#login").await;
        self.fill("form#login input[name=token]", token).await;
        self.click("form#login button[type=submit]").await;
        self.find(landmark).await;
    }

    /// Ends the browser session; dropping then stops chromedriver.
    async fn close(&self) {
        if let Err(e) = self.client.clone().close().await {
            eprintln!("closing the browser: {e}");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            // SAFETY: kill(2) on the process group of our own child.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.driver.wait();
    }
}

async fn text(element: &Element) -> String {
    element
        .text()
        .await
        .expect("element text")
        .trim()
        .to_owned()
}

/// An amount as a page shows it: decimal 0G, with or without the unit.
fn zg(text: &str) -> U256 {
    amount(text.trim().trim_end_matches("0G").trim())
}

/// Polls `check` until it gives a value, for at most `PATIENCE`; on timeout
/// the panic says what `check` saw last.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() > deadline => {
                panic!("timed out waiting for {what}; last saw {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// A fresh `zg-serving dev` and a browser logged in to one of its pages.
/// The fields drop in order: the browser, then dev, then its data.
struct Session {
    browser: Browser,
    /// The page's URL, ending in `/`.
    page: String,
    banner: Banner,
    _dev: Dev,
    _data: tempfile::TempDir,
}

impl Session {
    /// Starts dev, and logs in to the page its banner line `prefix` names
    /// with the token printed there, until the page shows `landmark`.
    async fn start(prefix: &str, landmark: &str) -> Session {
        let data = tempfile::tempdir().expect("temp dir");
        let (dev, banner) = Dev::start(data.path());
        let (page, token) = page(&banner, prefix);
        let browser = Browser::start().await;
        browser.login(&page, &token, landmark).await;
        Session {
            browser,
            page,
            banner,
            _dev: dev,
            _data: data,
        }
    }
}

/// A web page's banner line: `  user page  http://127.0.0.1:PORT/  (admin token TOKEN)`.
fn page(banner: &Banner, prefix: &str) -> (String, String) {
    let line = banner.field(prefix);
    let (url, rest) = line
        .split_once(char::is_whitespace)
        .unwrap_or_else(|| panic!("{prefix:?} line without a token: {line}"));
    let token = rest
        .trim()
        .strip_prefix("(admin token ")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{prefix:?} line without \"(admin token ...)\": {line}"));
    let url = if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    };
    (url, token.to_owned())
}

/// The account a banner line starts with (`  user       0x...  (key ...)`).
fn address(banner: &Banner, prefix: &str) -> String {
    let line = banner.field(prefix);
    line.split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no address in {prefix:?} line {line}"))
        .to_owned()
}

/// The chat model, from the banner's curl line.
fn chat_model(banner: &Banner) -> String {
    let curl = banner.field("-d '");
    curl.split("\"model\": \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no model in {curl}"))
        .to_owned()
}

fn user_ledger(env: &[(String, String)]) -> Value {
    json_output(
        bin()
            .args(["user", "--json", "ledger"])
            .envs(env.iter().cloned()),
    )
}

/// The ledger's escrow at `provider`; zero before the first funding.
fn escrow_in(ledger: &Value, provider: &str) -> U256 {
    ledger["escrows"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| {
            e["provider"]
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case(provider))
        })
        .map_or(U256::ZERO, |e| json_amount(&e["escrow"]))
}

/// The escrow `table#escrows` shows at `provider`; zero without a row.
async fn escrow_on_page(browser: &Browser, provider: &str) -> U256 {
    browser.find("table#escrows").await;
    for row in browser.find_all("table#escrows tr[data-provider]").await {
        let at = row.attr("data-provider").await.ok().flatten();
        if at.is_some_and(|a| a.eq_ignore_ascii_case(provider)) {
            let cell = row
                .find(Locator::Css("td.escrow"))
                .await
                .expect("td.escrow in the escrow row");
            return zg(&text(&cell).await);
        }
    }
    U256::ZERO
}

#[tokio::test(flavor = "multi_thread")]
async fn user_page_shows_the_ledger_funds_escrow_and_chats() {
    let session = Session::start("user page ", "#balance").await;
    let (browser, page, banner) = (&session.browser, &session.page, &session.banner);
    let env = banner.env();
    let provider = address(banner, "provider 0 ");
    for link in ["money", "providers", "activity", "keys", "playground"] {
        browser.find(&format!("a#nav-{link}")).await;
    }
    let ledger = user_ledger(&env);
    assert_eq!(
        zg(&browser.text("#balance").await),
        json_amount(&ledger["balance"]),
        "#balance vs {ledger}"
    );
    assert_eq!(
        zg(&browser.text("#wallet").await),
        json_amount(&ledger["wallet"]),
        "#wallet vs {ledger}"
    );
    let before = escrow_in(&ledger, &provider);
    assert_eq!(escrow_on_page(browser, &provider).await, before);
    browser.screenshot("user-money.png").await;

    // Funding goes through a confirmation that says what happens on chain.
    let fund_to = browser.find("form#fund [name=provider]").await;
    if fund_to.tag_name().await.expect("tag") == "select" {
        browser.choose("form#fund [name=provider]", &provider).await;
    } else {
        browser.fill("form#fund [name=provider]", &provider).await;
    }
    browser.fill("form#fund input[name=amount]", "0.01").await;
    browser.click("form#fund button[type=submit]").await;
    let plan = browser.text("#confirm-text").await;
    assert!(
        plan.contains("0.01"),
        "the confirmation names the amount: {plan}"
    );
    browser.click("button#confirm").await;
    browser.find("#result").await;
    let tx = browser.find("#tx").await;
    let tx_text = format!(
        "{} {}",
        text(&tx).await,
        tx.attr("href").await.ok().flatten().unwrap_or_default()
    );
    assert!(
        tx_text.contains("0x"),
        "#tx shows the transaction: {tx_text}"
    );
    let ten_milli = parse_amount("0.01").expect("amount");
    let ledger = user_ledger(&env);
    assert_eq!(
        escrow_in(&ledger, &provider),
        before + ten_milli,
        "{ledger}"
    );
    browser.goto(page).await;
    assert_eq!(escrow_on_page(browser, &provider).await, before + ten_milli);

    // Money moves only for a logged-in session.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let refused = anonymous
        .post(format!("{page}actions/fund"))
        .form(&[("provider", provider.as_str()), ("amount", "0.01")])
        .send()
        .await
        .expect("the gateway answers");
    assert!(
        matches!(refused.status().as_u16(), 401 | 403),
        "a POST without session got {}",
        refused.status()
    );
    assert_eq!(
        escrow_in(&user_ledger(&env), &provider),
        before + ten_milli,
        "a refused POST moved money"
    );

    // A streamed, paid answer in the playground, then its receipt in the activity.
    browser.click("a#nav-playground").await;
    browser.choose("select#model", &chat_model(banner)).await;
    browser
        .fill("input#api-key", &banner.field("api key "))
        .await;
    browser.fill("textarea#prompt", "Name three colours.").await;
    browser.click("button#send").await;
    let answer = eventually("a streamed answer in #answer", || async {
        let answer = browser.text("#answer").await;
        if answer.is_empty() {
            Err("an empty #answer".to_owned())
        } else {
            Ok(answer)
        }
    })
    .await;
    let receipt = browser.find("#receipt[data-receipt-id]").await;
    let id = receipt
        .attr("data-receipt-id")
        .await
        .ok()
        .flatten()
        .expect("data-receipt-id");
    let fee = text(
        &receipt
            .find(Locator::Css(".fee"))
            .await
            .expect(".fee in #receipt"),
    )
    .await;
    println!("playground answer {answer:?}, receipt {id}, fee {fee}");
    browser.screenshot("user-playground.png").await;

    browser.click("a#nav-activity").await;
    browser.find("svg#spend-chart").await;
    let rows = browser.find_all("table#receipts tr.receipt").await;
    let newest = rows.first().expect("a receipt row in the activity");
    assert_eq!(
        newest.attr("data-id").await.ok().flatten().as_deref(),
        Some(id.as_str()),
        "the playground's receipt is the newest row"
    );
    let cell = |name: &'static str| async move {
        text(
            &newest
                .find(Locator::Css(name))
                .await
                .unwrap_or_else(|e| panic!("{name} in the receipt row: {e}")),
        )
        .await
    };
    let check = cell("td.check").await;
    assert!(check.starts_with("paid"), "receipt {id} checked: {check}");
    assert_eq!(zg(&cell("td.fee").await), zg(&fee), "fee of receipt {id}");
    cell("td.audit").await;
    browser.screenshot("user-activity.png").await;

    browser.click("a#nav-providers").await;
    browser.find("table#providers tr.service").await;
    browser.screenshot("user-providers.png").await;

    // Readable on a phone: nothing wider than the screen.
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("phone-sized window");
    browser.goto(page).await;
    browser.find("#balance").await;
    let widths = browser
        .client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth]",
            vec![],
        )
        .await
        .expect("page widths");
    assert!(
        widths[0].as_u64() <= widths[1].as_u64(),
        "the money page scrolls sideways on a phone: [content, window] = {widths}"
    );
    browser.screenshot("user-phone.png").await;
    browser.close().await;
}

/// The provider CLI's totals: owed, settled, unsettled vouchers, earnings on
/// the ledger, from the last line of `provider status`.
fn provider_totals(config: &str) -> [U256; 4] {
    let status = run_ok(bin().args(["provider", "status", "--config", config]));
    let last = status.lines().last().unwrap_or_default();
    let figures: Vec<U256> = last
        .split(", ")
        .filter_map(|part| part.trim().strip_suffix(" 0G")?.split_whitespace().last())
        .map(amount)
        .collect();
    figures
        .try_into()
        .unwrap_or_else(|_| panic!("no four totals in {last:?}"))
}

async fn provider_page_totals(browser: &Browser) -> [U256; 4] {
    let mut figures = [U256::ZERO; 4];
    for (figure, id) in figures
        .iter_mut()
        .zip(["#owed", "#settled", "#unsettled", "#earnings"])
    {
        *figure = zg(&browser.text(id).await);
    }
    figures
}

/// Waits until the page, reloaded, shows the figures the CLI prints.
async fn page_agrees_with_cli(browser: &Browser, page: &str, config: &str) -> [U256; 4] {
    eventually(
        "the provider page to show `provider status`'s totals",
        || async {
            let cli = provider_totals(config);
            browser.goto(page).await;
            let shown = provider_page_totals(browser).await;
            if shown == cli {
                Ok(cli)
            } else {
                Err(format!(
                    "page (owed, settled, unsettled, earnings) {shown:?}, CLI {cli:?}"
                ))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_page_shows_what_provider_status_says() {
    let session = Session::start("provider page 0 ", "#earnings").await;
    let (browser, page, banner) = (&session.browser, &session.page, &session.banner);
    let config = banner.provider_config();

    // One paid chat through the gateway, as any OpenAI client sends it.
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/chat/completions", banner.field("gateway ")))
        .bearer_auth(banner.field("api key "))
        .json(&json!({
            "model": chat_model(banner),
            "messages": [{ "role": "user", "content": "Say hi" }],
            "max_tokens": 16,
        }))
        .send()
        .await
        .expect("the gateway answers")
        .error_for_status()
        .expect("a paid answer")
        .json()
        .await
        .expect("JSON answer");
    assert!(
        answer["choices"][0]["message"]["content"].is_string(),
        "{answer}"
    );
    let [owed, ..] = page_agrees_with_cli(browser, page, &config).await;
    assert!(!owed.is_zero(), "the chat's fee is owed");
    // Two spaces: the "user page" line starts with "user " too.
    let user = address(banner, "user  ");
    let users = browser.find_all("table#users tr[data-user]").await;
    let mut listed = Vec::new();
    for row in &users {
        listed.push(
            row.attr("data-user")
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
        );
    }
    assert!(
        listed.iter().any(|u| u.eq_ignore_ascii_case(&user)),
        "user {user} in table#users: {listed:?}"
    );
    browser.find("table#services").await;

    // Settled on chain (once the gateway has acknowledged the receipt), the
    // page follows.
    eventually("a settlement", || async {
        run_ok(bin().args(["provider", "settle", "--config", &config]));
        let [_, settled, ..] = provider_totals(&config);
        if settled.is_zero() {
            Err("nothing settled".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    let [_, settled, _, earnings] = page_agrees_with_cli(browser, page, &config).await;
    assert!(
        !settled.is_zero() && !earnings.is_zero(),
        "{settled} {earnings}"
    );
    browser.screenshot("provider.png").await;
    browser.close().await;
}
