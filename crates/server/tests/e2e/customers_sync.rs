//! A running `fiche serve` follows customer changes made by other processes,
//! without a restart: `fiche import customers` run beside it, and a second Fiche
//! node on the same database deleting a customer. The check goes through
//! `/api/customers/lookup`, which answers from the server's in-memory index (what
//! the pop card uses), not from the database.
//!
//! Needs PostgreSQL at `FICHE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) for the multi-node case.

use anyhow::{bail, Context};
use fiche_e2e::fiche_ami::{AmiSetup, FicheProcess, Scratch};
use fiche_e2e::pg::PgSchema;
use fiche_e2e::testbed::fiche_binary;
use fiche_e2e::{auth, http};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// The servers' polling interval in these tests.
const SYNC_MS: &str = "200";
/// Bound of the wait for a change to reach the other server (polling is 200 ms;
/// the margin is for a loaded machine, not a speed assertion).
const SYNC_LIMIT: Duration = Duration::from_secs(20);
/// Guard against a hung import, in seconds.
const COMMAND_LIMIT_SECS: u32 = 120;

async fn start(scratch: &Scratch, name: &str, database_url: &str) -> FicheProcess {
    let extra = [
        ("FICHE_DATABASE_URL", database_url.to_owned()),
        ("FICHE_CUSTOMERS_SYNC_MS", SYNC_MS.to_owned()),
    ];
    FicheProcess::start(scratch, name, &AmiSetup::Toml(String::new()), &extra)
        .await
        .expect("starting fiche")
}

/// `fiche import customers FILE` as a process of its own, on `database_url`.
fn import(scratch: &Scratch, database_url: &str, csv: &str) {
    let file = scratch.path().join("clients.csv");
    std::fs::write(&file, csv).unwrap();
    let output = Command::new("timeout")
        .arg(COMMAND_LIMIT_SECS.to_string())
        .arg(fiche_binary().unwrap())
        .args(["import", "customers"])
        .arg(&file)
        .current_dir(scratch.path())
        .env("FICHE_DATABASE_URL", database_url)
        .env("FICHE_LOG", "warn")
        .env_remove("FICHE_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "fiche import customers failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The names `/api/customers/lookup` gives for `number`.
async fn lookup(port: u16, token: &str, number: &str) -> anyhow::Result<Vec<(i64, String)>> {
    let path = format!("/api/customers/lookup?number={number}");
    let (status, body) = http::get_as(port, &path, token).await?;
    if status != 200 {
        bail!("GET {path} answered {status}: {body}");
    }
    let answer: Value = serde_json::from_str(&body).with_context(|| body.clone())?;
    let matches = answer["matches"]
        .as_array()
        .with_context(|| format!("no matches in {body}"))?;
    Ok(matches
        .iter()
        .map(|m| {
            (
                m["customer"]["id"].as_i64().unwrap_or_default(),
                m["customer"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect())
}

/// Polls the lookup until `done` holds for its answer, at most [`SYNC_LIMIT`].
async fn wait_for(
    node: &FicheProcess,
    token: &str,
    number: &str,
    what: &str,
    done: impl Fn(&[(i64, String)]) -> bool,
) -> Vec<(i64, String)> {
    let started = Instant::now();
    loop {
        let found = lookup(node.http_port(), token, number).await.unwrap();
        if done(&found) {
            return found;
        }
        assert!(
            started.elapsed() < SYNC_LIMIT,
            "{what}: after {SYNC_LIMIT:?} the lookup of {number} still gives {found:?}; log:\n{}",
            node.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Node A serves; `fiche import` adds customers; node B deletes one of them.
async fn imported_and_deleted_customers_reach_a_running_server(scratch: &Scratch, url: &str) {
    let node_a = start(scratch, "node-a", url).await;
    let node_b = start(scratch, "node-b", url).await;
    let token_a = auth::admin_token(node_a.http_port()).await.unwrap();
    let token_b = auth::admin_token(node_b.http_port()).await.unwrap();
    assert!(lookup(node_a.http_port(), &token_a, "0611223344")
        .await
        .unwrap()
        .is_empty());

    import(
        scratch,
        url,
        "Code client;Nom;Prénom;Portable\r\n\
         S1;Lefèvre;Hélène;06 11 22 33 44\r\n\
         S2;Garçon;Zoé;+33 6 55 66 77 88\r\n",
    );
    let found = wait_for(&node_a, &token_a, "0611223344", "the import", |found| {
        !found.is_empty()
    })
    .await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "Hélène Lefèvre");
    let helene = found[0].0;
    // In any format, and on the other node too.
    wait_for(
        &node_b,
        &token_b,
        "+33611223344",
        "the import, node B",
        |found| found.iter().any(|(id, _)| *id == helene),
    )
    .await;

    // A delete through node B's API reaches node A's index.
    let (status, body) = http::request(
        node_b.http_port(),
        "DELETE",
        &format!("/api/customers/{helene}"),
        Some(&token_b),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 204, "{body}");
    wait_for(&node_a, &token_a, "0611223344", "the delete", |found| {
        found.is_empty()
    })
    .await;
    // The other imported customer is untouched.
    let zoe = lookup(node_a.http_port(), &token_a, "0655667788")
        .await
        .unwrap();
    assert_eq!(zoe.len(), 1, "{zoe:?}");
    assert_eq!(zoe[0].1, "Zoé Garçon");

    // Re-importing with a new number moves the match on node A.
    import(
        scratch,
        url,
        "Code client;Nom;Prénom;Portable\r\nS2;Garçon;Zoé;07 81 02 03 04\r\n",
    );
    wait_for(&node_a, &token_a, "0781020304", "the re-import", |found| {
        found.len() == 1 && found[0].1 == "Zoé Garçon"
    })
    .await;
    drop(node_b);
    drop(node_a);
}

#[tokio::test]
async fn sqlite_imported_and_deleted_customers_reach_a_running_server() {
    let scratch = Scratch::create().unwrap();
    let url = format!("sqlite://{}/fiche.db", scratch.path().display());
    imported_and_deleted_customers_reach_a_running_server(&scratch, &url).await;
}

#[tokio::test]
async fn postgres_imported_and_deleted_customers_reach_every_node() {
    let scratch = Scratch::create().unwrap();
    let schema = PgSchema::create("sync").await;
    imported_and_deleted_customers_reach_a_running_server(&scratch, &schema.url).await;
    schema.drop_schema().await;
}
