//! Throughput of the ticket writer: a burst of call events (answered, missed from
//! a pool of repeat callers so callbacks merge, outbound calls back that close
//! them) queued at once, written by `TicketWriter` into SQLite (a file in a temp
//! dir) and, when reachable, PostgreSQL; reports events and calls per second
//! until the writer has drained the queue (everything committed).
//!
//! `cargo bench -p fiche-server --bench ticket_writer`
//! Settings: `WRITER_BENCH_CALLS` (default 3000), `WRITER_BENCH_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`; a schema of its own, dropped
//! after; skipped with a note when unreachable).

use std::time::Instant;

use chrono::Utc;
use fiche_pbx::{CallEvent, CallEventKind, CallId, Direction, Extension, Outcome, Party, Source};
use fiche_server::customer_memory::CustomerMemory;
use fiche_server::tickets::{cards::CardMaker, writer::TicketWriter};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn party(number: &str) -> Party {
    Party {
        number: Some(number.to_owned()),
        name: None,
        withheld: false,
    }
}

/// Events of `calls` calls, in the order a PBX would interleave them (up to 20 at
/// once): 60 % answered, 30 % missed from 200 repeat callers, 10 % calls back.
fn events(calls: usize) -> Vec<CallEvent> {
    let event = |key: &str, kind| CallEvent {
        call_id: CallId::from_source_key(Source::Ami, key),
        source: Source::Ami,
        at: Utc::now(),
        kind,
    };
    let mut out = Vec::new();
    for wave in (0..calls).collect::<Vec<_>>().chunks(20) {
        let mut ends = Vec::new();
        for &i in wave {
            let key = format!("bench-{i}");
            let number = format!("06{:08}", i % 200);
            let (direction, caller, callee) = match i % 10 {
                9 => (Direction::Outbound, "201".to_owned(), number),
                _ => (Direction::Inbound, number, "600".to_owned()),
            };
            out.push(event(
                &key,
                CallEventKind::CallStarted {
                    source_key: key.clone(),
                    direction,
                    caller: party(&caller),
                    callee: party(&callee),
                    diverted_from: Vec::new(),
                    queue: None,
                },
            ));
            out.push(event(
                &key,
                CallEventKind::Ringing {
                    extension: Extension::new("201").unwrap(),
                },
            ));
            let answered = !matches!(i % 10, 6..=8);
            if answered {
                out.push(event(
                    &key,
                    CallEventKind::Answered {
                        extension: Extension::new("201"),
                    },
                ));
            }
            let outcome = if answered {
                Outcome::Answered
            } else {
                Outcome::Missed
            };
            ends.push(event(
                &key,
                CallEventKind::Ended {
                    outcome,
                    cause: "bench".into(),
                },
            ));
        }
        out.extend(ends);
    }
    out
}

async fn run(label: &str, store: fiche_store::Store, events: &[CallEvent], calls: usize) {
    let cards = CardMaker {
        customers: CustomerMemory::default(),
        policy: Default::default(),
        store: store.clone(),
        odoo_url: None,
    };
    let writer = TicketWriter::new(
        store.clone(),
        fiche_hub::Hub::new(fiche_hub::HubConfig::default()),
        cards,
        Default::default(),
        Default::default(),
        Default::default(),
    );
    let (tx, rx) = tokio::sync::mpsc::channel(events.len());
    for event in events {
        let _ = tx.send(event.clone().into()).await;
    }
    drop(tx);
    let started = Instant::now();
    writer.run(rx).await;
    let secs = started.elapsed().as_secs_f64();
    let (tickets, _) = store
        .list_tickets(&fiche_store::TicketQuery::default())
        .await
        .unwrap_or_default();
    println!(
        "{label}: {} events ({calls} calls) in {secs:.2} s: {:.0} events/s, {:.0} calls/s; {tickets} tickets",
        events.len(),
        events.len() as f64 / secs,
        calls as f64 / secs,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let calls = env_number("WRITER_BENCH_CALLS", 3000);
    let events = events(calls);

    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}/fiche.db", dir.path().display());
    let store = fiche_store::Store::connect(&url).await?;
    store.migrate().await?;
    run("sqlite (file, WAL)", store.clone(), &events, calls).await;
    store.close().await;

    let server = std::env::var("WRITER_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("bench_writer_{}", std::process::id());
    let admin = match sqlx::PgPool::connect(&server).await {
        Ok(admin) => admin,
        Err(error) => {
            println!("postgres: skipped, {server} unreachable: {error}");
            return Ok(());
        }
    };
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await?;
    let url = format!("{server}?options[search_path]={schema}");
    let store = fiche_store::Store::connect(&url).await?;
    store.migrate().await?;
    run("postgres (loopback)", store.clone(), &events, calls).await;
    store.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await?;
    admin.close().await;
    Ok(())
}
