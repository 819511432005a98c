//! The load generator of `make bench-broker` (docs/bench-broker.md).
//!
//! `bench_broker broker --config FILE` runs the broker (the same code as
//! `zg-serving provider serve`, without the engine linked in).
//! `bench_broker run --dir DIR` does the whole benchmark: the floor (one
//! voucher recovery and one receipt signing on one core), nginx direct, the
//! broker on SQLite and on PostgreSQL, and LiteLLM's proxy when
//! `bench/broker/.venv/bin/litellm` exists. Every broker request carries its
//! own voucher, all signed before the timed part, spread over many users.
//! The client is a raw HTTP/1.1 loop over keep-alive connections so that
//! it costs the measured processes as little CPU as possible.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use zg_chain::{ChainClient, DeployParams, DevChain, DevChainOptions};
use zg_core::{
    Domain, Nonce, PaymentHeaders, Receipt, SigningKey, U256, Voucher, keccak256, request_digest,
};

const UPSTREAM: &str = "127.0.0.1:18181";
const BODY: &str =
    r#"{"model":"bench","messages":[{"role":"user","content":"Hello"}],"max_tokens":16}"#;
/// The nginx answer's usage (10 in, 5 out) at 1e9 / 2e9 neuron per token.
const FEE: u64 = 10 * 1_000_000_000 + 5 * 2_000_000_000;
const USERS: usize = 32;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    match args.get(1).map(String::as_str) {
        Some("broker") => {
            let config =
                zg_provider::Config::load(Path::new(&flag("--config").ok_or("--config FILE")?))?;
            tokio::runtime::Runtime::new()?.block_on(async {
                zg_provider::serve_until(config, async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
            })?;
            Ok(())
        }
        Some("run") => run(&PathBuf::from(
            flag("--dir").unwrap_or_else(|| "bench/broker/run".into()),
        )),
        _ => Err("usage: bench_broker run --dir DIR | broker --config FILE".into()),
    }
}

struct Stats {
    rps: f64,
    p50: u64,
    p99: u64,
}

fn line(name: &str, c: usize, s: &Stats, cpu: Option<f64>) -> String {
    let mut out = format!(
        "{name} c={c} rps={:.0} p50_us={} p99_us={}",
        s.rps, s.p50, s.p99
    );
    if let Some(cpu) = cpu {
        out.push_str(&format!(" cpu_us_per_req={cpu:.0}"));
    }
    println!("{out}");
    out
}

