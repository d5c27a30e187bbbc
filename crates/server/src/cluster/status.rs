//! `fiche cluster status`: the nodes, their last heartbeat, and what each holds.

use super::lease::NODE_ALIVE;
use chrono::Utc;
use fiche_store::Store;
use std::fmt::Write as _;

/// The status as text, in French (the administrator's language by default).
pub async fn report(store: &Store) -> anyhow::Result<String> {
    let nodes = store.cluster_nodes().await?;
    let leases = store.cluster_leases().await?;
    let now = Utc::now();
    let alive = chrono::Duration::from_std(NODE_ALIVE).unwrap_or(chrono::Duration::MAX);
    let mut out = String::new();
    if nodes.is_empty() {
        out.push_str("Aucun nœud n'a encore rejoint la grappe.\n");
    }
    for node in &nodes {
        let age = now - node.heartbeat_at;
        let state = if age <= alive { "actif" } else { "absent" };
        let held: Vec<&str> = leases
            .iter()
            .filter(|l| l.node == node.node && l.expires_at > now)
            .map(|l| l.name.as_str())
            .collect();
        let _ = writeln!(
            out,
            "{:<20} {:<7} dernier signe il y a {:>4} s  http {}  tient : {}",
            node.node,
            state,
            age.num_seconds().max(0),
            node.http_addr,
            if held.is_empty() {
                "—".to_owned()
            } else {
                held.join(", ")
            }
        );
    }
    let free: Vec<&str> = leases
        .iter()
        .filter(|l| l.expires_at <= now)
        .map(|l| l.name.as_str())
        .collect();
    if !free.is_empty() {
        let _ = writeln!(out, "Sans titulaire : {}", free.join(", "));
    }
    Ok(out)
}
