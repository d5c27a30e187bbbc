//! Load test of the inbound CTI endpoint: starts the release `fiche serve` as a
//! child process on loopback (SQLite in a temp dir, default logging), creates a
//! token with `fiche cti token add`, then posts Zammad newCall/answer/hangup
//! sequences from concurrent keep-alive connections and reports events per
//! second and latency percentiles.
//!
//! `cargo build --release -p fiche-server && cargo bench -p fiche-server --bench cti_load`
//! Settings: `CTI_BENCH_EVENTS` (default 60000), `CTI_BENCH_CONNECTIONS` (default 32),
//! `FICHE_BIN` (default target/release/fiche).

mod support;

use std::sync::Arc;
use std::time::Instant;
use support::{env_number, percentile, Workdir};

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let events = env_number("CTI_BENCH_EVENTS", 60_000);
    let connections = env_number("CTI_BENCH_CONNECTIONS", 32).max(1);
    let workdir = Workdir::new()?;
    let token = workdir.run(&["cti", "token", "add", "bench"])?;
    let server = workdir.serve(&[])?;
    let port = server.wait_for_port()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(load(port, token, events, connections))
}

async fn load(port: u16, token: String, events: usize, connections: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let url = Arc::new(format!("http://127.0.0.1:{port}/api/v1/cti/{token}"));
    let calls_per_connection = events.div_ceil(3).div_ceil(connections);
    // Warm-up: connections open, first allocations done.
    for i in 0..connections {
        post(
            &client,
            &url,
            &format!("event=newCall&direction=in&from=0612345678&to=201&callId=warm{i}"),
        )
        .await?;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(calls_per_connection * 3);
            for n in 0..calls_per_connection {
                let id = format!("c{c}n{n}");
                for body in [
                    format!(
                        "event=newCall&direction=in&from=06{:08}&to=2{:02}&callId={id}",
                        n,
                        c % 100
                    ),
                    format!("event=answer&callId={id}&answeringNumber=2{:02}", c % 100),
                    format!("event=hangup&callId={id}&cause=normalClearing"),
                ] {
                    let t = Instant::now();
                    post(&client, &url, &body).await?;
                    latencies.push(t.elapsed());
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| percentile(&latencies, p);
    println!(
        "CTI inbound: {} events over {connections} keep-alive connections in {:.2?}: {:.0} events/s; \
         latency p50 {:.2?}, p90 {:.2?}, p99 {:.2?}, p99.9 {:.2?}, max {:.2?}",
        latencies.len(),
        elapsed,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        pct(1.0),
    );
    Ok(())
}

async fn post(client: &reqwest::Client, url: &str, body: &str) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(
        status.is_success() && text == "{}",
        "answer {status}: {text}"
    );
    Ok(())
}