fn run(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("tmp"))?;
    let dir = dir.canonicalize()?;
    let mut lines = Vec::new();

    // The floor: one recovery and one signing, on this one thread.
    let key = SigningKey::random();
    let domain = Domain::new(31337, zg_core::Address::repeat_byte(1));
    let receipt = Receipt {
        user: key.address(),
        provider: key.address(),
        service: keccak256("s"),
        model_digest: keccak256("m"),
        request_digest: keccak256("r"),
        response_digest: keccak256("a"),
        input_tokens: U256::from(10u64),
        output_tokens: U256::from(5u64),
        input_price: U256::from(1u64),
        output_price: U256::from(2u64),
        fee: U256::from(20u64),
        owed: U256::from(20u64),
    };
    let n = 5000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(receipt.sign(&key, &domain));
    }
    let sign_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let voucher = Voucher {
        user: key.address(),
        provider: key.address(),
        cumulative: U256::from(5u64),
        request_digest: keccak256("x"),
    };
    let sig = voucher.sign(&key, &domain);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(voucher.signer(&sig, &domain)?);
    }
    let recover_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let floor = format!("floor sign_us={sign_us:.0} recover_us={recover_us:.0}");
    println!("{floor}");
    lines.push(floor);

    let _nginx = Guard(
        Command::new(which("nginx", &["/usr/sbin/nginx"])?)
            .args(["-p", dir.to_str().ok_or("dir")?, "-c"])
            .arg(std::env::current_dir()?.join("bench/broker/nginx.conf"))
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    wait_port(UPSTREAM)?;
    let direct = load(UPSTREAM, 1, 20_000, |_, _| plain_request(UPSTREAM, &[]))?;
    lines.push(line("direct", 1, &direct, None));

    let rt = tokio::runtime::Runtime::new()?;
    let (chain, contract, provider, users) = rt.block_on(setup_chain())?;
    let chain_domain = Domain::new(chain.chain_id(), contract);

    let exe = std::env::current_exe()?;
    let sqlite = format!("sqlite://{}", dir.join("broker.db").display());
    let _ = std::fs::remove_file(dir.join("broker.db"));
    let broker_addr = "127.0.0.1:18182";
    let broker = spawn_broker(
        &exe,
        &dir,
        "sqlite",
        &chain,
        contract,
        &provider,
        &sqlite,
        broker_addr,
    )?;
    let mut counters = vec![0u64; USERS];
    let c1 = 3000;
    let reqs = presign(
        &users,
        &mut counters,
        1,
        c1,
        &chain_domain,
        provider.address(),
        broker_addr,
    );
    let s1 = load(broker_addr, 1, c1, |conn, i| reqs[conn][i].clone())?;
    lines.push(line("broker", 1, &s1, None));
    let per_conn = 2000;
    let reqs = presign(
        &users,
        &mut counters,
        16,
        per_conn,
        &chain_domain,
        provider.address(),
        broker_addr,
    );
    let cpu0 = cpu_us(broker.0.id());
    let s16 = load(broker_addr, 16, per_conn, |conn, i| reqs[conn][i].clone())?;
    let broker_cpu = (cpu_us(broker.0.id()) - cpu0) / (16 * per_conn) as f64;
    lines.push(line("broker", 16, &s16, Some(broker_cpu)));
    drop(broker);

    // The same on PostgreSQL, in a fresh database.
    let db = format!("zgbench_{}", hex::encode(rand::random::<[u8; 4]>()));
    psql(&format!("CREATE DATABASE {db}"))?;
    let pg_addr = "127.0.0.1:18183";
    let pg = spawn_broker(
        &exe,
        &dir,
        "pg",
        &chain,
        contract,
        &provider,
        &format!("postgres://postgres@127.0.0.1:5432/{db}"),
        pg_addr,
    )?;
    let mut pg_counters = vec![0u64; USERS];
    let reqs = presign(
        &users,
        &mut pg_counters,
        16,
        per_conn,
        &chain_domain,
        provider.address(),
        pg_addr,
    );
    let cpu0 = cpu_us(pg.0.id());
    let spg = load(pg_addr, 16, per_conn, |conn, i| reqs[conn][i].clone())?;
    let pg_cpu = (cpu_us(pg.0.id()) - cpu0) / (16 * per_conn) as f64;
    lines.push(line("broker_pg", 16, &spg, Some(pg_cpu)));
    drop(pg);
    let _ = psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));

    // LiteLLM's proxy, one worker, when its venv is there.
    let litellm = std::env::current_dir()?.join("bench/broker/.venv/bin/litellm");
    let mut litellm_cpu = None;
    if litellm.is_file() {
        let addr = "127.0.0.1:18184";
        let child = Guard(
            Command::new(&litellm)
                .args([
                    "--config",
                    "bench/broker/litellm.yaml",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "18184",
                    "--num_workers",
                    "1",
                ])
                .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                .env("LITELLM_MASTER_KEY", "sk-bench")
                .env("LITELLM_LOG", "ERROR")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        wait_http(addr, "/health/liveliness", Duration::from_secs(180))?;
        let auth = [("authorization", "Bearer sk-bench".to_string())];
        let warm = load(addr, 1, 50, |_, _| plain_request(addr, &auth))?;
        let _ = warm;
        let l1 = load(addr, 1, 300, |_, _| plain_request(addr, &auth))?;
        lines.push(line("litellm", 1, &l1, None));
        let per = 100;
        let cpu0 = tree_cpu_us(child.0.id());
        let l16 = load(addr, 16, per, |_, _| plain_request(addr, &auth))?;
        let cpu = (tree_cpu_us(child.0.id()) - cpu0) / (16 * per) as f64;
        litellm_cpu = Some(cpu);
        lines.push(line("litellm", 16, &l16, Some(cpu)));
    } else {
        println!(
            "litellm: skipped ({} missing; `make bench-broker` installs it)",
            litellm.display()
        );
    }
    let overhead = format!(
        "overhead p50_us={} p99_us={} cpu_vs_floor={:.2} cpu_vs_litellm={}",
        s1.p50 as i64 - direct.p50 as i64,
        s1.p99 as i64 - direct.p99 as i64,
        broker_cpu / (sign_us + recover_us),
        litellm_cpu.map_or("n/a".into(), |l| format!("{:.1}", l / broker_cpu))
    );
    println!("{overhead}");
    lines.push(overhead);
    std::fs::write(dir.join("results.txt"), lines.join("\n") + "\n")?;
    drop(chain);
    Ok(())
}

