//! The external APIs' envelopes and error objects, without IO: request bodies
//! built from a [`Call`], answers turned into a value or an [`OdooError`].
//!
//! - JSON-RPC 2.0 on `/jsonrpc` (Odoo's "External RPC API", deprecated in 19):
//!   `{"jsonrpc":"2.0","method":"call","params":{"service","method","args"},"id"}`;
//!   errors come back with HTTP 200 as `{"error":{"code":200,"message":"Odoo Server
//!   Error","data":{"name","message","arguments","context","debug"}}}`
//!   (`odoo.http.serialize_exception`).
//! - JSON-2 (Odoo 19+): `POST /json/2/<model>/<method>` with the method's
//!   parameters by name, plus `ids` and `context`; the answer is the bare result
//!   (200) or the same error object with a 4xx/5xx status (401 for a bad key).

use serde_json::{json, Map, Value};

use crate::error::{OdooError, Result};

/// Which external API a server is spoken to with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `/jsonrpc`: `common.authenticate` then `object.execute_kw` (Odoo 16 to 18).
    JsonRpc,
    /// `/json/2/<model>/<method>` with a bearer API key (Odoo 19 and later).
    Json2,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::JsonRpc => "JSON-RPC (/jsonrpc)",
            Protocol::Json2 => "JSON-2 (/json/2)",
        })
    }
}

/// What `common.version` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// Major version: 17 for "17.0" and for "saas~17.2".
    pub major: u32,
    /// Minor version: 0 for "17.0", 2 for "saas~17.2".
    pub minor: u32,
    /// `server_version` as Odoo writes it, e.g. "17.0+e".
    pub text: String,
    /// Enterprise edition (`server_version_info`'s last item is "e").
    pub enterprise: bool,
}

impl ServerVersion {
    /// Reads the result of `common.version`:
    /// `{"server_version":"17.0","server_version_info":[17,0,0,"final",0,""],...}`.
    /// SaaS builds write the major as a string, `["saas~17",2,0,"final",0,"e"]`.
    pub fn from_common_version(result: &Value) -> Result<Self> {
        let info = result
            .get("server_version_info")
            .and_then(Value::as_array)
            .ok_or_else(|| OdooError::protocol("common.version", "no server_version_info array"))?;
        let major = match info.first() {
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Some(Value::String(s)) => s.trim_start_matches("saas~").parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            OdooError::protocol(
                "common.version",
                format!(
                    "server_version_info[0] is not a version: {:?}",
                    info.first()
                ),
            )
        })?;
        let minor = info
            .get(1)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let text = result
            .get("server_version")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{major}.{minor}"));
        let enterprise = info.get(5).and_then(Value::as_str) == Some("e");
        Ok(ServerVersion {
            major,
            minor,
            text,
            enterprise,
        })
    }

    /// The API this version is best spoken to with: JSON-2 from 19 on.
    pub fn preferred_protocol(&self) -> Protocol {
        if self.major >= 19 {
            Protocol::Json2
        } else {
            Protocol::JsonRpc
        }
    }
}

/// One ORM method call, independent of the API that carries it.
#[derive(Debug, Clone)]
pub struct Call {
    /// Technical model name, e.g. `res.partner`.
    pub model: String,
    /// Method, e.g. `search_read`.
    pub method: String,
    /// Records the method runs on (`Some(vec![])`: a record method on no
    /// record); `None` for `@api.model` methods.
    pub ids: Option<Vec<i64>>,
    /// The method's parameters by name, in their order in the signature.
    pub params: Vec<(&'static str, Value)>,
    /// How many of `params` JSON-RPC passes by position (after `ids`): `create`
    /// must get its values positionally there (`_call_kw_model_create` reads `args[0]`).
    pub positional: usize,
    /// Context values (`active_test`, `lang`, …).
    pub context: Map<String, Value>,
}

impl Call {
    /// A call of `model.method` with no records and no parameters yet.
    pub fn new(model: &str, method: &str) -> Self {
        Call {
            model: model.to_owned(),
            method: method.to_owned(),
            ids: None,
            params: Vec::new(),
            positional: 0,
            context: Map::new(),
        }
    }

    /// Runs on these records.
    pub fn ids(mut self, ids: Vec<i64>) -> Self {
        self.ids = Some(ids);
        self
    }

    /// Adds a parameter passed by name on both APIs.
    pub fn kw(mut self, name: &'static str, value: Value) -> Self {
        self.params.push((name, value));
        self
    }

