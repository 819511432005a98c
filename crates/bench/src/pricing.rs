//! `zg-bench run-pricing` (`make bench-pricing`, docs/bench-pricing.md): two
//! providers of one model, A and B, with the same ceilings and the same
//! demand pricing, each in front of an upstream that takes a fixed time per
//! answer (B's twice A's). Direct clients saturate A until its quote rises;
//! then the user's gateway, asked for the model, should send most requests
//! to the idle and so cheaper B although B is slower. Every receipt of the
//! run is checked against the on-chain ceilings and the quotes, apart from
//! the client's own checks. `--flat` is the control: floor = peak, so that
//! only latency moves the gateway.

use crate::{
    fixture::{Market, remove_sqlite, run_dir, spawn_broker_config, spawn_gateway},
    load::{BODY, plain_request},
    procs::Guard,
    report::Report,
};
use anyhow::{Context, Result, bail};
use std::{
    collections::HashMap,
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zg_chain::{ChainClient, DeployParams};
use zg_client::{AckPolicy, Book, Payer, ReceiptRecord, pay::fetch_quote};
use zg_core::{
    Address, B256, Domain, Prices, Quote, Receipt, Service, SigningKey, U256, wire::routes,
};
use zg_devnet::{BrokerPlan, DevChainOptions, ServicePlan, SettlementPlan};

const UPSTREAM_A: &str = "127.0.0.1:18191";
const UPSTREAM_B: &str = "127.0.0.1:18192";
const BROKER_A: &str = "127.0.0.1:18193";
const BROKER_B: &str = "127.0.0.1:18194";
const GATEWAY: &str = "127.0.0.1:18195";

/// How long A's upstream takes per answer, however many it serves at once
/// (A's load is then the number of clients), and B's: slower, so that on
/// latency alone the gateway keeps choosing A even while A is loaded (its
/// broker's own time grows with the load, by far less than this gap); only
/// the price can then move requests to B (`--flat` shows it does not
/// without).
const ANSWER_TIME_A: Duration = Duration::from_millis(150);
const ANSWER_TIME_B: Duration = Duration::from_millis(300);
/// The answer of bench/broker/nginx.conf: 10 prompt + 5 completion tokens.
const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#;
/// `max_tokens` of [`BODY`].
const ASKED_OUTPUT: u64 = 16;

/// Both services' `[services.pricing]`: half the ceilings idle, all of them
/// from `CAPACITY` requests in flight, a short moving average so the run is
/// short, and quotes that clients hold about a second.
const FLOOR: f64 = 0.5;
const PEAK: f64 = 1.0;
const CAPACITY: u32 = 4;
const SMOOTHING_SECS: f64 = 2.0;
const QUOTE_SECS: u64 = 6;

/// Direct clients of A, one request at a time each: twice its capacity.
const LOADERS: usize = 8;
/// Gateway requests while idle (they also let it measure both providers).
const WARM: usize = 4;
/// Gateway requests while A is saturated.
const UNDER_LOAD: usize = 40;
/// Quiet time before the idle price is read.
const IDLE: Duration = Duration::from_secs(3);
/// Longest wait for A's quote to rise under the load.
const RISE_LIMIT: Duration = Duration::from_secs(30);
/// A's quote counts as risen at the peak, or once it rose and then held
/// this long (the load may stay short of full on a slow machine).
const PLATEAU: Duration = Duration::from_secs(3);
/// How often the observer reads both quotes.
const OBSERVE_EVERY: Duration = Duration::from_millis(50);

/// The whole pricing benchmark (with `flat`, the control: floor = peak);
/// its line goes to stdout and `dir/results.txt`.
pub(crate) fn run(dir: &Path, flat: bool) -> Result<()> {
    let dir = run_dir(dir)?;
    let rt = tokio::runtime::Runtime::new().context("could not start the async runtime")?;
    rt.block_on(async {
        slow_upstream(UPSTREAM_A, ANSWER_TIME_A).await?;
        slow_upstream(UPSTREAM_B, ANSWER_TIME_B).await
    })?;
    let setup = rt.block_on(Setup::start())?;
    let market = &setup.market;

    let floor = if flat { PEAK } else { FLOOR };
    let _broker_a = spawn_priced_broker(market, &dir, "a", 1, floor, UPSTREAM_A, BROKER_A)?;
    let _broker_b = spawn_priced_broker(market, &dir, "b", 2, floor, UPSTREAM_B, BROKER_B)?;
    let book = dir.join("gateway-book.sqlite");
    remove_sqlite(&book);
    let gateway = spawn_gateway(market, &setup.user, &book, GATEWAY)?;
    let (a, b) = rt.block_on(setup.services())?;
    let domain = setup.reader.domain();
    let loaders = rt.block_on(payers(&setup.loaders, &dir, domain))?;
    let http = loaders.first().context("no direct clients")?.clone();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let observing = Arc::new(AtomicBool::new(true));
    let observer = rt.spawn(observe(
        http.clone(),
        domain,
        vec![a.clone(), b.clone()],
        seen.clone(),
        observing.clone(),
    ));

    // 1. Idle: a few requests through the gateway, then quiet.
    let warm = gateway_requests(WARM)?;
    std::thread::sleep(IDLE);
    let idle = rt.block_on(base_prices(&http, domain, &a))?;
    eprintln!(
        "pricing: idle, A quotes {} / {} neuron per input / output token; the gateway sent {} of {WARM} to B",
        idle.input,
        idle.output,
        count(&warm, b.provider)
    );

    // 2. A saturated by direct clients until its quote has risen.
    let loading = Arc::new(AtomicBool::new(true));
    let direct: Vec<_> = loaders
        .iter()
        .map(|p| rt.spawn(load_a(p.clone(), a.clone(), seen.clone(), loading.clone())))
        .collect();
    let started = Instant::now();
    let loaded = rt.block_on(risen(&http, domain, &a, idle))?;
    eprintln!(
        "pricing: A quotes {} / {} after {:.1} s of {LOADERS} direct clients",
        loaded.input,
        loaded.output,
        started.elapsed().as_secs_f64()
    );

    // 3. The gateway, asked for the model, while A stays saturated.
    let under_load = gateway_requests(UNDER_LOAD)?;
    let to_b = count(&under_load, b.provider);
    let (a_end, b_end) = rt.block_on(async {
        (
            base_prices(&http, domain, &a).await,
            base_prices(&http, domain, &b).await,
        )
    });
    eprintln!(
        "pricing: after the gateway's {UNDER_LOAD}, A quotes {} and B {} per input token",
        a_end?.input, b_end?.input
    );
    eprintln!("pricing: the gateway's standings: {}", standings()?);
    loading.store(false, Ordering::Relaxed);
    let mut sent = Vec::with_capacity(LOADERS);
    for handle in direct {
        sent.push(rt.block_on(handle).context("a direct client panicked")??);
    }
    observing.store(false, Ordering::Relaxed);
    rt.block_on(observer)
        .context("the quote observer panicked")?;

    // 4. Every receipt of the run, against the ceilings and the quotes. The
    // gateway's book is read once it has stopped.
    drop(gateway);
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let ceilings: HashMap<Address, Prices> =
        [(a.provider, a.prices), (b.provider, b.prices)].into();
    let gateway_book = rt
        .block_on(Book::open(&book, setup.user.address()))
        .with_context(|| format!("opening the gateway's book {}", book.display()))?;
    let overcharged = rt.block_on(overcharged(
        &loaders,
        &sent,
        &gateway_book,
        &ceilings,
        &seen,
    ))?;

    let share = to_b as f64 / UNDER_LOAD as f64;
    report(
        &dir,
        idle.input,
        loaded.input,
        a.prices.input,
        share,
        overcharged,
    )
}

/// A's quote, read every 250 ms from now until its input price reaches
/// the peak, or rose from `idle` and then held for [`PLATEAU`], or
/// [`RISE_LIMIT`] passed: the highest base-tier prices it quoted.
async fn risen(http: &Payer, domain: Domain, a: &Service, idle: Prices) -> Result<Prices> {
    let peak = a.prices.input.saturating_to::<u64>() as f64 * PEAK;
    let started = Instant::now();
    let (mut loaded, mut last_rise) = (idle, started);
    loop {
        let now = base_prices(http, domain, a).await?;
        if now.input > loaded.input {
            (loaded, last_rise) = (now, Instant::now());
        }
        let at_peak = loaded.input.saturating_to::<u64>() as f64 >= peak;
        let settled = loaded.input > idle.input && last_rise.elapsed() > PLATEAU;
        if at_peak || settled || started.elapsed() > RISE_LIMIT {
            return Ok(loaded);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Of every receipt in the direct clients' books and the gateway's, those
/// above their provider's ceilings or above the quotes their request may
/// have gone out under: for a direct request, the quotes its payer held
/// around it (`sent`, in order); for a gateway request, every quote its
/// provider was seen to make. Each book must hold one receipt per answer.
async fn overcharged(
    loaders: &[Payer],
    sent: &[Vec<Basis>],
    gateway_book: &Book,
    ceilings: &HashMap<Address, Prices>,
    seen: &Seen,
) -> Result<usize> {
    let mut overcharged = 0;
    let mut checked = 0;
    for (payer, sent) in loaders.iter().zip(sent) {
        for (row, quotes) in rows(payer.book(), sent.len()).await?.iter().zip(sent) {
            checked += 1;
            overcharged += usize::from(!fair(&row.signed.receipt, ceilings, |_| quotes.clone()));
        }
    }
    let direct = checked;
    for row in rows(gateway_book, WARM + UNDER_LOAD).await? {
        checked += 1;
        overcharged += usize::from(!fair(&row.signed.receipt, ceilings, |p| seen.of(p)));
    }
    eprintln!(
        "pricing: {checked} receipts checked ({direct} direct to A, {} through the gateway)",
        checked - direct
    );
    Ok(overcharged)
}

/// Prints the line (and which targets it misses) and keeps it in
/// `dir/results.txt`.
fn report(
    dir: &Path,
    idle: U256,
    loaded: U256,
    ceiling: U256,
    share: f64,
    overcharged: usize,
) -> Result<()> {
    let mut report = Report::default();
    report.push(format!(
        "pricing idle_price={idle} loaded_price={loaded} ceiling={ceiling} share_to_b_under_load={share:.2} overcharged_receipts={overcharged}"
    ));
    let missed: Vec<&str> = [
        (loaded <= idle, "loaded_price > idle_price"),
        (loaded > ceiling, "loaded_price <= ceiling"),
        (share < 0.70, "share_to_b_under_load >= 0.70"),
        (overcharged > 0, "overcharged_receipts = 0"),
    ]
    .into_iter()
    .filter_map(|(miss, target)| miss.then_some(target))
    .collect();
    if !missed.is_empty() {
        report.push(format!("pricing targets missed: {}", missed.join(", ")));
    }
    report.write(dir)
}

/// The chain, its contract and the keys of the run: provider A is dev
/// account 1, B dev account 2, the gateway's user (escrow at both) 3, and
/// the direct clients of A (escrow at A) the ones after.
struct Setup {
    market: Market,
    /// A client of the contract for reads.
    reader: ChainClient,
    user: SigningKey,
    loaders: Vec<SigningKey>,
}

impl Setup {
    async fn start() -> Result<Setup> {
        let devnet = zg_devnet::Market::start(
            DevChainOptions {
                accounts: 4 + LOADERS,
                ..Default::default()
            },
            DeployParams::default(),
        )
        .await
        .context("starting anvil with the contracts (`make contracts` or `npm ci` in contracts/ installs anvil)")?;
        let (a, b) = (devnet.key(1)?.address(), devnet.key(2)?.address());
        let escrow = U256::from(10u64).pow(U256::from(18u64));
        let (user, _) = devnet.user(3, escrow, &[a, b]).await?;
        let mut loaders = Vec::with_capacity(LOADERS);
        for i in 0..LOADERS {
            loaders.push(devnet.user(4 + i, escrow, &[a]).await?.0);
        }
        let provider = devnet.key(1)?;
        let zg_devnet::Market { chain, deployer } = devnet;
        Ok(Setup {
            market: Market {
                contract: deployer.contract_address(),
                chain,
                provider,
                users: Vec::new(),
            },
            reader: deployer,
            user,
            loaders,
        })
    }

    /// A's and B's "bench" services as the registry lists them, once both
    /// brokers have registered.
    async fn services(&self) -> Result<(Service, Service)> {
        let keys = self.market.chain.keys();
        let a = SigningKey::from_bytes(&keys[1])?.address();
        let b = SigningKey::from_bytes(&keys[2])?.address();
        for _ in 0..100 {
            let listed = zg_client::discovery::all_services(&self.reader).await?;
            let of = |p: Address| {
                listed
                    .iter()
                    .find(|s| s.provider == p && s.name == "bench")
                    .cloned()
            };
            if let (Some(a), Some(b)) = (of(a), of(b)) {
                return Ok((a, b));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("the registry never listed both brokers' \"bench\" service")
    }
}

/// `zg-bench broker` for dev account `account` with the "bench" service in
/// front of `upstream`, under the pricing policy above with `floor`, on its
/// own SQLite file; registers itself at http://`listen`.
fn spawn_priced_broker(
    market: &Market,
    dir: &Path,
    name: &str,
    account: usize,
    floor: f64,
    upstream: &str,
    listen: &str,
) -> Result<Guard> {
    let db = dir.join(format!("broker-{name}.db"));
    remove_sqlite(&db);
    let plan = BrokerPlan {
        listen: listen.into(),
        public_url: None,
        replica: None,
        rpc_url: market.chain.url().into(),
        contract: market.contract,
        provider: market.chain.keys()[account],
        signer: None,
        database: format!("sqlite://{}", db.display()),
        stake: "0.1".into(),
        settlement: SettlementPlan::on_demand(),
        services: vec![ServicePlan {
            credit_limit: "1".into(),
            max_output_tokens: 16,
            // Plain chat; nothing to ask the upstream.
            capabilities: Some(Vec::new()),
            ..ServicePlan::chat(
                "bench",
                "bench",
                B256::with_last_byte(1),
                &format!("http://{upstream}/v1"),
            )
        }],
        admin: None,
        fine_tuning: None,
    };
    // The service is the last table, so this section is its own.
    let config = format!(
        "{}\n[services.pricing]\nfloor = {floor:.2}\npeak = {PEAK:.2}\ncapacity = {CAPACITY}\n\
         smoothing_secs = {SMOOTHING_SECS:.1}\nquote_secs = {QUOTE_SECS}\n",
        plan.toml()
    );
    spawn_broker_config(dir, &format!("broker-{name}"), &config, listen)
}

/// The fixed answer of bench/broker/nginx.conf on `addr`, `delay` after
/// each POST (at once for anything else), to any number of requests at a
/// time; serves on the runtime until it stops.
async fn slow_upstream(addr: &str, delay: Duration) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr} for the slow upstream"))?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer_each(stream, delay));
        }
    });
    Ok(())
}

/// The requests of one keep-alive connection, answered in turn.
async fn answer_each(mut stream: tokio::net::TcpStream, delay: Duration) {
    let _ = stream.set_nodelay(true);
    let mut data = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANSWER}",
        ANSWER.len()
    );
    loop {
        let Some(end) = request_end(&data) else {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let post = data.starts_with(b"POST");
        data.drain(..end);
        if post {
            tokio::time::sleep(delay).await;
        }
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Where the first whole request in `data` ends (its body sized by
/// content-length, or chunked), if it is all there.
fn request_end(data: &[u8]) -> Option<usize> {
    let head_end = data.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        let body = &data[head_end..];
        let end = body.windows(5).position(|w| w == b"0\r\n\r\n")? + 5;
        return Some(head_end + end);
    }
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (data.len() >= head_end + len).then_some(head_end + len)
}

/// A payer with its own book in `dir` for each key.
async fn payers(keys: &[SigningKey], dir: &Path, domain: Domain) -> Result<Vec<Payer>> {
    let mut out = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let path = dir.join(format!("direct-{i}-book.sqlite"));
        remove_sqlite(&path);
        let book = Book::open(&path, key.address())
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let ack = AckPolicy::WhenIdle(Duration::from_secs(2));
        out.push(Payer::new(key.clone(), domain, book, ack));
    }
    Ok(out)
}

/// The quotes a request may have gone out under.
type Basis = Vec<Quote>;

/// One direct client of A: a request at a time until `going` turns false.
/// For each, the quotes the payer held just before and just after it (the
/// one it went out under is one of the two: one payer, one request at a
/// time); they are also noted as quoted by A.
async fn load_a(
    payer: Payer,
    a: Service,
    seen: Arc<Mutex<Seen>>,
    going: Arc<AtomicBool>,
) -> Result<Vec<Basis>> {
    let mut sent = Vec::new();
    while going.load(Ordering::Relaxed) {
        let before = payer.quote(&a).await?;
        let answer = payer
            .send(&a, routes::CHAT_COMPLETIONS, BODY.into())
            .await
            .context("a direct request to A")?;
        if answer.status != 200 {
            bail!(
                "A answered a direct request with HTTP {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
        }
        let after = payer.quote(&a).await?;
        let basis: Basis = before.into_iter().chain(after).map(|t| t.quote).collect();
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(a.provider, &basis);
        sent.push(basis);
        if let Err(e) = answer.receipt {
            // Its book holds the refused receipt; this user's tally is
            // off from here, so it sends no more.
            eprintln!("pricing: a direct client refused A's receipt: {e}");
            break;
        }
    }
    Ok(sent)
}

/// Every quote the run saw, per provider.
#[derive(Default, Clone)]
struct Seen(HashMap<Address, Vec<Quote>>);

impl Seen {
    fn note(&mut self, provider: Address, quotes: &[Quote]) {
        let held = self.0.entry(provider).or_default();
        for q in quotes {
            if !held.contains(q) {
                held.push(q.clone());
            }
        }
    }

    fn of(&self, provider: Address) -> Basis {
        self.0.get(&provider).cloned().unwrap_or_default()
    }
}

/// Reads A's and B's quotes every [`OBSERVE_EVERY`] while `going`.
async fn observe(
    http: Payer,
    domain: Domain,
    services: Vec<Service>,
    seen: Arc<Mutex<Seen>>,
    going: Arc<AtomicBool>,
) {
    while going.load(Ordering::Relaxed) {
        for s in &services {
            if let Ok(Some(t)) = fetch_quote(http.http(), &domain, s).await {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .note(s.provider, &[t.quote]);
            }
        }
        tokio::time::sleep(OBSERVE_EVERY).await;
    }
}

/// The base tier of `service`'s quote now (what a short request pays).
async fn base_prices(http: &Payer, domain: Domain, service: &Service) -> Result<Prices> {
    let taken = fetch_quote(http.http(), &domain, service)
        .await?
        .with_context(|| format!("{} serves no quote", service.url))?;
    taken
        .quote
        .tiers
        .first()
        .map(|t| t.prices)
        .context("a quote without its base tier")
}

/// Whether a receipt's prices are within its provider's ceilings and the
/// prices of at least one of the quotes `quotes(provider)` for its answer
/// (a quoteless provider is held to the ceilings alone).
fn fair(
    r: &Receipt,
    ceilings: &HashMap<Address, Prices>,
    quotes: impl Fn(Address) -> Basis,
) -> bool {
    let charged = Prices::new(r.input_price, r.output_price).with_cached(r.cached_price);
    let Some(ceiling) = ceilings.get(&r.provider) else {
        return false;
    };
    let quotes = quotes(r.provider);
    let prompt = r.input_tokens.saturating_to::<u64>();
    charged.within(ceiling)
        && (quotes.is_empty()
            || quotes.iter().any(|q| {
                q.prices_for(prompt, q.requested_output(Some(ASKED_OUTPUT)))
                    .is_some_and(|p| charged.within(&p))
            }))
}

/// A book's receipts, oldest first; there must be `expected` (one per answer).
async fn rows(book: &Book, expected: usize) -> Result<Vec<ReceiptRecord>> {
    let mut rows = book
        .receipts(None, false, u32::MAX)
        .await
        .with_context(|| format!("reading the receipts of {}", book.path().display()))?;
    rows.reverse();
    if rows.len() != expected {
        bail!(
            "{} holds {} receipts for {expected} answers",
            book.path().display(),
            rows.len()
        );
    }
    Ok(rows)
}

/// `n` chat requests through the gateway, one after another; the provider
/// that answered each (the gateway's `x-zg-provider`).
fn gateway_requests(n: usize) -> Result<Vec<Address>> {
    (0..n)
        .map(|i| through_gateway().with_context(|| format!("gateway request {i}")))
        .collect()
}

fn through_gateway() -> Result<Address> {
    let (head, text) = exchange(&plain_request(GATEWAY, &[("connection", "close".into())]))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("the gateway answered {}", &text[..text.len().min(600)]);
    }
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-zg-provider")
                .then(|| value.trim().to_owned())
        })
        .context("the gateway's answer names no provider (x-zg-provider)")?
        .parse()
        .context("x-zg-provider is not an address")
}

