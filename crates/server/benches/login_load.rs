//! Login load: starts the release `fiche serve` as a child process on loopback
//! (SQLite in a temp dir), then sends `POST /api/login` with the right password
//! from concurrent clients, and reports logins per second, latency percentiles,
//! the answers counted by status (a 503, when the password workers' queue is full,
//! is retried after its `Retry-After`), and the server's resident memory before
//! and after. Each login is one argon2id
//! check (19 MiB, two passes), so memory is what this bench watches.
//!
//! `cargo build --release -p fiche-server && cargo bench -p fiche-server --bench login_load`
//! Settings: `LOGIN_BENCH_LOGINS` (default 1000), `LOGIN_BENCH_CLIENTS` (default 50),
//! `FICHE_BIN` (default target/release/fiche).

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{env_number, percentile, Usage, Workdir, ADMIN_PASSWORD};

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let logins = env_number("LOGIN_BENCH_LOGINS", 1000).max(1);
    let clients = env_number("LOGIN_BENCH_CLIENTS", 50).max(1);
    let server = Workdir::new()?.serve(&[])?;
    let port = server.wait_for_port()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(load(server.pid(), port, logins, clients))
}

/// Resident memory now and at its peak, in MiB, and the thread count, of `pid`.
fn memory(pid: u32) -> anyhow::Result<(f64, f64, usize)> {
    let usage = Usage::of(pid)?;
    Ok((usage.rss_mib(), usage.peak_mib(), usage.threads))
}

async fn load(pid: u32, port: u16, logins: usize, clients: usize) -> anyhow::Result<()> {
    let url = Arc::new(format!("http://127.0.0.1:{port}/api/login"));
    let body =
        Arc::new(serde_json::json!({"login": "admin", "password": ADMIN_PASSWORD}).to_string());
    // Let the start-up settle (first-run admin hashed, listeners up).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_before, _, threads_before) = memory(pid)?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, body, next) = (url.clone(), body.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            // One client per task, like separate browsers (no shared connection pool).
            let client = reqwest::Client::builder().build()?;
            let mut latencies = Vec::new();
            let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
            while next.fetch_add(1, Ordering::Relaxed) < logins {
                let t = Instant::now();
                // A 503 (password workers saturated) is retried after its
                // `Retry-After`, as the login page's user would: the latency is
                // from the first try to the final answer.
                loop {
                    let response = client
                        .post(url.as_str())
                        .header("Content-Type", "application/json")
                        .body(body.as_str().to_owned())
                        .send()
                        .await?;
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    drop(response.bytes().await?);
                    *statuses.entry(status).or_default() += 1;
                    match (status, retry_after) {
                        (503, Some(secs)) => {
                            tokio::time::sleep(Duration::from_secs(secs.min(5))).await;
                        }
                        _ => break,
                    }
                }
                latencies.push(t.elapsed());
            }
            anyhow::Ok((latencies, statuses))
        }));
    }
    let mut latencies = Vec::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for task in tasks {
        let (own, counts) = task.await??;
        latencies.extend(own);
        for (status, count) in counts {
            *statuses.entry(status).or_default() += count;
        }
    }
    let elapsed = started.elapsed();
    let (rss_after, peak, threads_after) = memory(pid)?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss_settled, _, _) = memory(pid)?;
    latencies.sort();
    let pct = |p: f64| percentile(&latencies, p);
    println!(
        "Login: {} logins from {clients} clients in {:.2?}: {:.1} logins/s; \
         latency p50 {:.1?}, p90 {:.1?}, p99 {:.1?}, max {:.1?}; answers (with retries) {statuses:?}",
        latencies.len(),
        elapsed,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
    );
    println!(
        "Server memory: RSS {rss_before:.0} MiB before, {rss_after:.0} MiB after \
         ({rss_settled:.0} MiB 5 s later), peak {peak:.0} MiB; \
         threads {threads_before} before, {threads_after} after"
    );
    Ok(())
}
