//! `zg-bench run-gateway` (`make bench-gateway`, docs/bench-gateway.md): the
//! same nginx upstream and broker, once paid straight with vouchers signed
//! before the timed part and once through the user's gateway, which signs
//! every voucher and checks every receipt itself; latency at one
//! connection, CPU per request of each one's process at sixteen.
//! `zg-bench gateway` is the gateway itself, in its own process.

use crate::{
    fixture::{
        Market, USERS, Vouchers, remove_sqlite, run_dir, spawn_broker, spawn_gateway, start_nginx,
    },
    load::{Stats, load, load_cpu, plain_request},
    report::Report,
};
use anyhow::{Context, Result, bail};
use std::{path::Path, time::Duration};
use zg_chain::ChainClient;
use zg_client::{AckPolicy, Book, Payer};
use zg_core::{Address, SigningKey};
use zg_gateway::{Gateway, GatewayConfig};

const BROKER: &str = "127.0.0.1:18182";
const GATEWAY: &str = "127.0.0.1:18185";
/// Requests before the timed parts (connection pools, the routing's first
/// latency sample, the SQLite caches).
const WARM: usize = 200;
const C1: usize = 3000;
const PER_CONN: usize = 1000;

/// What `zg-bench gateway` needs; the rest is the default GatewayConfig
/// (no API keys, no top-up), as `zg-serving gateway` with no flags.
pub(crate) struct GatewayArgs {
    pub rpc: String,
    pub contract: Address,
    pub key: SigningKey,
    pub book: std::path::PathBuf,
    pub listen: String,
}

/// Runs the gateway until killed, built as `zg-serving gateway` builds it.
pub(crate) fn serve(args: GatewayArgs) -> Result<()> {
    zg_gateway::runtime()
        .context("could not start the async runtime")?
        .block_on(serve_async(args))
}

async fn serve_async(args: GatewayArgs) -> Result<()> {
    let chain = ChainClient::connect(&args.rpc, args.contract, &args.key.to_bytes())
        .await
        .with_context(|| format!("connecting to {}", args.rpc))?;
    let book = Book::open(&args.book, args.key.address())
        .await
        .with_context(|| format!("opening the book {}", args.book.display()))?;
    // The CLI's default: acknowledge after 2 s without requests.
    let ack = AckPolicy::WhenIdle(Duration::from_secs(2));
    let payer = Payer::new(args.key, chain.domain(), book, ack);
    let gateway = Gateway::new(payer, chain, GatewayConfig::default())
        .await
        .context("starting the gateway")?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    gateway.serve(listener).await.context("the gateway stopped")
}

/// The whole gateway benchmark; its lines go to stdout and `dir/results.txt`.
pub(crate) fn run(dir: &Path) -> Result<()> {
    let dir = run_dir(dir)?;
    let _nginx = start_nginx(&dir)?;
    let rt = tokio::runtime::Runtime::new().context("could not start the async runtime")?;
    // The broker's users, and one more for the gateway.
    let mut market = rt.block_on(Market::start(USERS + 1))?;
    let user = market.users.pop().context("no gateway user")?;

    let db = dir.join("broker.db");
    remove_sqlite(&db);
    let broker = spawn_broker(
        &market,
        &dir,
        "sqlite",
        &format!("sqlite://{}", db.display()),
        BROKER,
    )?;
    let book = dir.join("gateway-book.sqlite");
    remove_sqlite(&book);
    let gateway = spawn_gateway(&market, &user, &book, GATEWAY)?;

    let mut vouchers = Vouchers::new(&market);
    let through = |_: usize, _: usize| plain_request(GATEWAY, &[]);

    load(BROKER, 1, WARM, straight(&mut vouchers, 1, WARM))?;
    load(GATEWAY, 1, WARM, through)?;
    let b1 = load(BROKER, 1, C1, straight(&mut vouchers, 1, C1))?;
    let g1 = load(GATEWAY, 1, C1, through)?;
    let mut report = Report::default();
    report.push(latency_line("broker", &b1));
    report.push(latency_line("gateway", &g1));

    let reqs = straight(&mut vouchers, 16, PER_CONN);
    let (b16, broker_cpu) = load_cpu(|| broker.cpu_us(), BROKER, 16, PER_CONN, reqs)?;
    report.push(cpu_line("broker", &b16, broker_cpu));
    let (g16, gateway_cpu) = load_cpu(|| gateway.cpu_us(), GATEWAY, 16, PER_CONN, through)?;
    report.push(cpu_line("gateway", &g16, gateway_cpu));
    report.push(format!(
        "overhead p50_us={} cpu_ratio={:.2}",
        g1.p50 as i64 - b1.p50 as i64,
        gateway_cpu / broker_cpu
    ));
    report.write(&dir)?;

    // The gateway's book is closed once it stops; then every answer must
    // have left a paid receipt.
    drop(gateway);
    let paid = rt.block_on(paid_receipts(&book, user.address()))?;
    println!("gateway receipts_paid={paid}");
    let sent = WARM + C1 + 16 * PER_CONN;
    if paid != sent {
        bail!("the gateway answered {sent} requests but its book holds {paid} paid receipts");
    }
    drop(broker);
    Ok(())
}

/// Requests straight to the broker, each with its own voucher signed now.
fn straight(
    vouchers: &mut Vouchers,
    conns: usize,
    per_conn: usize,
) -> impl Fn(usize, usize) -> Vec<u8> + Sync + use<> {
    let reqs = vouchers.presign(conns, per_conn, BROKER);
    move |conn, i| reqs[conn][i].clone()
}

fn latency_line(name: &str, s: &Stats) -> String {
    format!("{name} c=1 p50_us={} p99_us={}", s.p50, s.p99)
}

fn cpu_line(name: &str, s: &Stats, cpu: f64) -> String {
    format!("{name} c=16 rps={:.0} cpu_us_per_req={cpu:.0}", s.rps)
}

/// Paid receipts in the book at `path` for `user`.
async fn paid_receipts(path: &Path, user: Address) -> Result<usize> {
    let book = Book::open(path, user)
        .await
        .with_context(|| format!("opening the gateway's book {}", path.display()))?;
    let receipts = book
        .receipts(None, false, u32::MAX)
        .await
        .context("reading the gateway's receipts")?;
    Ok(receipts.iter().filter(|r| r.status == "paid").count())
}
