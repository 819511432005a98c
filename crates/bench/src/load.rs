//! The load generator: a raw HTTP/1.1 loop over keep-alive connections, one
//! thread each, so that the client costs the measured processes as little
//! CPU as possible; latency percentiles over every request.

use anyhow::{Context, Result, anyhow, bail};
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Instant,
};

/// The one chat request of every benchmark.
pub(crate) const BODY: &str =
    r#"{"model":"bench","messages":[{"role":"user","content":"Hello"}],"max_tokens":16}"#;

/// One load run: requests per second and latency percentiles in µs.
pub(crate) struct Stats {
    pub rps: f64,
    pub p50: u64,
    pub p99: u64,
}

/// `POST /v1/chat/completions` with [`BODY`] and `headers`, as raw bytes.
pub(crate) fn plain_request(host: &str, headers: &[(&str, String)]) -> Vec<u8> {
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

/// Sends `per_conn` requests on each of `conns` keep-alive connections;
/// `make(conn, i)` builds the i-th request of connection `conn`. Fails on
/// the first answer that is not 200.
pub(crate) fn load(
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
                s.spawn(move || connection(addr, per_conn, |i| make(conn, i)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("load thread panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    stats(all, elapsed)
}

/// [`load`], and the CPU the measured processes spent on it per request
/// (`cpu` reads their utime + stime in µs).
pub(crate) fn load_cpu(
    cpu: impl Fn() -> f64,
    addr: &str,
    conns: usize,
    per_conn: usize,
    make: impl Fn(usize, usize) -> Vec<u8> + Sync,
) -> Result<(Stats, f64)> {
    let cpu0 = cpu();
    let stats = load(addr, conns, per_conn, make)?;
    let per_req = (cpu() - cpu0) / (conns * per_conn) as f64;
    Ok((stats, per_req))
}

/// One connection's requests, one after another; their latencies in µs.
fn connection(addr: &str, n: usize, make: impl Fn(usize) -> Vec<u8>) -> Result<Vec<u32>> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut lat = Vec::with_capacity(n);
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..n {
        let req = make(i);
        let t = Instant::now();
        stream
            .write_all(&req)
            .with_context(|| format!("sending to {addr}"))?;
        read_ok(&mut stream, &mut buf).with_context(|| format!("answer {i} from {addr}"))?;
        lat.push(t.elapsed().as_micros() as u32);
    }
    Ok(lat)
}

fn stats(mut all: Vec<u32>, elapsed: f64) -> Result<Stats> {
    if all.is_empty() {
        bail!("no requests were sent");
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as u64;
    Ok(Stats {
        rps: all.len() as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

/// Reads one HTTP/1.1 response (content-length or chunked); fails with
/// its status and start when that is not 200.
fn read_ok(stream: &mut TcpStream, buf: &mut [u8]) -> Result<()> {
    let mut data: Vec<u8> = Vec::with_capacity(2048);
    let header_end = loop {
        read_more(stream, buf, &mut data, "connection closed")?;
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
            read_more(stream, buf, &mut data, "connection closed mid-body")?;
        }
    } else if head.contains("transfer-encoding: chunked") {
        while !data[header_end..].ends_with(b"0\r\n\r\n") {
            read_more(stream, buf, &mut data, "connection closed mid-body")?;
        }
    }
    if status != 200 {
        bail!(
            "status {status}: {}",
            String::from_utf8_lossy(&data[..data.len().min(600)])
        );
    }
    Ok(())
}

/// Appends what the next read brings to `data`; `closed` when the peer left.
fn read_more(
    stream: &mut TcpStream,
    buf: &mut [u8],
    data: &mut Vec<u8>,
    closed: &str,
) -> Result<()> {
    let n = stream.read(buf)?;
    if n == 0 {
        bail!("{closed}");
    }
    data.extend_from_slice(&buf[..n]);
    Ok(())
}
