//! The first `fiche odoo sync` of 100,000 partners against the Odoo test server
//! (`harness/odoo.rs`, in this process), 17-style (JSON-RPC) and 19-style
//! (JSON-2), into a fresh SQLite database: wall time of the release binary.
//!
//! `cargo build --release -p fiche-server && cargo bench -p fiche-e2e --bench odoo_sync`
//! (`FICHE_BIN` to use another binary; `ODOO_PARTNERS` for another count).
//! The aim (issue 13) is under 30 s; results in BENCHMARKS.md.

use fiche_e2e::odoo::{Helpdesk, OdooSpec, TestOdoo};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let partners: usize = std::env::var("ODOO_PARTNERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let binary = std::env::var("FICHE_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/fiche").to_owned()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for spec in [OdooSpec::v17(Helpdesk::Enterprise), OdooSpec::v19(Helpdesk::Oca)] {
            let major = spec.major;
            let odoo = TestOdoo::start(spec).await?;
            odoo.seed_partners(partners);
            let dir = tempfile::tempdir()?;
            let config = dir.path().join("fiche.toml");
            let odoo_spec = odoo.spec();
            std::fs::write(
                &config,
                format!(
                    "[odoo]\nurl = \"{}\"\ndatabase = \"{}\"\nlogin = \"{}\"\n",
                    odoo.url(),
                    odoo_spec.database,
                    odoo_spec.login
                ),
            )?;
            let started = Instant::now();
            let output = tokio::process::Command::new(&binary)
                .arg("--config")
                .arg(&config)
                .args(["odoo", "sync"])
                .env("FICHE_DATABASE_URL", format!("sqlite://{}/fiche.db", dir.path().display()))
                .env("FICHE_ODOO_API_KEY", &odoo_spec.api_key)
                .env("FICHE_LOG", "warn")
                .output()
                .await?;
            let elapsed = started.elapsed();
            anyhow::ensure!(
                output.status.success(),
                "fiche odoo sync failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let last = String::from_utf8_lossy(&output.stdout)
                .lines()
                .last()
                .unwrap_or_default()
                .to_owned();
            println!(
                "Odoo {major}: {partners} partners synced in {:.1} s ({:.0} partners/s), {} requests; {last}",
                elapsed.as_secs_f64(),
                partners as f64 / elapsed.as_secs_f64(),
                odoo.requests()
            );
        }
        Ok(())
    })
}
