//! Fiche with Odoo, end to end: the `fiche` binary against the Odoo test server
//! (`harness/odoo.rs`, 17-style over JSON-RPC and 19-style over JSON-2).
//! Customers are checked through `/api/customers/lookup`, which answers from the
//! server's in-memory index: what the pop card uses.
//!
//! Needs a built server: `cargo build -p fiche-server && cargo test -p fiche-e2e --test odoo`.

use anyhow::{bail, Context};
use fiche_e2e::fiche_ami::{AmiSetup, FicheProcess, Scratch};
use fiche_e2e::odoo::{Helpdesk, OdooSpec, TestOdoo};
use fiche_e2e::testbed::fiche_binary;
use fiche_e2e::{auth, http};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Bound of a wait for a change to reach the index (polls are every second; the
/// margin is for a loaded machine, not a speed assertion).
const SYNC_LIMIT: Duration = Duration::from_secs(60);
/// Guard against a hung command, in seconds.
const COMMAND_LIMIT_SECS: u32 = 300;

/// The `[odoo]` table for `odoo` (the key comes from the environment).
fn odoo_toml(odoo: &TestOdoo) -> String {
    let spec = odoo.spec();
    format!(
        "[odoo]\nurl = \"{}\"\ndatabase = \"{}\"\nlogin = \"{}\"\npoll_interval_secs = 1\n",
        odoo.url(),
        spec.database,
        spec.login
    )
}

/// `fiche odoo <args>` with the key `key`: (success, stdout, stderr).
async fn fiche_odoo(
    scratch: &Scratch,
    odoo: &TestOdoo,
    key: &str,
    args: &[&str],
) -> (bool, String, String) {
    let config = scratch.path().join("odoo-cli.toml");
    std::fs::write(&config, odoo_toml(odoo)).unwrap();
    let output = tokio::process::Command::new("timeout")
        .arg(COMMAND_LIMIT_SECS.to_string())
        .arg(fiche_binary().unwrap())
        .arg("--config")
        .arg(&config)
        .arg("odoo")
        .args(args)
        .current_dir(scratch.path())
        .env(
            "FICHE_DATABASE_URL",
            format!("sqlite://{}/fiche.db", scratch.path().display()),
        )
        .env("FICHE_ODOO_API_KEY", key)
        .env("FICHE_LOG", "warn")
        .env_remove("FICHE_CONFIG")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn serve(scratch: &Scratch, odoo: &TestOdoo, key: &str) -> FicheProcess {
    FicheProcess::start(
        scratch,
        "fiche",
        &AmiSetup::Toml(odoo_toml(odoo)),
        &[
            ("FICHE_ODOO_API_KEY", key.to_owned()),
            ("FICHE_CUSTOMERS_SYNC_MS", "200".to_owned()),
        ],
    )
    .await
    .expect("starting fiche")
}

/// What `/api/customers/lookup` gives for `number`: (name, company, email).
async fn lookup(port: u16, token: &str, number: &str) -> anyhow::Result<Vec<Value>> {
    let path = format!("/api/customers/lookup?number={number}");
    let (status, body) = http::get_as(port, &path, token).await?;
    if status != 200 {
        bail!("GET {path} answered {status}: {body}");
    }
    let answer: Value = serde_json::from_str(&body).with_context(|| body.clone())?;
    Ok(answer["matches"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|m| m["customer"].clone())
        .collect())
}

/// Polls the lookup until `done` holds, at most [`SYNC_LIMIT`].
async fn wait_for(
    fiche: &FicheProcess,
    token: &str,
    number: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let found = lookup(fiche.http_port(), token, number).await.unwrap();
        if done(&found) {
            return found;
        }
        assert!(
            started.elapsed() < SYNC_LIMIT,
            "{what}: after {SYNC_LIMIT:?} the lookup of {number} gives {found:?}; log:\n{}",
            fiche.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn names(found: &[Value]) -> Vec<String> {
    found
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tells_version_models_and_fields_on_17_and_19() {
    let scratch = Scratch::create().unwrap();
    let v17 = TestOdoo::start(OdooSpec::v17(Helpdesk::Enterprise))
        .await
        .unwrap();
    let key = v17.spec().api_key;
    let (ok, out, err) = fiche_odoo(&scratch, &v17, &key, &["check"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Odoo 17.0+e (Enterprise)"), "{out}");
    assert!(out.contains("JSON-RPC"), "{out}");
    assert!(out.contains("Assistance Odoo Enterprise"), "{out}");
    assert!(
        out.contains("phone, email") && out.contains("mobile"),
        "{out}"
    );
    assert!(out.contains("Odoo est prêt pour Fiche"), "{out}");

    let v19 = TestOdoo::start(OdooSpec::v19(Helpdesk::Oca)).await.unwrap();
    let (ok, out, err) = fiche_odoo(&scratch, &v19, &key, &["check"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Odoo 19.0 (Community)"), "{out}");
    assert!(out.contains("JSON-2"), "{out}");
    assert!(out.contains("module OCA helpdesk_mgmt"), "{out}");
    assert!(out.contains("pas de champ mobile"), "{out}");

    // A right not granted is named, with the model and what to do.
    v19.deny("helpdesk.ticket", "create");
    let (_, out, _) = fiche_odoo(&scratch, &v19, &key, &["check"]).await;
    assert!(
        out.contains("helpdesk.ticket : l'utilisateur de Fiche ne peut pas créer"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_a_clear_error_at_check_and_at_start_and_fiche_keeps_working() {
    for spec in [
        OdooSpec::v17(Helpdesk::Enterprise),
        OdooSpec::v19(Helpdesk::Oca),
    ] {
        let scratch = Scratch::create().unwrap();
        let odoo = TestOdoo::start(spec).await.unwrap();
        odoo.seed_partners(3);
        let (ok, out, err) = fiche_odoo(&scratch, &odoo, "wrong-key", &["check"]).await;
        assert!(!ok, "{out}");
        assert!(
            out.contains("Connexion refusée pour l'utilisateur « fiche-bot »"),
            "{out}"
        );
        assert!(out.contains("FICHE_ODOO_API_KEY"), "{out}");
        assert!(!out.contains("wrong-key") && !err.contains("wrong-key"));
        let (ok, _, err) = fiche_odoo(&scratch, &odoo, "wrong-key", &["sync"]).await;
        assert!(!ok);
        assert!(err.contains("Odoo refuse la connexion"), "{err}");

        // The server starts anyway, says why Odoo is not followed, never logs the key.
        let fiche = serve(&scratch, &odoo, "wrong-key").await;
        let started = Instant::now();
        while !fiche.log_text().contains("Odoo refuse la connexion") {
            assert!(started.elapsed() < SYNC_LIMIT, "{}", fiche.log_tail(30));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!fiche.log_text().contains("wrong-key"));
        assert_eq!(fiche.health().await.unwrap(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_partners_then_changes_archives_and_deletions_reach_the_index() {
    for spec in [
        OdooSpec::v17(Helpdesk::Enterprise),
        OdooSpec::v19(Helpdesk::Oca),
    ] {
        let major = spec.major;
        let scratch = Scratch::create().unwrap();
        let odoo = TestOdoo::start(spec).await.unwrap();
        odoo.seed_partners(10_000);
        let helene = odoo.add_partner(json!({
            "name": "Hélène Lefèvre", "phone": "06 11 22 33 44", "email": "helene@example.fr",
        }));
        let zoe = odoo.add_partner(json!({"name": "Zoé Garçon", "phone": "+33 6 55 66 77 88"}));
        let paul = odoo.add_partner(json!({"name": "Paul Durand", "phone": "07 81 02 03 04"}));
        let odd = odoo.add_partner(json!({"name": "Numéro bizarre", "phone": "voir avec Paul"}));
        let key = odoo.spec().api_key;

        // The first import from the command line, numbers not understood named by id.
        let (ok, out, err) = fiche_odoo(&scratch, &odoo, &key, &["sync"]).await;
        assert!(ok, "{out}\n{err}");
        assert!(out.contains("10005 contacts lus"), "{out}");
        assert!(out.contains("10005 créés"), "{out}");
        assert!(
            out.contains(&format!(
                "contact Odoo {odd} : numéro phone \"voir avec Paul\" non reconnu"
            )),
            "{out}"
        );

        let fiche = serve(&scratch, &odoo, &key).await;
        let token = auth::admin_token(fiche.http_port()).await.unwrap();
        // Every partner is in the index: the first, the last, one of a company.
        let found = wait_for(&fiche, &token, "0110000000", "partner 0", |f| !f.is_empty()).await;
        assert_eq!(names(&found), vec!["Client 0"]);
        assert_eq!(found[0]["company"], json!("Boulangerie Martin"));
        let client0 = odoo
            .records("res.partner")
            .into_iter()
            .find(|p| p["name"] == json!("Client 0"))
            .unwrap();
        assert_eq!(
            found[0]["external_ref"],
            json!(format!("odoo:res.partner:{}", client0["id"]))
        );
        let last = wait_for(&fiche, &token, "+33110009999", "partner 9999", |f| {
            !f.is_empty()
        })
        .await;
        assert_eq!(names(&last), vec!["Client 9999"]);
        assert_eq!(last[0]["notes"], json!("Client fidèle"));

        // In Odoo: Hélène changes number, Zoé is archived, Paul deleted.
        odoo.write_partner(
            helene,
            json!({"phone": "06 99 88 77 66", "name": "Hélène Lefèvre-Roy"}),
        );
        odoo.write_partner(zoe, json!({"active": false}));
        odoo.delete_partner(paul);
        let moved = wait_for(&fiche, &token, "0699887766", "the change", |f| {
            !f.is_empty()
        })
        .await;
        assert_eq!(names(&moved), vec!["Hélène Lefèvre-Roy"], "Odoo {major}");
        wait_for(&fiche, &token, "0611223344", "the old number", |f| {
            f.is_empty()
        })
        .await;
        wait_for(&fiche, &token, "0655667788", "the archive", |f| {
            f.is_empty()
        })
        .await;
        // The deletion is found by the periodic sweep (every 10 polls).
        wait_for(&fiche, &token, "0781020304", "the deletion", |f| {
            f.is_empty()
        })
        .await;
        // Unarchived, Zoé comes back.
        odoo.write_partner(zoe, json!({"active": true}));
        wait_for(&fiche, &token, "0655667788", "the unarchive", |f| {
            names(f) == vec!["Zoé Garçon"]
        })
        .await;
        drop(fiche);
    }
}
