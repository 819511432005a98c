//! `zg-bench run-broker` (`make bench-broker`, docs/bench-broker.md): the
//! floor (one voucher recovery and one receipt signing on one core), nginx
//! direct, the broker on SQLite and on PostgreSQL, and LiteLLM's proxy when
//! `bench/broker/.venv/bin/litellm` exists. Every broker request carries its
//! own voucher, all signed before the timed part, spread over many users.
//! `zg-bench broker` is the broker itself (the same code as `zg-serving
//! provider serve`, without the engine linked in).

use crate::{
    fixture::{
        Market, UPSTREAM, USERS, Vouchers, remove_sqlite, run_dir, spawn_broker, start_nginx,
    },
    load::{load, load_cpu, plain_request},
    procs::{Guard, psql, tree_cpu_us, wait_http},
    report::Report,
};
use anyhow::{Context, Result};
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};
use zg_core::{Domain, Receipt, SigningKey, U256, Voucher, keccak256};

/// Runs the broker of `config` until Ctrl-C or SIGTERM kills it.
pub(crate) fn serve(config: &Path) -> Result<()> {
    let config = zg_provider::Config::load(config)?;
    tokio::runtime::Runtime::new()
        .context("could not start the async runtime")?
        .block_on(zg_provider::serve_until(config, async {
            let _ = tokio::signal::ctrl_c().await;
        }))?;
    Ok(())
}

/// The whole broker benchmark; its lines go to stdout and `dir/results.txt`.
pub(crate) fn run(dir: &Path) -> Result<()> {
    let dir = run_dir(dir)?;
    let mut report = Report::default();
    let (sign_us, recover_us) = floor()?;
    report.push(format!(
        "floor sign_us={sign_us:.0} recover_us={recover_us:.0}"
    ));

    let _nginx = start_nginx(&dir)?;
    let direct = load(UPSTREAM, 1, 20_000, |_, _| plain_request(UPSTREAM, &[]))?;
    report.full("direct", 1, &direct, None);

    let rt = tokio::runtime::Runtime::new().context("could not start the async runtime")?;
    let market = rt.block_on(Market::start(USERS))?;

    let db = dir.join("broker.db");
    remove_sqlite(&db);
    let broker_addr = "127.0.0.1:18182";
    let broker = spawn_broker(
        &market,
        &dir,
        "sqlite",
        &format!("sqlite://{}", db.display()),
        broker_addr,
    )?;
    let mut vouchers = Vouchers::new(&market);
    let c1 = 3000;
    let reqs = vouchers.presign(1, c1, broker_addr);
    let s1 = load(broker_addr, 1, c1, |conn, i| reqs[conn][i].clone())?;
    report.full("broker", 1, &s1, None);
    let per_conn = 2000;
    let reqs = vouchers.presign(16, per_conn, broker_addr);
    let (s16, broker_cpu) = load_cpu(
        || broker.cpu_us(),
        broker_addr,
        16,
        per_conn,
        |conn, i| reqs[conn][i].clone(),
    )?;
    report.full("broker", 16, &s16, Some(broker_cpu));
    drop(broker);

    postgres(&market, &dir, per_conn, &mut report)?;
    let litellm_cpu = litellm(&mut report)?;
    report.push(format!(
        "overhead p50_us={} p99_us={} cpu_vs_floor={:.2} cpu_vs_litellm={}",
        s1.p50 as i64 - direct.p50 as i64,
        s1.p99 as i64 - direct.p99 as i64,
        broker_cpu / (sign_us + recover_us),
        litellm_cpu.map_or("n/a".into(), |l| format!("{:.1}", l / broker_cpu))
    ));
    report.write(&dir)?;
    drop(market);
    Ok(())
}

/// µs per receipt signing and per voucher recovery, on this one thread.
fn floor() -> Result<(f64, f64)> {
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
        cached_tokens: U256::ZERO,
        cached_price: U256::ZERO,
        fee: U256::from(20u64),
        owed: U256::from(20u64),
        proof_digest: keccak256("p"),
        issued_at: 0,
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
    Ok((sign_us, recover_us))
}

/// The broker on PostgreSQL at c=16, in a fresh database dropped afterwards.
fn postgres(market: &Market, dir: &Path, per_conn: usize, report: &mut Report) -> Result<()> {
    let db = format!("zgbench_{}", hex::encode(rand::random::<[u8; 4]>()));
    psql(&format!("CREATE DATABASE {db}"))?;
    let pg_addr = "127.0.0.1:18183";
    let pg = spawn_broker(
        market,
        dir,
        "pg",
        &format!("postgres://postgres@127.0.0.1:5432/{db}"),
        pg_addr,
    )?;
    // A fresh database knows no earlier vouchers: start every user at 0.
    let reqs = Vouchers::new(market).presign(16, per_conn, pg_addr);
    let (spg, pg_cpu) = load_cpu(
        || pg.cpu_us(),
        pg_addr,
        16,
        per_conn,
        |conn, i| reqs[conn][i].clone(),
    )?;
    report.full("broker_pg", 16, &spg, Some(pg_cpu));
    drop(pg);
    let _ = psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    Ok(())
}

/// LiteLLM's proxy with one worker, when its venv is there; its CPU per
/// request at c=16 (the whole process tree).
fn litellm(report: &mut Report) -> Result<Option<f64>> {
    let litellm = std::env::current_dir()?.join("bench/broker/.venv/bin/litellm");
    if !litellm.is_file() {
        println!(
            "litellm: skipped ({} missing; `make bench-broker` installs it)",
            litellm.display()
        );
        return Ok(None);
    }
    let addr = "127.0.0.1:18184";
    let child = Guard::spawn(
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
            .stderr(Stdio::null()),
        "LiteLLM",
    )?;
    wait_http(addr, "/health/liveliness", Duration::from_secs(180))?;
    let auth = [("authorization", "Bearer sk-bench".to_string())];
    load(addr, 1, 50, |_, _| plain_request(addr, &auth))?;
    let l1 = load(addr, 1, 300, |_, _| plain_request(addr, &auth))?;
    report.full("litellm", 1, &l1, None);
    let pid = child.pid();
    let (l16, cpu) = load_cpu(
        || tree_cpu_us(pid),
        addr,
        16,
        100,
        |_, _| plain_request(addr, &auth),
    )?;
    report.full("litellm", 16, &l16, Some(cpu));
    Ok(Some(cpu))
}