    /// Adds a parameter JSON-RPC passes by position (add these first).
    pub fn arg(mut self, name: &'static str, value: Value) -> Self {
        self.params.insert(self.positional, (name, value));
        self.positional += 1;
        self
    }

    /// Sets a context value.
    pub fn context(mut self, key: &str, value: Value) -> Self {
        self.context.insert(key.to_owned(), value);
        self
    }

    /// The `args` of `object.execute_kw`: `[db, uid, key, model, method, args, kwargs]`.
    pub fn execute_kw_args(&self, database: &str, uid: i64, api_key: &str) -> Vec<Value> {
        let mut args: Vec<Value> = Vec::new();
        // JSON-RPC reads a record method's first argument as its ids.
        if let Some(ids) = &self.ids {
            args.push(json!(ids));
        }
        let mut kwargs = Map::new();
        for (index, (name, value)) in self.params.iter().enumerate() {
            if index < self.positional {
                args.push(value.clone());
            } else {
                kwargs.insert((*name).to_owned(), value.clone());
            }
        }
        if !self.context.is_empty() {
            kwargs.insert("context".to_owned(), Value::Object(self.context.clone()));
        }
        vec![
            json!(database),
            json!(uid),
            json!(api_key),
            json!(self.model),
            json!(self.method),
            Value::Array(args),
            Value::Object(kwargs),
        ]
    }

    /// The JSON-2 body: parameters by name, `ids` and `context` when set.
    pub fn json2_body(&self) -> Value {
        let mut body = Map::new();
        if let Some(ids) = self.ids.as_ref().filter(|ids| !ids.is_empty()) {
            body.insert("ids".to_owned(), json!(ids));
        }
        if !self.context.is_empty() {
            body.insert("context".to_owned(), Value::Object(self.context.clone()));
        }
        for (name, value) in &self.params {
            body.insert((*name).to_owned(), value.clone());
        }
        Value::Object(body)
    }

    /// The JSON-2 path, `/json/2/<model>/<method>`.
    pub fn json2_path(&self) -> String {
        format!("/json/2/{}/{}", self.model, self.method)
    }
}

/// A JSON-RPC 2.0 request envelope for `service.method(*args)`.
pub fn jsonrpc_body(id: u64, service: &str, method: &str, args: Vec<Value>) -> Value {
    json!({
        "jsonrpc": "2.0",
        "method": "call",
        "params": {"service": service, "method": method, "args": args},
        "id": id,
    })
}

/// Who and what a request was for, so that errors can name them.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The model (`common` for the common service).
    pub model: &'a str,
    /// The method.
    pub method: &'a str,
    /// The configured login.
    pub login: &'a str,
    /// The configured database.
    pub database: &'a str,
}

/// Reads a JSON-RPC answer: the `result`, or the `error` as an [`OdooError`].
pub fn parse_jsonrpc(body: &[u8], asked: Asked<'_>) -> Result<Value> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| {
        OdooError::protocol(
            format!("{}.{}", asked.model, asked.method),
            format!("not JSON ({e}): {}", preview(body)),
        )
    })?;
    if let Some(error) = answer.get("error") {
        let data = error.get("data").unwrap_or(&Value::Null);
        let name = data.get("name").and_then(Value::as_str).unwrap_or("");
        let message = data
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| error.get("message").and_then(Value::as_str))
            .unwrap_or("");
        return Err(classify(name, message, None, asked));
    }
    answer.get("result").cloned().ok_or_else(|| {
        OdooError::protocol(
            format!("{}.{}", asked.model, asked.method),
            "neither result nor error in the JSON-RPC answer",
        )
    })
}

/// Reads a JSON-2 answer: the body on 200, else the error object (or the bare
/// message string some builds send) as an [`OdooError`].
pub fn parse_json2(status: u16, body: &[u8], asked: Asked<'_>) -> Result<Value> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if status == 200 {
        return parsed.ok_or_else(|| {
            OdooError::protocol(
                format!("{}.{}", asked.model, asked.method),
                format!("not JSON: {}", preview(body)),
            )
        });
    }
    let (name, message) = match &parsed {
        Some(Value::Object(object)) => (
            object
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            object
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        ),
        Some(Value::String(text)) => (String::new(), text.clone()),
        _ => (String::new(), format!("HTTP {status}: {}", preview(body))),
    };
    Err(classify(&name, &message, Some(status), asked))
}

