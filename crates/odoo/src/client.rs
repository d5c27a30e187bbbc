//! One Odoo database over HTTP: detects the version, authenticates, and runs ORM
//! calls over JSON-RPC (16 to 18) or JSON-2 (19+). The API key is sent, never logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{ApiChoice, OdooConfig};
use crate::error::{OdooError, Result};
use crate::wire::{self, Asked, Call, Protocol, ServerVersion};

/// A connected, authenticated client.
pub struct OdooClient {
    http: reqwest::Client,
    config: OdooConfig,
    version: ServerVersion,
    protocol: Protocol,
    uid: i64,
    next_id: AtomicU64,
}

impl std::fmt::Debug for OdooClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdooClient")
            .field("url", &self.config.url)
            .field("version", &self.version.text)
            .field("protocol", &self.protocol)
            .field("uid", &self.uid)
            .finish()
    }
}

fn http_client(config: &OdooConfig) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(config.timeout_secs))
        .user_agent(concat!("fiche/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| OdooError::Unreachable {
            url: config.url.clone(),
            message: e.to_string(),
        })
}

fn base(config: &OdooConfig) -> &str {
    config.url.trim_end_matches('/')
}

/// `common.version` over `/jsonrpc`: needs no login, answers on every version.
pub async fn server_version(config: &OdooConfig) -> Result<ServerVersion> {
    let http = http_client(config)?;
    let result = post_jsonrpc(
        &http,
        config,
        1,
        "common",
        "version",
        Vec::new(),
        Asked {
            model: "common",
            method: "version",
            login: &config.login,
            database: &config.database,
        },
    )
    .await?;
    ServerVersion::from_common_version(&result)
}

async fn post_jsonrpc(
    http: &reqwest::Client,
    config: &OdooConfig,
    id: u64,
    service: &str,
    method: &str,
    args: Vec<Value>,
    asked: Asked<'_>,
) -> Result<Value> {
    let url = format!("{}/jsonrpc", base(config));
    let body = wire::jsonrpc_body(id, service, method, args);
    let (status, bytes) = send(http, &url, None, &body).await?;
    if status != 200 {
        // JSON-RPC reports Odoo's errors with 200; anything else is a proxy or a
        // server that is down or restarting.
        return Err(OdooError::Unreachable {
            url,
            message: format!("HTTP {status}"),
        });
    }
    wire::parse_jsonrpc(&bytes, asked)
}

