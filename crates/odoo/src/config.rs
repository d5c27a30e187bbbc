//! The `[odoo]` table of Fiche's configuration.

use serde::Deserialize;
use std::time::Duration;

/// Which external API to speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiChoice {
    /// Ask `common.version`: JSON-2 from Odoo 19 on, JSON-RPC before.
    #[default]
    Auto,
    /// `/jsonrpc` (Odoo 16 to 18; deprecated from 19, removed in 22).
    Jsonrpc,
    /// `/json/2/<model>/<method>` (Odoo 19 and later).
    Json2,
}

/// Connection to one Odoo database, and how customers are followed.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdooConfig {
    /// Base URL of the Odoo server, e.g. `https://erp.example.com` (no `/jsonrpc`).
    pub url: String,
    /// Database name (sent as `X-Odoo-Database` to JSON-2, as the first argument to JSON-RPC).
    pub database: String,
    /// Login of the Odoo user whose API key this is (a bot user; see README "Odoo").
    pub login: String,
    /// API key of that user (`FICHE_ODOO_API_KEY`). Never logged.
    #[serde(default)]
    pub api_key: String,
    /// `auto` (default), `jsonrpc` or `json2`.
    #[serde(default)]
    pub api: ApiChoice,
    /// Seconds between two polls of changed partners (`write_date`); 0 turns polling off.
    #[serde(default = "default_poll_secs")]
    pub poll_interval_secs: u64,
    /// Seconds each poll re-reads before the last change seen: Odoo stamps
    /// `write_date` when a transaction starts, so a long transaction commits
    /// records dated before changes already read.
    #[serde(default = "default_overlap_secs")]
    pub poll_overlap_secs: u64,
    /// Every this many polls, the ids of all active partners are read to find
    /// partners deleted in Odoo (a deletion leaves no `write_date` behind).
    #[serde(default = "default_deletion_sweep_every")]
    pub deletion_sweep_every: u32,
    /// Seconds one request may take.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Partners read per request.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Base URL of Odoo as the agents' browsers reach it, for the card's
    /// "Ouvrir dans Odoo" links; defaults to `url`.
    #[serde(default)]
    pub public_url: Option<String>,
}

fn default_poll_secs() -> u64 {
    60
}
fn default_overlap_secs() -> u64 {
    300
}
fn default_deletion_sweep_every() -> u32 {
    10
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_page_size() -> u32 {
    2000
}

impl OdooConfig {
    /// The poll interval, `None` when polling is off.
    pub fn poll_interval(&self) -> Option<Duration> {
        (self.poll_interval_secs > 0).then(|| Duration::from_secs(self.poll_interval_secs))
    }

    /// Checks values a typo would make useless; names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("odoo.url: expected an http:// or https:// URL".to_owned());
        }
        if self.database.trim().is_empty() {
            return Err("odoo.database: empty".to_owned());
        }
        if self.login.trim().is_empty() {
            return Err("odoo.login: empty".to_owned());
        }
        if self.api_key.trim().is_empty() {
            return Err(
                "odoo.api_key: empty (set it in the file or in FICHE_ODOO_API_KEY)".to_owned(),
            );
        }
        if !(1..=10_000).contains(&self.page_size) {
            return Err("odoo.page_size: between 1 and 10000".to_owned());
        }
        if self.timeout_secs == 0 {
            return Err("odoo.timeout_secs: at least 1".to_owned());
        }
        Ok(())
    }

    /// The base URL links on the card point to, without a trailing slash.
    pub fn browser_url(&self) -> &str {
        self.public_url
            .as_deref()
            .unwrap_or(&self.url)
            .trim_end_matches('/')
    }
}

impl std::fmt::Debug for OdooConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdooConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("login", &self.login)
            .field("api_key", &"<redacted>")
            .field("api", &self.api)
            .field("poll_interval_secs", &self.poll_interval_secs)
            .field("poll_overlap_secs", &self.poll_overlap_secs)
            .field("deletion_sweep_every", &self.deletion_sweep_every)
            .field("timeout_secs", &self.timeout_secs)
            .field("page_size", &self.page_size)
            .field("public_url", &self.public_url)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug() {
        let config: OdooConfig = toml_like(
            r#"{"url":"https://erp.example.com","database":"prod","login":"fiche-bot","api_key":"k3y-s3cret"}"#,
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("k3y-s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(config.poll_interval_secs, 60);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_missing_key_is_named() {
        let config: OdooConfig =
            toml_like(r#"{"url":"https://erp.example.com","database":"prod","login":"fiche-bot"}"#);
        let error = config.validate().unwrap_err();
        assert!(error.contains("FICHE_ODOO_API_KEY"), "{error}");
    }

    fn toml_like(json: &str) -> OdooConfig {
        serde_json::from_str(json).unwrap()
    }
}