/// An Odoo exception name (and JSON-2 status) to a typed error.
fn classify(name: &str, message: &str, status: Option<u16>, asked: Asked<'_>) -> OdooError {
    let short = name.rsplit('.').next().unwrap_or(name);
    let model = asked.model.to_owned();
    if short == "AccessDenied" || status == Some(401) {
        return OdooError::AccessDenied {
            login: asked.login.to_owned(),
            database: asked.database.to_owned(),
            message: message.to_owned(),
        };
    }
    if let Some((field, on_model)) = invalid_field(message) {
        return OdooError::UnknownField {
            model: on_model.unwrap_or(model),
            field,
        };
    }
    if let Some((on_model, field)) = not_null_violation(message) {
        return OdooError::MissingField {
            model: on_model.unwrap_or(model),
            field,
        };
    }
    if message.starts_with("Object ") && message.ends_with("doesn't exist") {
        // `odoo/service/model.py`: execute_kw on a model that is not installed.
        return OdooError::NotFound {
            model,
            method: asked.method.to_owned(),
            message: message.to_owned(),
        };
    }
    match (short, status) {
        ("AccessError", _) | (_, Some(403)) => OdooError::AccessError {
            model,
            operation: asked.method.to_owned(),
            message: message.to_owned(),
        },
        ("MissingError", _) => OdooError::MissingRecord {
            model,
            message: message.to_owned(),
        },
        ("ValidationError" | "UserError" | "RedirectWarning", _) | (_, Some(422)) => {
            OdooError::Validation {
                model,
                field: None,
                message: message.to_owned(),
            }
        }
        (_, Some(404)) | ("NotFound", _) => OdooError::NotFound {
            model,
            method: asked.method.to_owned(),
            message: message.to_owned(),
        },
        (_, Some(502..=504)) => OdooError::Unreachable {
            url: asked.model.to_owned(),
            message: message.to_owned(),
        },
        _ => OdooError::Server {
            model,
            method: asked.method.to_owned(),
            name: name.to_owned(),
            message: message.to_owned(),
        },
    }
}

/// `Invalid field 'mobile' on model 'res.partner'` (`BaseModel._fields` lookups in
/// `read`, `search_read`, `create`, `write`; Odoo 17+ wording).
fn invalid_field(message: &str) -> Option<(String, Option<String>)> {
    let rest = message.split("Invalid field ").nth(1)?;
    let field = quoted(rest)?;
    let model = rest.split(" on model ").nth(1).and_then(quoted);
    Some((field, model))
}

/// Odoo's not-null message (`odoo/service/model.py`, `NOT_NULL_VIOLATION_MESSAGE`):
/// `...a mandatory field is not set...\nModel: Helpdesk Ticket (helpdesk.ticket)\nField: Description (description)`.
fn not_null_violation(message: &str) -> Option<(Option<String>, String)> {
    if !message.contains("mandatory field is not set") {
        return None;
    }
    let technical = |label: &str| {
        message
            .split(label)
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .and_then(|line| {
                let open = line.rfind('(')?;
                let close = line.rfind(')')?;
                (open < close).then(|| line[open + 1..close].to_owned())
            })
    };
    Some((technical("Model: "), technical("Field: ")?))
}

/// The text between the first pair of single quotes.
fn quoted(text: &str) -> Option<String> {
    let start = text.find('\'')? + 1;
    let end = text[start..].find('\'')? + start;
    Some(text[start..end].to_owned())
}