async fn setup_chain() -> Result<(DevChain, zg_core::Address, SigningKey, Vec<SigningKey>)> {
    let chain = DevChain::start_with(DevChainOptions {
        accounts: 2,
        ..Default::default()
    })
    .await?;
    let deployer =
        ChainClient::deploy(chain.url(), &chain.keys()[0], DeployParams::default()).await?;
    let provider = SigningKey::from_bytes(&chain.keys()[1])?;
    let mut users = Vec::new();
    let escrow = U256::from(100u64) * U256::from(10u64).pow(U256::from(18u64));
    for _ in 0..USERS {
        let key = SigningKey::random();
        chain
            .set_balance(key.address(), escrow * U256::from(2u64))
            .await?;
        let client = deployer.with_key(&key.to_bytes())?;
        client.deposit(escrow).await?;
        client.fund(provider.address(), escrow).await?;
        users.push(key);
    }
    Ok((chain, deployer.contract_address(), provider, users))
}

#[allow(clippy::too_many_arguments)]
fn spawn_broker(
    exe: &Path,
    dir: &Path,
    name: &str,
    chain: &DevChain,
    contract: zg_core::Address,
    provider: &SigningKey,
    db: &str,
    listen: &str,
) -> Result<Guard> {
    let config = format!(
        r#"listen = "{listen}"
replica = "{name}"
stake = "0.1"
[chain]
rpc_url = "{rpc}"
contract = "{contract}"
[keys]
provider = "{key}"
[database]
url = "{db}"
[settlement]
interval_secs = 100000
threshold = "1000"
[[services]]
name = "bench"
kind = "chat"
model = "bench"
model_digest = "0x0000000000000000000000000000000000000000000000000000000000000001"
upstream = "http://{UPSTREAM}/v1"
input_price = "0.000000001"
output_price = "0.000000002"
credit_limit = "1"
max_output_tokens = 16
"#,
        rpc = chain.url(),
        key = provider.to_bytes(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config)?;
    let child = Command::new(exe)
        .args(["broker", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .spawn()?;
    let guard = Guard(child);
    wait_http(listen, "/health", Duration::from_secs(60))?;
    Ok(guard)
}

/// `per_conn` requests for each of `conns` connections; connection k pays
/// for users k, k+conns, ... in turn, so each user's vouchers go out in order
/// and each covers exactly the fees before it.
fn presign(
    users: &[SigningKey],
    counters: &mut [u64],
    conns: usize,
    per_conn: usize,
    domain: &Domain,
    provider: zg_core::Address,
    addr: &str,
) -> Vec<Vec<Vec<u8>>> {
    (0..conns)
        .map(|conn| {
            let mine: Vec<usize> = (conn..users.len()).step_by(conns).collect();
            (0..per_conn)
                .map(|i| {
                    let u = mine[i % mine.len()];
                    let cumulative = U256::from(counters[u] * FEE);
                    counters[u] += 1;
                    let nonce = Nonce::random();
                    let voucher = Voucher {
                        user: users[u].address(),
                        provider,
                        cumulative,
                        request_digest: request_digest(&nonce, BODY.as_bytes()),
                    };
                    let headers = PaymentHeaders {
                        user: users[u].address(),
                        cumulative,
                        nonce,
                        signature: voucher.sign(&users[u], domain),
                    };
                    let extra: Vec<(&str, String)> = headers.encode().into_iter().collect();
                    plain_request(addr, &extra)
                })
                .collect()
        })
        .collect()
}

fn plain_request(host: &str, headers: &[(&str, String)]) -> Vec<u8> {
    let mut req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        BODY.len()
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(BODY);
    req.into_bytes()
}

/// Sends `per_conn` requests on each of `conns` keep-alive connections.
fn load(
    addr: &str,
    conns: usize,
    per_conn: usize,
    make: impl Fn(usize, usize) -> Vec<u8> + Sync,
) -> Result<Stats> {
    let start = Instant::now();
    let results: Vec<Result<Vec<u32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|conn| {
                let make = &make;
                s.spawn(move || -> Result<Vec<u32>> {
                    let mut stream = TcpStream::connect(addr)?;
                    stream.set_nodelay(true)?;
                    let mut lat = Vec::with_capacity(per_conn);
                    let mut buf = vec![0u8; 64 * 1024];
                    for i in 0..per_conn {
                        let req = make(conn, i);
                        let t = Instant::now();
                        stream.write_all(&req)?;
                        let status = read_response(&mut stream, &mut buf)?;
                        if status != 200 {
                            return Err(format!(
                                "{addr}: status {status}: {}",
                                String::from_utf8_lossy(&buf[..buf.len().min(400)])
                            )
                            .into());
                        }
                        lat.push(t.elapsed().as_micros() as u32);
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("load thread panicked".into()))
            })
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as u64;
    Ok(Stats {
        rps: all.len() as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

/// Reads one HTTP/1.1 response (content-length or chunked); returns its status.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16> {
    let mut data: Vec<u8> = Vec::with_capacity(2048);
    let header_end = loop {
        let n = stream.read(buf)?;
        if n == 0 {
            return Err("connection closed".into());
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..header_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        while data.len() < header_end + len {
            let n = stream.read(buf)?;
            if n == 0 {
                return Err("connection closed mid-body".into());
            }
            data.extend_from_slice(&buf[..n]);
        }
    } else if head.contains("transfer-encoding: chunked") {
        while !data[header_end..].ends_with(b"0\r\n\r\n") {
            let n = stream.read(buf)?;
            if n == 0 {
                return Err("connection closed mid-body".into());
            }
            data.extend_from_slice(&buf[..n]);
        }
    }
    if status != 200 {
        buf.clear();
        buf.extend_from_slice(&data);
        buf.resize(64 * 1024, 0);
    }
    Ok(status)
}

/// utime + stime of one process, in microseconds.
fn cpu_us(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    ticks as f64 * 1e6 / 100.0
}

/// utime + stime of a process and all its descendants (LiteLLM's workers).
fn tree_cpu_us(root: u32) -> f64 {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                });
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree.iter().map(|p| cpu_us(*p)).sum()
}

fn psql(sql: &str) -> Result<()> {
    let status = Command::new("psql")
        .args([
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-c",
            sql,
        ])
        .status()?;
    if !status.success() {
        return Err(format!("psql {sql:?} failed").into());
    }
    Ok(())
}

fn which(name: &str, fallbacks: &[&str]) -> Result<PathBuf> {
    for f in fallbacks {
        if Path::new(f).is_file() {
            return Ok(PathBuf::from(f));
        }
    }
    Ok(PathBuf::from(name))
}

fn wait_port(addr: &str) -> Result<()> {
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("nothing listens on {addr}").into())
}

fn wait_http(addr: &str, path: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
            let mut out = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut out).is_ok()
                && out.starts_with("HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("{addr} never answered {path} with 200").into())
}

/// Kills its child on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master takes its workers down with it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..40 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
