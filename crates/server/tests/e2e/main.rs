//! The end-to-end suites: the `fiche` binary cargo builds with this test (never a
//! stale `target/debug/fiche`), started as a real process on loopback ports, fed by
//! real Kamailio and sipp, the AMI and Odoo test servers, CTI webhooks, and
//! PostgreSQL; one module per suite. The harness (processes, ports, test servers,
//! the HTTP client, the golden event lines) is the `fiche-e2e` library in `tests/`.
//!
//! `cargo test -p fiche-server --test e2e` runs them all; a suite alone is a filter,
//! e.g. `cargo test -p fiche-server --test e2e sip_flows::`. Needs `kamailio`, `sipp`
//! (sip-test-scripts/README.md) and PostgreSQL at `FICHE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). `FICHE_BIN` tests another binary
//! instead (an older or release build); `FICHE_E2E_KEEP=1` keeps logs and SIP traces.

mod ami_binary;
mod ami_flows;
mod ami_recordings;
mod auth;
mod authz;
mod cluster;
mod cti;
mod cti_zammad;
mod customers_sync;
mod demo;
mod hep_tcp;
mod import;
mod odoo;
mod ops;
mod pbx_mirror;
mod sip_flows;

/// The harness starts the `fiche` cargo built with this test binary (unless
/// `FICHE_BIN` names another on purpose): what the suites judge is the code
/// being tested, not a binary left on disk by an older build.
#[test]
fn the_suites_run_the_fiche_built_with_them() {
    if std::env::var_os("FICHE_BIN").is_some() {
        return;
    }
    let binary = fiche_e2e::testbed::fiche_binary().unwrap();
    assert_eq!(binary, std::path::Path::new(env!("CARGO_BIN_EXE_fiche")));
}