async fn send(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<(&str, &str)>,
    body: &Value,
) -> Result<(u16, Vec<u8>)> {
    let mut request = http.post(url).json(body);
    if let Some((key, database)) = bearer {
        request = request
            .header("Authorization", format!("bearer {key}"))
            .header("X-Odoo-Database", database);
    }
    let unreachable = |e: reqwest::Error| OdooError::Unreachable {
        url: url.to_owned(),
        message: e.without_url().to_string(),
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(unreachable)?;
    Ok((status, bytes.to_vec()))
}

impl OdooClient {
    /// Detects the version, picks the API and checks the login and key.
    pub async fn connect(config: &OdooConfig) -> Result<Self> {
        let http = http_client(config)?;
        let version = server_version(config).await?;
        let protocol = match config.api {
            ApiChoice::Auto => version.preferred_protocol(),
            ApiChoice::Jsonrpc => Protocol::JsonRpc,
            ApiChoice::Json2 => Protocol::Json2,
        };
        let mut client = OdooClient {
            http,
            config: config.clone(),
            version,
            protocol,
            uid: 0,
            next_id: AtomicU64::new(2),
        };
        client.uid = client.authenticate().await?;
        Ok(client)
    }

    async fn authenticate(&self) -> Result<i64> {
        let denied = |message: &str| OdooError::AccessDenied {
            login: self.config.login.clone(),
            database: self.config.database.clone(),
            message: message.to_owned(),
        };
        match self.protocol {
            Protocol::JsonRpc => {
                let result = post_jsonrpc(
                    &self.http,
                    &self.config,
                    self.next_id.fetch_add(1, Ordering::Relaxed),
                    "common",
                    "authenticate",
                    vec![
                        json!(self.config.database),
                        json!(self.config.login),
                        json!(self.config.api_key),
                        json!({}),
                    ],
                    self.asked("common", "authenticate"),
                )
                .await?;
                // `authenticate` answers the user id, or `false` for a wrong login or key.
                result
                    .as_i64()
                    .filter(|uid| *uid > 0)
                    .ok_or_else(|| denied("wrong login or API key (authenticate answered false)"))
            }
            Protocol::Json2 => {
                // JSON-2 has no login step: the key is checked on every call. Finding
                // our own user both checks the key and gives the uid.
                let found = self
                    .call(
                        &Call::new("res.users", "search_read")
                            .kw("domain", json!([["login", "=", self.config.login]]))
                            .kw("fields", json!(["id"]))
                            .kw("limit", json!(1)),
                    )
                    .await?;
                found
                    .get(0)
                    .and_then(|u| u.get("id"))
                    .and_then(Value::as_i64)
                    .ok_or_else(|| {
                        denied("the API key works but belongs to another login than odoo.login")
                    })
            }
        }
    }

    fn asked<'a>(&'a self, model: &'a str, method: &'a str) -> Asked<'a> {
        Asked {
            model,
            method,
            login: &self.config.login,
            database: &self.config.database,
        }
    }

    /// Runs one ORM call and returns its result.
    pub async fn call(&self, call: &Call) -> Result<Value> {
        let asked = self.asked(&call.model, &call.method);
        match self.protocol {
            Protocol::JsonRpc => {
                post_jsonrpc(
                    &self.http,
                    &self.config,
                    self.next_id.fetch_add(1, Ordering::Relaxed),
                    "object",
                    "execute_kw",
                    call.execute_kw_args(&self.config.database, self.uid, &self.config.api_key),
                    asked,
                )
                .await
            }
            Protocol::Json2 => {
                let url = format!("{}{}", base(&self.config), call.json2_path());
                let (status, bytes) = send(
                    &self.http,
                    &url,
                    Some((&self.config.api_key, &self.config.database)),
                    &call.json2_body(),
                )
                .await?;
                wire::parse_json2(status, &bytes, asked).map_err(|error| match error {
                    OdooError::Unreachable { message, .. } => {
                        OdooError::Unreachable { url, message }
                    }
                    other => other,
                })
            }
        }
    }

    /// `fields_get` of `model`: field name → its `type`, `required`, `string`.
    pub async fn fields(&self, model: &str) -> Result<serde_json::Map<String, Value>> {
        let result = self
            .call(&Call::new(model, "fields_get").kw(
                "attributes",
                json!(["type", "required", "string", "relation"]),
            ))
            .await?;
        match result {
            Value::Object(map) => Ok(map),
            other => Err(OdooError::protocol(
                format!("{model}.fields_get"),
                format!("expected an object, got {other}"),
            )),
        }
    }

    /// Whether the user may `operation` (`read`, `write`, `create`, `unlink`) on
    /// `model`: `has_access` from Odoo 18, `check_access_rights` before.
    pub async fn may(&self, model: &str, operation: &str) -> Result<bool> {
        let call = if self.version.major >= 18 {
            Call::new(model, "has_access")
                .ids(Vec::new())
                .arg("operation", json!(operation))
        } else {
            Call::new(model, "check_access_rights")
                .arg("operation", json!(operation))
                .kw("raise_exception", json!(false))
        };
        match self.call(&call).await {
            Ok(answer) => Ok(answer.as_bool().unwrap_or(false)),
            Err(OdooError::AccessError { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// The server's version.
    pub fn version(&self) -> &ServerVersion {
        &self.version
    }

    /// The API in use.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The bot user's id.
    pub fn uid(&self) -> i64 {
        self.uid
    }

    /// The configuration this client was made from.
    pub fn config(&self) -> &OdooConfig {
        &self.config
    }
}
