//! Heap held by the hub per idle agent socket, counted by a global allocator,
//! with the process's resident memory growth beside it.
//!
//! `cargo bench -p fiche-hub --bench memory`

use fiche_hub::{AgentInfo, Connection, Hub, HubConfig, Role, Viewer};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Idle agent sockets registered.
const SOCKETS: usize = 10_000;

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let hub = Hub::new(HubConfig::default());
    let directory: Vec<AgentInfo> = (0..SOCKETS)
        .map(|i| AgentInfo {
            user_id: i as i64,
            name: format!("Agent {i}"),
            extensions: vec![format!("{}", 10_000 + i)],
        })
        .collect();
    // The directory is the server's data whether sockets are open or not.
    hub.set_agents(directory);

    let rss_before = resident_bytes();
    let region = Region::new(GLOBAL);
    let mut connections: Vec<Connection> = Vec::with_capacity(SOCKETS);
    for i in 0..SOCKETS {
        // Built per socket by the server at upgrade time: counted.
        let viewer = Viewer {
            user_id: i as i64,
            role: Role::Agent,
            extensions: vec![format!("{}", 10_000 + i)],
        };
        connections.push(hub.connect(viewer));
    }
    let queued = region.change();
    // An idle socket's pump has written its snapshot: the queue is empty.
    for conn in &mut connections {
        while conn.try_recv().is_some() {}
    }
    let idle = region.change();
    let rss_after = resident_bytes();

    let net = |s: stats_alloc::Stats| s.bytes_allocated as i64 - s.bytes_deallocated as i64;
    // The `Connection` vector is the bench's own (the server keeps one
    // `Connection` inside each socket task, 16 bytes).
    let vec_bytes = (SOCKETS * std::mem::size_of::<Connection>()) as i64;
    println!("hub heap per idle agent socket ({SOCKETS} sockets):");
    println!(
        "  with the snapshot still queued: {} bytes",
        (net(queued) - vec_bytes) / SOCKETS as i64
    );
    println!(
        "  idle (snapshot written):        {} bytes",
        (net(idle) - vec_bytes) / SOCKETS as i64
    );
    println!(
        "  allocations per socket:         {:.1}",
        (idle.allocations + idle.reallocations) as f64 / SOCKETS as f64
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "  resident memory growth:         {} bytes per socket",
            after.saturating_sub(before) / SOCKETS as u64
        );
    }
    drop(connections);
    assert_eq!(hub.connections(), SOCKETS);
}