/// The start of a body for an error message, bounded.
fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKED: Asked<'static> = Asked {
        model: "helpdesk.ticket",
        method: "create",
        login: "fiche-bot",
        database: "prod",
    };

    #[test]
    fn versions_of_community_enterprise_and_saas() {
        let v17 = ServerVersion::from_common_version(&json!({
            "server_version": "17.0", "server_version_info": [17, 0, 0, "final", 0, ""],
            "server_serie": "17.0", "protocol_version": 1
        }))
        .unwrap();
        assert_eq!((v17.major, v17.enterprise), (17, false));
        assert_eq!(v17.preferred_protocol(), Protocol::JsonRpc);
        let saas = ServerVersion::from_common_version(&json!({
            "server_version": "saas~18.3+e", "server_version_info": ["saas~18", 3, 0, "final", 0, "e"]
        }))
        .unwrap();
        assert_eq!((saas.major, saas.minor, saas.enterprise), (18, 3, true));
        let v19 = ServerVersion::from_common_version(&json!({
            "server_version": "19.0", "server_version_info": [19, 0, 0, "final", 0, ""]
        }))
        .unwrap();
        assert_eq!(v19.preferred_protocol(), Protocol::Json2);
        assert!(ServerVersion::from_common_version(&json!({"nope": 1})).is_err());
    }

    #[test]
    fn create_goes_positional_on_jsonrpc_and_by_name_on_json2() {
        let call = Call::new("helpdesk.ticket", "create")
            .arg("vals_list", json!([{"name": "Appel"}]))
            .context("lang", json!("fr_FR"));
        let args = call.execute_kw_args("prod", 7, "key");
        assert_eq!(args[5], json!([[{"name": "Appel"}]]));
        assert_eq!(args[6], json!({"context": {"lang": "fr_FR"}}));
        assert_eq!(
            call.json2_body(),
            json!({"vals_list": [{"name": "Appel"}], "context": {"lang": "fr_FR"}})
        );
        let read = Call::new("res.partner", "read")
            .ids(vec![3, 4])
            .kw("fields", json!(["name"]));
        assert_eq!(read.execute_kw_args("prod", 7, "key")[5], json!([[3, 4]]));
        assert_eq!(
            read.json2_body(),
            json!({"ids": [3, 4], "fields": ["name"]})
        );
    }

    #[test]
    fn jsonrpc_errors_are_typed_with_model_and_field() {
        let denied = br#"{"jsonrpc":"2.0","id":1,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.AccessDenied","message":"Access Denied","arguments":["Access Denied"],"context":{},"debug":""}}}"#;
        assert!(matches!(
            parse_jsonrpc(denied, ASKED),
            Err(OdooError::AccessDenied { login, .. }) if login == "fiche-bot"
        ));
        let mandatory = serde_json::to_vec(&json!({"jsonrpc":"2.0","id":2,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.ValidationError","message":"The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n- Delete: another model requires the record being deleted. If possible, archive it instead.\n\nModel: Helpdesk Ticket (helpdesk.ticket)\nField: Description (description)\n"}}})).unwrap();
        match parse_jsonrpc(&mandatory, ASKED) {
            Err(OdooError::MissingField { model, field }) => {
                assert_eq!(
                    (model.as_str(), field.as_str()),
                    ("helpdesk.ticket", "description")
                );
            }
            other => panic!("{other:?}"),
        }
        let unknown = br#"{"jsonrpc":"2.0","id":3,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"builtins.ValueError","message":"Invalid field 'mobile' on model 'res.partner'"}}}"#;
        match parse_jsonrpc(unknown, ASKED) {
            Err(OdooError::UnknownField { model, field }) => {
                assert_eq!((model.as_str(), field.as_str()), ("res.partner", "mobile"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_jsonrpc(br#"{"jsonrpc":"2.0","id":4,"result":false}"#, ASKED).unwrap(),
            json!(false)
        );
        assert!(matches!(
            parse_jsonrpc(b"<html>502 Bad Gateway</html>", ASKED),
            Err(OdooError::Protocol { .. })
        ));
    }

    #[test]
    fn json2_statuses_are_typed() {
        let bad_key = br#"{"name":"werkzeug.exceptions.Unauthorized","message":"Invalid apikey","arguments":["Invalid apikey",401],"context":{},"debug":""}"#;
        assert!(matches!(
            parse_json2(401, bad_key, ASKED),
            Err(OdooError::AccessDenied { .. })
        ));
        let forbidden = br#"{"name":"odoo.exceptions.AccessError","message":"You are not allowed to create 'Helpdesk Ticket' (helpdesk.ticket) records."}"#;
        assert!(matches!(
            parse_json2(403, forbidden, ASKED),
            Err(OdooError::AccessError { model, operation, .. }) if model == "helpdesk.ticket" && operation == "create"
        ));
        assert!(matches!(
            parse_json2(
                404,
                br#""the model 'helpdesk.ticket' does not exist""#,
                ASKED
            ),
            Err(OdooError::NotFound { .. })
        ));
        assert!(matches!(
            parse_json2(
                422,
                br#"{"name":"odoo.exceptions.ValidationError","message":"bad"}"#,
                ASKED
            ),
            Err(OdooError::Validation { .. })
        ));
        assert_eq!(parse_json2(200, b"[1,2]", ASKED).unwrap(), json!([1, 2]));
    }
}