/// The gateway's view of each provider (`/zg/providers`: measured latency,
/// failures), as it sends it.
fn standings() -> Result<String> {
    let get = format!("GET /zg/providers HTTP/1.1\r\nhost: {GATEWAY}\r\nconnection: close\r\n\r\n");
    let (_, text) = exchange(get.as_bytes())?;
    Ok(text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

/// Sends one request to the gateway on a connection of its own; the
/// answer's head and the whole answer.
fn exchange(request: &[u8]) -> Result<(String, String)> {
    let mut stream =
        TcpStream::connect(GATEWAY).with_context(|| format!("connecting to {GATEWAY}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request)?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    Ok((head, text))
}

fn count(answered: &[Address], provider: Address) -> usize {
    answered.iter().filter(|p| **p == provider).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use zg_core::{Tier, keccak256};

    fn prices(input: u64, output: u64) -> Prices {
        Prices::new(U256::from(input), U256::from(output)).with_cached(U256::from(input))
    }

    fn quote(input: u64, output: u64) -> Quote {
        Quote {
            provider: Address::repeat_byte(1),
            service: keccak256("bench"),
            issued_at: 0,
            valid_until: 6,
            max_output_tokens: 16,
            tiers: vec![Tier {
                min_prompt_tokens: 0,
                min_output_tokens: 0,
                prices: prices(input, output),
            }],
        }
    }

    fn receipt(input: u64, output: u64) -> Receipt {
        Receipt {
            user: Address::repeat_byte(2),
            provider: Address::repeat_byte(1),
            service: keccak256("bench"),
            model_digest: B256::with_last_byte(1),
            request_digest: keccak256("r"),
            response_digest: keccak256("a"),
            input_tokens: U256::from(10u64),
            output_tokens: U256::from(5u64),
            cached_tokens: U256::ZERO,
            input_price: U256::from(input),
            output_price: U256::from(output),
            cached_price: U256::from(input),
            fee: U256::from(10 * input + 5 * output),
            owed: U256::from(10 * input + 5 * output),
            proof_digest: keccak256("p"),
            issued_at: 0,
        }
    }

    #[test]
    fn a_receipt_above_every_quote_or_the_ceiling_is_overcharged() {
        let ceilings = [(Address::repeat_byte(1), prices(100, 200))].into();
        let quotes = |_| vec![quote(50, 100), quote(75, 150)];
        assert!(fair(&receipt(50, 100), &ceilings, quotes));
        // Above the first quote, within the second: one of them was it.
        assert!(fair(&receipt(75, 150), &ceilings, quotes));
        assert!(!fair(&receipt(80, 150), &ceilings, quotes));
        assert!(!fair(&receipt(75, 160), &ceilings, quotes));
        // Without quotes, the ceilings alone.
        assert!(fair(&receipt(100, 200), &ceilings, |_| Vec::new()));
        assert!(!fair(&receipt(101, 200), &ceilings, |_| Vec::new()));
        // A provider the run did not start is never fair.
        let other = [(Address::repeat_byte(3), prices(100, 200))].into();
        assert!(!fair(&receipt(50, 100), &other, quotes));
    }
}
