//! An Odoo test server: test support, not product code. No Odoo can be installed
//! from this machine's package registries, so this speaks Odoo's external APIs on
//! loopback (axum, in-process) with the wire formats and the rules real Odoo
//! enforces for the models Fiche uses. Each rule names what it mirrors.
//!
//! **Wire formats**
//! - `POST /jsonrpc`, JSON-RPC 2.0: `{"jsonrpc":"2.0","method":"call","params":
//!   {"service","method","args"},"id"}` → `{"jsonrpc":"2.0","id","result"}`, or, with
//!   HTTP 200, `{"error":{"code":200,"message":"Odoo Server Error","data":{"name",
//!   "message","arguments","context","debug"}}}` (odoo/odoo `odoo/http.py`,
//!   `serialize_exception` and `JsonRPCDispatcher.handle_error`; the "External RPC
//!   API" page of the Odoo documentation, deprecated in 19.0).
//! - `common.version` needs no login and answers `server_version`,
//!   `server_version_info` (`[17, 0, 0, "final", 0, ""]`, "e" last for Enterprise),
//!   `server_serie`, `protocol_version` (`odoo/service/common.py`, `exp_version`).
//! - `common.authenticate(db, login, key, {})` answers the uid, or `false` for a
//!   wrong login or key (never an error) (`exp_authenticate`); `object.execute_kw`
//!   with a wrong key raises `odoo.exceptions.AccessDenied` ("Access Denied")
//!   (`odoo/service/model.py`, `dispatch` → `security.check`).
//! - `POST /json/2/<model>/<method>` (Odoo 19+ only; a 404 before): `Authorization:
//!   bearer <key>`, `X-Odoo-Database`, a JSON object of named parameters plus
//!   `ids` and `context`; 200 with the bare result, else a 4xx/5xx status with the
//!   error object `{name, message, arguments, context, debug}`: 401
//!   `werkzeug.exceptions.Unauthorized` "Invalid apikey" for a bad or missing key,
//!   403 for `AccessError`, 404 for an unknown model or method ("the model 'x' does
//!   not exist"), 422 for `UserError`/`ValidationError` and for an unexpected
//!   parameter ("got an unexpected keyword argument 'x'"), 500 otherwise (Odoo
//!   documentation, "External JSON-2 API", Request/Response; odoo/odoo
//!   `addons/rpc/controllers/json2.py`, `web_json_2_rpc` and its dispatcher).
//!
//! **Model rules**
//! - Unknown fields in `fields`, `create` or `write` raise `ValueError: Invalid field
//!   'mobile' on model 'res.partner'` (`BaseModel._fields` checks in `read`/
//!   `_check_field_access`/`_add_missing_default_values`). `res.partner.mobile`
//!   exists up to 18 and not in 19 (the phone/mobile merge of Odoo 19's
//!   `base/models/res_partner.py`).
//! - Required fields missing on `create` raise `ValidationError` with Odoo's
//!   not-null text, "Model: Helpdesk Ticket (helpdesk.ticket)\nField: Description
//!   (description)" (`odoo/service/model.py`, `NOT_NULL_VIOLATION_MESSAGE`):
//!   `helpdesk.ticket.name` on both help desks, `description` on OCA's
//!   (`helpdesk_mgmt/models/helpdesk_ticket.py`: `description = fields.Html(
//!   required=True)`), `mail.activity` `res_model_id`, `res_id`, `date_deadline`.
//! - `write_date` is set on every `create` and `write` (`BaseModel._write` /
//!   `_create`, log access fields), to the second, UTC, `"%Y-%m-%d %H:%M:%S"`.
//! - Archived records (`active = false`) are hidden from searches unless the
//!   domain names `active` or the context has `active_test: false`
//!   (`BaseModel._search`, `_active_name`).
//! - Access: a model/operation can be denied to the bot, raising `AccessError`
//!   "You are not allowed to create 'Helpdesk Ticket' (helpdesk.ticket) records."
//!   (`ir.model.access` `check`); `check_access_rights(op, raise_exception=False)`
//!   answers a boolean before 18, `has_access(op)` from 18.
//! - Execute_kw on a model that is not installed: `UserError` "Object x doesn't
//!   exist" (`odoo/service/model.py`, `execute_cr`).
//! - Enterprise `helpdesk.ticket.partner_phone` is written back onto the partner's
//!   own `phone` when the ticket has a partner (the inverse Odoo uses for such
//!   contact fields, as `crm.lead._inverse_phone` in `addons/crm/models/crm_lead.py`).
//!   OCA's ticket has no `partner_phone`, a `number` from a sequence, and a
//!   `channel_id` (`helpdesk.ticket.channel`, with a "Phone" channel in its data).
//! - `message_post` on a record adds a `mail.message` (`model`, `res_id`, `body`,
//!   `message_type`) and answers its id (`mail.thread.message_post`);
//!   `activity_schedule(act_type_xmlid, date_deadline, summary, note, user_id=…)`
//!   adds a `mail.activity` (`mail.activity.mixin`); `action_feedback` marks it
//!   done: since 17 the activity is kept archived with `date_done`
//!   (`mail.activity._action_done`, "keep done activities").

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

/// Which help desk the database has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helpdesk {
    /// Odoo Enterprise's Helpdesk.
    Enterprise,
    /// OCA `helpdesk_mgmt`.
    Oca,
    /// None installed.
    None,
}

/// What kind of Odoo to play.
#[derive(Debug, Clone)]
pub struct OdooSpec {
    /// 16, 17, 18: JSON-RPC only; 19: JSON-2 too, `res.partner.mobile` gone.
    pub major: u32,
    /// Enterprise edition (the version info says "e").
    pub enterprise: bool,
    /// The help desk installed.
    pub helpdesk: Helpdesk,
    /// Database name.
    pub database: String,
    /// The bot's login.
    pub login: String,
    /// The bot's API key.
    pub api_key: String,
}

impl OdooSpec {
    /// A 17-style server (JSON-RPC, `mobile` present).
    pub fn v17(helpdesk: Helpdesk) -> Self {
        Self::new(17, helpdesk)
    }

    /// A 19-style server (JSON-2, no `mobile`).
    pub fn v19(helpdesk: Helpdesk) -> Self {
        Self::new(19, helpdesk)
    }

    fn new(major: u32, helpdesk: Helpdesk) -> Self {
        OdooSpec {
            major,
            enterprise: helpdesk == Helpdesk::Enterprise,
            helpdesk,
            database: "prod".to_owned(),
            login: "fiche-bot".to_owned(),
            api_key: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        }
    }
}

/// An error as Odoo raises it.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Fully qualified exception name.
    pub name: &'static str,
    /// Its message.
    pub message: String,
    /// The JSON-2 status.
    pub status: u16,
}

impl Fault {
    fn value_error(message: String) -> Self {
        Fault {
            name: "builtins.ValueError",
            message,
            status: 500,
        }
    }
    fn validation(message: String) -> Self {
        Fault {
            name: "odoo.exceptions.ValidationError",
            message,
            status: 422,
        }
    }
    fn user(message: String) -> Self {
        Fault {
            name: "odoo.exceptions.UserError",
            message,
            status: 422,
        }
    }
    fn access(message: String) -> Self {
        Fault {
            name: "odoo.exceptions.AccessError",
            message,
            status: 403,
        }
    }
    fn access_denied() -> Self {
        Fault {
            name: "odoo.exceptions.AccessDenied",
            message: "Access Denied".to_owned(),
            status: 401,
        }
    }
    fn not_found(message: String) -> Self {
        Fault {
            name: "werkzeug.exceptions.NotFound",
            message,
            status: 404,
        }
    }
    fn unprocessable(message: String) -> Self {
        Fault {
            name: "werkzeug.exceptions.UnprocessableEntity",
            message,
            status: 422,
        }
    }
    fn missing(message: String) -> Self {
        Fault {
            name: "odoo.exceptions.MissingError",
            message,
            status: 404,
        }
    }

    fn object(&self) -> Value {
        json!({
            "name": self.name,
            "message": self.message,
            "arguments": [self.message],
            "context": {},
            "debug": format!("Traceback (most recent call last):\n{}: {}\n", self.name, self.message),
        })
    }
}

type Outcome = Result<Value, Fault>;

/// One field of a model: its type, whether it is required, its relation.
#[derive(Debug, Clone)]
struct FieldDef {
    kind: &'static str,
    string: &'static str,
    required: bool,
    relation: Option<&'static str>,
}

fn field(kind: &'static str, string: &'static str) -> FieldDef {
    FieldDef {
        kind,
        string,
        required: false,
        relation: None,
    }
}

fn required(mut def: FieldDef) -> FieldDef {
    def.required = true;
    def
}

fn relation(mut def: FieldDef, model: &'static str) -> FieldDef {
    def.relation = Some(model);
    def
}

/// The models of the database, with their fields for this version and help desk.
fn schema(
    spec: &OdooSpec,
) -> BTreeMap<&'static str, (&'static str, BTreeMap<&'static str, FieldDef>)> {
    let mut models = BTreeMap::new();
    let common = |extra: Vec<(&'static str, FieldDef)>| {
        let mut fields: BTreeMap<&'static str, FieldDef> = BTreeMap::from([
            ("id", field("integer", "ID")),
            ("display_name", field("char", "Display Name")),
            ("create_date", field("datetime", "Created on")),
            ("write_date", field("datetime", "Last Updated on")),
        ]);
        fields.extend(extra);
        fields
    };
    let mut partner = vec![
        ("name", field("char", "Name")),
        ("is_company", field("boolean", "Is a Company")),
        (
            "parent_id",
            relation(field("many2one", "Related Company"), "res.partner"),
        ),
        (
            "commercial_partner_id",
            relation(field("many2one", "Commercial Entity"), "res.partner"),
        ),
        ("type", field("selection", "Address Type")),
        ("phone", field("char", "Phone")),
        ("email", field("char", "Email")),
        ("street", field("char", "Street")),
        ("street2", field("char", "Street2")),
        ("zip", field("char", "Zip")),
        ("city", field("char", "City")),
        (
            "country_id",
            relation(field("many2one", "Country"), "res.country"),
        ),
        ("comment", field("html", "Notes")),
        (
            "category_id",
            relation(field("many2many", "Tags"), "res.partner.category"),
        ),
        ("active", field("boolean", "Active")),
    ];
    if spec.major < 19 {
        partner.push(("mobile", field("char", "Mobile")));
    }
    models.insert("res.partner", ("Contact", common(partner)));
    models.insert(
        "res.partner.category",
        (
            "Partner Tags",
            common(vec![
                ("name", required(field("char", "Tag Name"))),
                ("active", field("boolean", "Active")),
            ]),
        ),
    );
    models.insert(
        "res.country",
        (
            "Country",
            common(vec![("name", required(field("char", "Country Name")))]),
        ),
    );
    models.insert(
        "res.users",
        (
            "User",
            common(vec![
                ("login", required(field("char", "Login"))),
                ("name", field("char", "Name")),
                ("email", field("char", "Email")),
                ("active", field("boolean", "Active")),
            ]),
        ),
    );
    models.insert(
        "ir.model",
        (
            "Models",
            common(vec![
                ("model", required(field("char", "Model"))),
                ("name", field("char", "Model Description")),
            ]),
        ),
    );
    models.insert(
        "mail.message",
        (
            "Message",
            common(vec![
                ("model", field("char", "Related Document Model")),
                ("res_id", field("many2one_reference", "Related Document ID")),
                ("body", field("html", "Contents")),
                ("message_type", field("selection", "Type")),
                ("subtype_xmlid", field("char", "Subtype")),
                (
                    "author_id",
                    relation(field("many2one", "Author"), "res.partner"),
                ),
            ]),
        ),
    );
    models.insert(
        "mail.activity.type",
        (
            "Activity Type",
            common(vec![
                ("name", required(field("char", "Name"))),
                ("category", field("selection", "Action")),
                ("active", field("boolean", "Active")),
            ]),
        ),
    );
    models.insert(
        "mail.activity",
        (
            "Activity",
            common(vec![
                (
                    "res_model_id",
                    required(relation(field("many2one", "Document Model"), "ir.model")),
                ),
                ("res_model", field("char", "Related Document Model")),
                (
                    "res_id",
                    required(field("many2one_reference", "Related Document ID")),
                ),
                (
                    "activity_type_id",
                    relation(field("many2one", "Activity Type"), "mail.activity.type"),
                ),
                ("summary", field("char", "Summary")),
                ("note", field("html", "Note")),
                ("date_deadline", required(field("date", "Due Date"))),
                (
                    "user_id",
                    relation(field("many2one", "Assigned to"), "res.users"),
                ),
                ("active", field("boolean", "Active")),
                ("date_done", field("date", "Done Date")),
            ]),
        ),
    );
    let ticket_common = vec![
        ("name", required(field("char", "Subject"))),
        (
            "partner_id",
            relation(field("many2one", "Customer"), "res.partner"),
        ),
        ("partner_name", field("char", "Customer Name")),
        ("partner_email", field("char", "Customer Email")),
        (
            "user_id",
            relation(field("many2one", "Assigned to"), "res.users"),
        ),
        ("priority", field("selection", "Priority")),
        (
            "stage_id",
            relation(field("many2one", "Stage"), "helpdesk.stage"),
        ),
        ("active", field("boolean", "Active")),
    ];
    match spec.helpdesk {
        Helpdesk::Enterprise => {
            let mut fields = ticket_common;
            fields.push(("description", field("html", "Description")));
            fields.push(("partner_phone", field("char", "Customer Phone")));
            fields.push((
                "team_id",
                relation(field("many2one", "Helpdesk Team"), "helpdesk.team"),
            ));
            models.insert("helpdesk.ticket", ("Helpdesk Ticket", common(fields)));
            // Enterprise's `helpdesk.stage`: a folded stage is a closing one
            // (helpdesk/models/helpdesk_stage.py, `fold`, "Folded in Kanban";
            // helpdesk_ticket.py sets `close_date` when the ticket enters a folded
            // stage, and the stock "Solved" and "Cancelled" stages are folded).
            models.insert(
                "helpdesk.stage",
                (
                    "Helpdesk Stage",
                    common(vec![
                        ("name", required(field("char", "Stage Name"))),
                        ("sequence", field("integer", "Sequence")),
                        ("fold", field("boolean", "Folded in Kanban")),
                    ]),
                ),
            );
        }
        Helpdesk::Oca => {
            let mut fields = ticket_common;
            fields.push(("description", required(field("html", "Description"))));
            fields.push(("number", field("char", "Ticket number")));
            fields.push((
                "channel_id",
                relation(field("many2one", "Channel"), "helpdesk.ticket.channel"),
            ));
            fields.push((
                "team_id",
                relation(field("many2one", "Team"), "helpdesk.ticket.team"),
            ));
            // OCA's tickets point at `helpdesk.ticket.stage`, whose `closed` flag
            // marks the closing stages (OCA/helpdesk helpdesk_mgmt
            // models/helpdesk_ticket_stage.py; data/helpdesk_data.xml makes
            // "Done" and "Cancelled" closed).
            for (name, def) in fields.iter_mut() {
                if *name == "stage_id" {
                    *def = relation(field("many2one", "Stage"), "helpdesk.ticket.stage");
                }
            }
            models.insert("helpdesk.ticket", ("Helpdesk Ticket", common(fields)));
            models.insert(
                "helpdesk.ticket.stage",
                (
                    "Helpdesk Ticket Stage",
                    common(vec![
                        ("name", required(field("char", "Stage Name"))),
                        ("sequence", field("integer", "Sequence")),
                        ("closed", field("boolean", "Closed")),
                    ]),
                ),
            );
            models.insert(
                "helpdesk.ticket.channel",
                (
                    "Helpdesk Ticket Channel",
                    common(vec![
                        ("name", required(field("char", "Name"))),
                        ("active", field("boolean", "Active")),
                    ]),
                ),
            );
        }
        Helpdesk::None => {}
    }
    models
}

/// The database.
pub struct Db {
    spec: OdooSpec,
    models: BTreeMap<&'static str, (&'static str, BTreeMap<&'static str, FieldDef>)>,
    records: HashMap<&'static str, BTreeMap<i64, Map<String, Value>>>,
    next_id: HashMap<&'static str, i64>,
    denied: HashSet<(String, String)>,
    down: bool,
    bot_uid: i64,
    ticket_sequence: u64,
}

/// Odoo's datetime format (UTC, to the second).
pub fn odoo_now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

impl Db {
    fn new(spec: OdooSpec) -> Self {
        let models = schema(&spec);
        let mut db = Db {
            spec,
            models,
            records: HashMap::new(),
            next_id: HashMap::new(),
            denied: HashSet::new(),
            down: false,
            bot_uid: 0,
            ticket_sequence: 0,
        };
        // Odoo's data: the admin, the bot, activity types, models, OCA channels.
        db.insert_raw(
            "res.users",
            json!({"login": "admin", "name": "Mitchell Admin", "email": "admin@example.com"}),
        );
        let login = db.spec.login.clone();
        db.bot_uid = db.insert_raw(
            "res.users",
            json!({"login": login, "name": "Fiche (bot)", "email": "fiche-bot@example.com"}),
        );
        for (name, category) in [
            ("Email", "default"),
            ("Call", "phonecall"),
            ("Meeting", "default"),
            ("To-Do", "default"),
        ] {
            db.insert_raw(
                "mail.activity.type",
                json!({"name": name, "category": category}),
            );
        }
        for model in ["res.partner", "helpdesk.ticket"] {
            db.insert_raw("ir.model", json!({"model": model, "name": model}));
        }
        if db.spec.helpdesk == Helpdesk::Oca {
            for name in ["Web", "Email", "Phone", "Other"] {
                db.insert_raw("helpdesk.ticket.channel", json!({"name": name}));
            }
        }
        let stages = [
            ("New", false),
            ("In Progress", false),
            ("Done", true),
            ("Cancelled", true),
        ];
        for (sequence, (name, closing)) in stages.into_iter().enumerate() {
            match db.spec.helpdesk {
                Helpdesk::Enterprise => db.insert_raw(
                    "helpdesk.stage",
                    json!({"name": name, "sequence": sequence, "fold": closing}),
                ),
                Helpdesk::Oca => db.insert_raw(
                    "helpdesk.ticket.stage",
                    json!({"name": name, "sequence": sequence, "closed": closing}),
                ),
                Helpdesk::None => 0,
            };
        }
        db
    }

    fn model(
        &self,
        model: &str,
    ) -> Result<(&'static str, &BTreeMap<&'static str, FieldDef>), Fault> {
        self.models
            .get_key_value(model)
            .map(|(name, (_, fields))| (*name, fields))
            .ok_or_else(|| Fault::user(format!("Object {model} doesn't exist")))
    }

    /// Inserts without checks (the database's own data, and what a user does in
    /// Odoo's interface); returns the id.
    fn insert_raw(&mut self, model: &str, values: Value) -> i64 {
        let Some((name, _)) = self.models.get_key_value(model) else {
            panic!("no model {model} on this test server");
        };
        let name: &'static str = name;
        let id = {
            let next = self.next_id.entry(name).or_insert(1);
            let id = *next;
            *next += 1;
            id
        };
        let mut record = Map::new();
        if let Value::Object(values) = values {
            record.extend(values);
        }
        record.insert("id".to_owned(), json!(id));
        record.entry("active").or_insert(json!(true));
        let now = odoo_now();
        record.insert("create_date".to_owned(), json!(now));
        record.insert("write_date".to_owned(), json!(now));
        self.records.entry(name).or_default().insert(id, record);
        if name == "res.partner" {
            self.compute_partner(id);
        }
        id
    }

    fn compute_partner(&mut self, id: i64) {
        let Some(record) = self
            .records
            .get("res.partner")
            .and_then(|r| r.get(&id))
            .cloned()
        else {
            return;
        };
        // commercial_partner_id: the company of a contact, else itself.
        let commercial = match record.get("parent_id") {
            Some(Value::Number(parent)) => parent.as_i64().unwrap_or(id),
            Some(Value::Array(pair)) => pair.first().and_then(Value::as_i64).unwrap_or(id),
            _ => id,
        };
        let partners = self.records.entry("res.partner").or_default();
        if let Some(r) = partners.get_mut(&id) {
            r.insert("commercial_partner_id".to_owned(), json!(commercial));
            let name = r.get("name").cloned().unwrap_or(json!(false));
            r.insert("display_name".to_owned(), name);
        }
    }

    fn check_access(&self, model: &str, operation: &str) -> Result<(), Fault> {
        if self
            .denied
            .contains(&(model.to_owned(), operation.to_owned()))
        {
            let description = self.models.get(model).map(|(d, _)| *d).unwrap_or("");
            return Err(Fault::access(format!(
                "You are not allowed to {operation} '{description}' ({model}) records.\n\n\
                 This operation is allowed for the following groups:\n\t- Helpdesk/User"
            )));
        }
        Ok(())
    }

    fn check_fields<'a>(
        &self,
        model: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Fault> {
        let (_, fields) = self.model(model)?;
        for name in names {
            if !fields.contains_key(name) {
                return Err(Fault::value_error(format!(
                    "Invalid field '{name}' on model '{model}'"
                )));
            }
        }
        Ok(())
    }

    /// The value of a field as `read` returns it.
    fn read_value(&self, model: &str, record: &Map<String, Value>, name: &str) -> Value {
        let Ok((_, fields)) = self.model(model) else {
            return Value::Bool(false);
        };
        let def = fields.get(name);
        let raw = record.get(name).cloned().unwrap_or(Value::Bool(false));
        match def.map(|d| (d.kind, d.relation)) {
            Some(("many2one", Some(comodel))) => {
                let id = match &raw {
                    Value::Number(n) => n.as_i64(),
                    Value::Array(pair) => pair.first().and_then(Value::as_i64),
                    _ => None,
                };
                match id {
                    Some(id) => {
                        let label = self
                            .records
                            .get(comodel)
                            .and_then(|r| r.get(&id))
                            .and_then(|r| r.get("name").or_else(|| r.get("display_name")))
                            .cloned()
                            .unwrap_or(json!(""));
                        json!([id, label])
                    }
                    None => Value::Bool(false),
                }
            }
            Some(("many2many", _)) => match raw {
                Value::Array(items) => Value::Array(items),
                _ => json!([]),
            },
            Some(("boolean", _)) => Value::Bool(raw.as_bool().unwrap_or(false)),
            Some(_) => {
                if raw.is_null() {
                    Value::Bool(false)
                } else {
                    raw
                }
            }
            None => raw,
        }
    }

    fn search_ids(
        &self,
        model: &str,
        domain: &Value,
        context: &Map<String, Value>,
        order: Option<&str>,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<i64>, Fault> {
        let (name, fields) = self.model(model)?;
        let terms = domain.as_array().cloned().unwrap_or_default();
        let active_test = context.get("active_test").and_then(Value::as_bool) != Some(false)
            && fields.contains_key("active")
            && !terms
                .iter()
                .any(|t| t.get(0).and_then(Value::as_str) == Some("active"));
        let empty = BTreeMap::new();
        let records = self.records.get(name).unwrap_or(&empty);
        let mut found: Vec<&Map<String, Value>> = Vec::new();
        for record in records.values() {
            if active_test && record.get("active").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let mut position = 0;
            if terms.is_empty() || eval(&terms, &mut position, record)? {
                found.push(record);
            }
        }
        if let Some(order) = order {
            let keys: Vec<(String, bool)> = order
                .split(',')
                .map(|part| {
                    let mut words = part.split_whitespace();
                    let field = words.next().unwrap_or("id").to_owned();
                    let desc = words.next().is_some_and(|w| w.eq_ignore_ascii_case("desc"));
                    (field, desc)
                })
                .collect();
            self.check_fields(model, keys.iter().map(|(f, _)| f.as_str()))?;
            found.sort_by(|a, b| {
                for (field, desc) in &keys {
                    let ordering = compare(a.get(field), b.get(field));
                    if ordering != std::cmp::Ordering::Equal {
                        return if *desc { ordering.reverse() } else { ordering };
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        Ok(found
            .into_iter()
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .filter_map(|r| r.get("id").and_then(Value::as_i64))
            .collect())
    }

    fn read(&self, model: &str, ids: &[i64], fields: Option<&[String]>) -> Outcome {
        let (name, defs) = self.model(model)?;
        let names: Vec<String> = match fields {
            Some(fields) if !fields.is_empty() => {
                self.check_fields(model, fields.iter().map(String::as_str))?;
                fields.to_vec()
            }
            _ => defs.keys().map(|k| (*k).to_owned()).collect(),
        };
        let mut out = Vec::new();
        for id in ids {
            let record = self
                .records
                .get(name)
                .and_then(|r| r.get(id))
                .ok_or_else(|| Fault::missing(format!("Record does not exist or has been deleted.\n(Record: {model}({id},), User: {})", self.bot_uid)))?;
            let mut row = Map::new();
            row.insert("id".to_owned(), json!(id));
            for field in &names {
                row.insert(field.clone(), self.read_value(model, record, field));
            }
            out.push(Value::Object(row));
        }
        Ok(Value::Array(out))
    }

    fn create(&mut self, model: &str, values: &Map<String, Value>) -> Result<i64, Fault> {
        self.check_access(model, "create")?;
        self.check_fields(model, values.keys().map(String::as_str))?;
        let (name, defs) = self.model(model)?;
        let (description, _) = self
            .models
            .get(name)
            .map(|(d, f)| (*d, f))
            .unwrap_or(("", defs));
        let mut values = values.clone();
        if name == "helpdesk.ticket" && self.spec.helpdesk == Helpdesk::Oca {
            self.ticket_sequence += 1;
            values.insert(
                "number".to_owned(),
                json!(format!("HT{:05}", self.ticket_sequence)),
            );
            values.entry("priority").or_insert(json!("1"));
        }
        if name == "mail.activity" {
            values.entry("user_id").or_insert(json!(self.bot_uid));
            if let Some(model_id) = values.get("res_model_id").and_then(Value::as_i64) {
                let res_model = self
                    .records
                    .get("ir.model")
                    .and_then(|r| r.get(&model_id))
                    .and_then(|r| r.get("model"))
                    .cloned();
                if let Some(res_model) = res_model {
                    values.insert("res_model".to_owned(), res_model);
                }
            }
        }
        let defs = self.model(model)?.1;
        for (field, def) in defs {
            let given = values
                .get(*field)
                .filter(|v| !matches!(v, Value::Null | Value::Bool(false)));
            let empty_text = given.and_then(Value::as_str).is_some_and(str::is_empty);
            if def.required && (given.is_none() || empty_text) {
                return Err(Fault::validation(format!(
                    "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n\
                     - Delete: another model requires the record being deleted. If possible, archive it instead.\n\n\
                     Model: {description} ({name})\nField: {} ({field})\n",
                    def.string
                )));
            }
        }
        let inverse_phone = if name == "helpdesk.ticket" {
            values.get("partner_phone").cloned()
        } else {
            None
        };
        let id = self.insert_raw(name, Value::Object(values));
        if let Some(phone) = inverse_phone {
            self.inverse_partner_phone(id, phone);
        }
        Ok(id)
    }

    /// Enterprise: a ticket's `partner_phone` is written onto its partner's phone.
    fn inverse_partner_phone(&mut self, ticket: i64, phone: Value) {
        let partner = self
            .records
            .get("helpdesk.ticket")
            .and_then(|r| r.get(&ticket))
            .and_then(|t| t.get("partner_id"))
            .and_then(Value::as_i64);
        if let Some(partner) = partner {
            let now = odoo_now();
            if let Some(record) = self
                .records
                .get_mut("res.partner")
                .and_then(|r| r.get_mut(&partner))
            {
                if record.get("phone") != Some(&phone) {
                    record.insert("phone".to_owned(), phone);
                    record.insert("write_date".to_owned(), json!(now));
                }
            }
        }
    }

    fn write(&mut self, model: &str, ids: &[i64], values: &Map<String, Value>) -> Outcome {
        self.check_access(model, "write")?;
        self.check_fields(model, values.keys().map(String::as_str))?;
        let (name, defs) = self.model(model)?;
        for (field, value) in values {
            if defs.get(field.as_str()).is_some_and(|d| d.required)
                && matches!(value, Value::Bool(false) | Value::Null)
            {
                return Err(Fault::validation(format!(
                    "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n\nModel: ({name})\nField: ({field})\n"
                )));
            }
        }
        let now = odoo_now();
        for id in ids {
            let record = self
                .records
                .get_mut(name)
                .and_then(|r| r.get_mut(id))
                .ok_or_else(|| {
                    Fault::missing(format!(
                        "Record does not exist or has been deleted.\n(Record: {model}({id},))"
                    ))
                })?;
            record.extend(values.clone());
            record.insert("write_date".to_owned(), json!(now));
            if name == "res.partner" {
                self.compute_partner(*id);
            }
            if name == "helpdesk.ticket" {
                if let Some(phone) = values.get("partner_phone") {
                    self.inverse_partner_phone(*id, phone.clone());
                }
            }
        }
        Ok(json!(true))
    }

    fn records_of(&self, model: &str) -> Vec<Map<String, Value>> {
        self.records
            .get(model)
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// A domain in Polish notation, evaluated on one record (`&` implicit between terms).
fn eval(terms: &[Value], position: &mut usize, record: &Map<String, Value>) -> Result<bool, Fault> {
    let mut result = true;
    while *position < terms.len() {
        result &= eval_one(terms, position, record)?;
    }
    Ok(result)
}

fn eval_one(
    terms: &[Value],
    position: &mut usize,
    record: &Map<String, Value>,
) -> Result<bool, Fault> {
    let term = terms
        .get(*position)
        .ok_or_else(|| Fault::value_error("Invalid domain: missing term".to_owned()))?;
    *position += 1;
    match term {
        Value::String(op) if op == "|" => {
            let a = eval_one(terms, position, record)?;
            let b = eval_one(terms, position, record)?;
            Ok(a || b)
        }
        Value::String(op) if op == "&" => {
            let a = eval_one(terms, position, record)?;
            let b = eval_one(terms, position, record)?;
            Ok(a && b)
        }
        Value::String(op) if op == "!" => Ok(!eval_one(terms, position, record)?),
        Value::Array(leaf) if leaf.len() == 3 => {
            let field = leaf[0].as_str().unwrap_or("");
            let op = leaf[1].as_str().unwrap_or("");
            let value = &leaf[2];
            let mut have = record.get(field).cloned().unwrap_or(Value::Bool(false));
            if let Value::Array(pair) = &have {
                if pair.len() == 2 && pair[1].is_string() {
                    have = pair[0].clone();
                }
            }
            Ok(match op {
                "=" => loose_eq(&have, value),
                "!=" => !loose_eq(&have, value),
                ">" => {
                    compare(Some(&have), Some(value)) == std::cmp::Ordering::Greater
                        && !is_false(&have)
                }
                ">=" => {
                    compare(Some(&have), Some(value)) != std::cmp::Ordering::Less
                        && !is_false(&have)
                }
                "<" => {
                    compare(Some(&have), Some(value)) == std::cmp::Ordering::Less
                        && !is_false(&have)
                }
                "<=" => {
                    compare(Some(&have), Some(value)) != std::cmp::Ordering::Greater
                        && !is_false(&have)
                }
                "in" => value
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| loose_eq(&have, x))),
                "not in" => !value
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| loose_eq(&have, x))),
                "ilike" => {
                    let needle = value.as_str().unwrap_or("").to_lowercase();
                    have.as_str()
                        .is_some_and(|h| h.to_lowercase().contains(&needle))
                }
                other => return Err(Fault::value_error(format!("Invalid operator {other:?}"))),
            })
        }
        other => Err(Fault::value_error(format!("Invalid leaf {other}"))),
    }
}

fn is_false(value: &Value) -> bool {
    matches!(value, Value::Bool(false) | Value::Null)
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(items), single) if !single.is_array() => {
            items.iter().any(|i| loose_eq(i, single))
        }
        _ => a == b || (is_false(a) && is_false(b)),
    }
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Array(x)), Some(Value::Array(y))) => compare(x.first(), y.first()),
        (Some(x), Some(y)) => is_false(y).cmp(&is_false(x)),
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// The positional parameters of the methods served, as JSON-RPC passes them,
/// and whether the method runs on records (its first argument is then the ids).
fn signature(method: &str) -> Option<(bool, &'static [&'static str])> {
    Some(match method {
        "search_read" => (false, &["domain", "fields", "offset", "limit", "order"]),
        "search" => (false, &["domain", "offset", "limit", "order"]),
        "search_count" => (false, &["domain", "limit"]),
        "fields_get" => (false, &["allfields", "attributes"]),
        "create" => (false, &["vals_list"]),
        "check_access_rights" => (false, &["operation", "raise_exception"]),
        "read" => (true, &["fields"]),
        "write" => (true, &["vals"]),
        "unlink" => (true, &[]),
        "has_access" => (true, &["operation"]),
        "message_post" => (
            true,
            &["body", "message_type", "subtype_xmlid", "author_id"],
        ),
        "activity_schedule" => (
            true,
            &[
                "act_type_xmlid",
                "date_deadline",
                "summary",
                "note",
                "user_id",
            ],
        ),
        "action_feedback" => (true, &["feedback", "attachment_ids"]),
        _ => return None,
    })
}

impl Db {
    /// Runs one ORM method for the bot user.
    fn execute(
        &mut self,
        model: &str,
        method: &str,
        ids: Vec<i64>,
        params: Map<String, Value>,
        context: Map<String, Value>,
    ) -> Outcome {
        let (name, _) = self.model(model)?;
        let limit = params
            .get("limit")
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        let offset = params.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
        let domain = params.get("domain").cloned().unwrap_or(json!([]));
        let order = params
            .get("order")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let string_list = |key: &str| -> Option<Vec<String>> {
            params.get(key).and_then(Value::as_array).map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
        };
        match method {
            "search_read" => {
                self.check_access(name, "read")?;
                let found = self.search_ids(
                    name,
                    &domain,
                    &context,
                    order.as_deref().or(Some("id")),
                    offset,
                    limit,
                )?;
                self.read(name, &found, string_list("fields").as_deref())
            }
            "search" => {
                self.check_access(name, "read")?;
                Ok(json!(self.search_ids(
                    name,
                    &domain,
                    &context,
                    order.as_deref().or(Some("id")),
                    offset,
                    limit
                )?))
            }
            "search_count" => {
                self.check_access(name, "read")?;
                Ok(json!(self
                    .search_ids(name, &domain, &context, None, 0, limit)?
                    .len()))
            }
            "read" => {
                self.check_access(name, "read")?;
                self.read(name, &ids, string_list("fields").as_deref())
            }
            "fields_get" => {
                self.check_access(name, "read")?;
                let (_, defs) = self.model(name)?;
                let mut out = Map::new();
                for (field, def) in defs {
                    let mut attributes =
                        json!({"type": def.kind, "string": def.string, "required": def.required});
                    if let Some(relation) = def.relation {
                        attributes["relation"] = json!(relation);
                    }
                    out.insert((*field).to_owned(), attributes);
                }
                Ok(Value::Object(out))
            }
            "create" => {
                let values = params.get("vals_list").cloned().unwrap_or(Value::Null);
                match values {
                    Value::Object(one) => Ok(json!(self.create(name, &one)?)),
                    Value::Array(many) => {
                        let mut created = Vec::new();
                        for one in many {
                            let Value::Object(one) = one else {
                                return Err(Fault::value_error("create expects dicts".to_owned()));
                            };
                            created.push(self.create(name, &one)?);
                        }
                        Ok(json!(created))
                    }
                    _ => Err(Fault::value_error("create expects vals_list".to_owned())),
                }
            }
            "write" => {
                let Some(Value::Object(values)) = params.get("vals") else {
                    return Err(Fault::value_error("write expects vals".to_owned()));
                };
                self.write(name, &ids, values)
            }
            "unlink" => {
                self.check_access(name, "unlink")?;
                for id in &ids {
                    self.records.get_mut(name).and_then(|r| r.remove(id));
                }
                Ok(json!(true))
            }
            "check_access_rights" if self.spec.major < 18 => {
                let operation = params
                    .get("operation")
                    .and_then(Value::as_str)
                    .unwrap_or("read");
                match self.check_access(name, operation) {
                    Ok(()) => Ok(json!(true)),
                    Err(_) if params.get("raise_exception") == Some(&json!(false)) => {
                        Ok(json!(false))
                    }
                    Err(fault) => Err(fault),
                }
            }
            "has_access" if self.spec.major >= 18 => {
                let operation = params
                    .get("operation")
                    .and_then(Value::as_str)
                    .unwrap_or("read");
                Ok(json!(self.check_access(name, operation).is_ok()))
            }
            "message_post" => {
                self.check_access(name, "read")?;
                let mut posted = Vec::new();
                for id in &ids {
                    if !self.records.get(name).is_some_and(|r| r.contains_key(id)) {
                        return Err(Fault::missing(format!(
                            "Record does not exist or has been deleted.\n(Record: {model}({id},))"
                        )));
                    }
                    let body = params.get("body").cloned().unwrap_or(json!(""));
                    posted.push(self.insert_raw("mail.message", json!({
                        "model": name, "res_id": id, "body": body,
                        "message_type": params.get("message_type").cloned().unwrap_or(json!("notification")),
                        "subtype_xmlid": params.get("subtype_xmlid").cloned().unwrap_or(json!(false)),
                    })));
                }
                Ok(posted.first().map(|id| json!(id)).unwrap_or(json!(false)))
            }
            "activity_schedule" => {
                self.check_access("mail.activity", "create")?;
                let xmlid = params
                    .get("act_type_xmlid")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let type_name = match xmlid {
                    "mail.mail_activity_data_call" => "Call",
                    "mail.mail_activity_data_email" => "Email",
                    "mail.mail_activity_data_meeting" => "Meeting",
                    _ => "To-Do",
                };
                let type_id = self
                    .records_of("mail.activity.type")
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(type_name))
                    .and_then(|t| t.get("id").and_then(Value::as_i64));
                let model_id = self
                    .records_of("ir.model")
                    .iter()
                    .find(|m| m.get("model").and_then(Value::as_str) == Some(name))
                    .and_then(|m| m.get("id").and_then(Value::as_i64));
                let mut created = Vec::new();
                for id in &ids {
                    let mut values = Map::new();
                    values.insert("res_model_id".to_owned(), json!(model_id));
                    values.insert("res_id".to_owned(), json!(id));
                    values.insert("activity_type_id".to_owned(), json!(type_id));
                    for key in ["date_deadline", "summary", "note", "user_id"] {
                        if let Some(value) = params.get(key) {
                            values.insert(key.to_owned(), value.clone());
                        }
                    }
                    created.push(self.create("mail.activity", &values)?);
                }
                Ok(json!(created))
            }
            "action_feedback" if name == "mail.activity" => {
                self.check_access(name, "write")?;
                let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
                let mut values = Map::new();
                values.insert("active".to_owned(), json!(false));
                values.insert("date_done".to_owned(), json!(today));
                self.write(name, &ids, &values)?;
                Ok(json!(false))
            }
            _ => Err(Fault::not_found(format!(
                "The method '{method}' does not exist on the model '{model}'"
            ))),
        }
    }
}

/// The Odoo test server, serving until dropped.
pub struct TestOdoo {
    addr: SocketAddr,
    db: Arc<Mutex<Db>>,
    requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for TestOdoo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Shared {
    db: Arc<Mutex<Db>>,
    requests: Arc<AtomicU64>,
}

fn lock(db: &Mutex<Db>) -> MutexGuard<'_, Db> {
    db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TestOdoo {
    /// Starts a server on a loopback port.
    pub async fn start(spec: OdooSpec) -> anyhow::Result<Self> {
        let db = Arc::new(Mutex::new(Db::new(spec)));
        let requests = Arc::new(AtomicU64::new(0));
        let shared = Shared {
            db: db.clone(),
            requests: requests.clone(),
        };
        let app = Router::new()
            .route("/jsonrpc", post(jsonrpc))
            .route("/json/2/{model}/{method}", post(json2))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(TestOdoo {
            addr,
            db,
            requests,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spec it plays.
    pub fn spec(&self) -> OdooSpec {
        lock(&self.db).spec.clone()
    }

    /// Requests served (all routes).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// While true, every request is answered 503 (Odoo down behind its proxy).
    pub fn set_down(&self, down: bool) {
        lock(&self.db).down = down;
    }

    /// Denies `operation` on `model` to the bot (an access right not granted).
    pub fn deny(&self, model: &str, operation: &str) {
        lock(&self.db)
            .denied
            .insert((model.to_owned(), operation.to_owned()));
    }

    /// Adds a partner as a user would in Odoo; returns its id.
    pub fn add_partner(&self, values: Value) -> i64 {
        lock(&self.db).insert_raw("res.partner", values)
    }

    /// Adds a record of any model; returns its id.
    pub fn add(&self, model: &str, values: Value) -> i64 {
        lock(&self.db).insert_raw(model, values)
    }

    /// Adds `count` people, each with a distinct French number
    /// (`01 <8 digits of 10_000_000 + i>`), every tenth a contact of a company.
    pub fn seed_partners(&self, count: usize) {
        let mut db = lock(&self.db);
        let tag = db.insert_raw("res.partner.category", json!({"name": "VIP"}));
        let company = db.insert_raw(
            "res.partner",
            json!({"name": "Boulangerie Martin", "is_company": true}),
        );
        for i in 0..count {
            let digits = format!("{:08}", 10_000_000 + i);
            let mut values = json!({
                "name": format!("Client {i}"),
                "phone": format!("01 {} {} {} {}", &digits[0..2], &digits[2..4], &digits[4..6], &digits[6..8]),
                "email": format!("client{i}@example.com"),
                "street": format!("{i} rue de la Paix"), "zip": "75002", "city": "Paris",
                "comment": "<p>Client fidèle</p>",
                "category_id": if i % 7 == 0 { json!([tag]) } else { json!([]) },
            });
            if i % 10 == 0 {
                values["parent_id"] = json!(company);
            }
            db.insert_raw("res.partner", values);
        }
    }

    /// Changes a partner as a user would (its `write_date` moves).
    pub fn write_partner(&self, id: i64, values: Value) {
        let mut db = lock(&self.db);
        let Value::Object(values) = values else {
            panic!("values must be an object")
        };
        let now = odoo_now();
        if let Some(record) = db
            .records
            .get_mut("res.partner")
            .and_then(|r| r.get_mut(&id))
        {
            record.extend(values);
            record.insert("write_date".to_owned(), json!(now));
        }
        db.compute_partner(id);
    }

    /// Deletes a partner (no trace left, as `unlink`).
    pub fn delete_partner(&self, id: i64) {
        lock(&self.db)
            .records
            .get_mut("res.partner")
            .and_then(|r| r.remove(&id));
    }

    /// Every record of `model`, archived ones included, in id order.
    pub fn records(&self, model: &str) -> Vec<Map<String, Value>> {
        lock(&self.db).records_of(model)
    }

    /// One record of `model`.
    pub fn record(&self, model: &str, id: i64) -> Option<Map<String, Value>> {
        lock(&self.db)
            .records
            .get(model)
            .and_then(|r| r.get(&id))
            .cloned()
    }
}

fn jsonrpc_error(id: &Value, fault: &Fault) -> Response {
    Json(json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": 200, "message": "Odoo Server Error", "data": fault.object()},
    }))
    .into_response()
}

async fn jsonrpc(State(shared): State<Shared>, body: Bytes) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let mut db = lock(&shared.db);
    if db.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable").into_response();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return Json(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}})).into_response();
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let params = request.get("params").cloned().unwrap_or(json!({}));
    let service = params.get("service").and_then(Value::as_str).unwrap_or("");
    let method = params.get("method").and_then(Value::as_str).unwrap_or("");
    let args = params
        .get("args")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let outcome: Outcome = match (service, method) {
        ("common", "version") => {
            let major = db.spec.major;
            let edition = if db.spec.enterprise { "e" } else { "" };
            let suffix = if db.spec.enterprise { "+e" } else { "" };
            Ok(json!({
                "server_version": format!("{major}.0{suffix}"),
                "server_version_info": [major, 0, 0, "final", 0, edition],
                "server_serie": format!("{major}.0"),
                "protocol_version": 1,
            }))
        }
        ("common", "authenticate" | "login") => {
            let ok = args.first().and_then(Value::as_str) == Some(db.spec.database.as_str())
                && args.get(1).and_then(Value::as_str) == Some(db.spec.login.as_str())
                && args.get(2).and_then(Value::as_str) == Some(db.spec.api_key.as_str());
            Ok(if ok { json!(db.bot_uid) } else { json!(false) })
        }
        ("object", "execute_kw") => {
            let ok = args.first().and_then(Value::as_str) == Some(db.spec.database.as_str())
                && args.get(1).and_then(Value::as_i64) == Some(db.bot_uid)
                && args.get(2).and_then(Value::as_str) == Some(db.spec.api_key.as_str());
            if !ok {
                Err(Fault::access_denied())
            } else {
                let model = args.get(3).and_then(Value::as_str).unwrap_or("").to_owned();
                let method = args.get(4).and_then(Value::as_str).unwrap_or("").to_owned();
                let positional = args
                    .get(5)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let mut kwargs = args
                    .get(6)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let context = match kwargs.remove("context") {
                    Some(Value::Object(context)) => context,
                    _ => Map::new(),
                };
                match signature(&method) {
                    None => Err(Fault::value_error(format!(
                        "The method '{method}' does not exist on the model '{model}'"
                    ))),
                    Some((on_records, names)) => {
                        let mut positional = positional.into_iter();
                        let ids: Vec<i64> = if on_records {
                            match positional.next() {
                                Some(Value::Array(ids)) => {
                                    ids.iter().filter_map(Value::as_i64).collect()
                                }
                                Some(Value::Number(id)) => id.as_i64().into_iter().collect(),
                                _ => Vec::new(),
                            }
                        } else {
                            Vec::new()
                        };
                        let mut params = Map::new();
                        for (name, value) in names.iter().zip(positional) {
                            params.insert((*name).to_owned(), value);
                        }
                        params.extend(kwargs);
                        db.execute(&model, &method, ids, params, context)
                    }
                }
            }
        }
        _ => Err(Fault {
            name: "builtins.NameError",
            message: format!("Method not available {method}"),
            status: 500,
        }),
    };
    match outcome {
        Ok(result) => Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response(),
        Err(fault) => jsonrpc_error(&id, &fault),
    }
}

async fn json2(
    State(shared): State<Shared>,
    Path((model, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let mut db = lock(&shared.db);
    if db.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable").into_response();
    }
    let fail = |fault: Fault| {
        let status =
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(fault.object())).into_response()
    };
    if db.spec.major < 19 {
        return fail(Fault::not_found(
            "404 Not Found: The requested URL was not found on the server.".to_owned(),
        ));
    }
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("bearer ")
                .or_else(|| v.strip_prefix("Bearer "))
        });
    if key != Some(db.spec.api_key.as_str()) {
        return fail(Fault {
            name: "werkzeug.exceptions.Unauthorized",
            message: "Invalid apikey".to_owned(),
            status: 401,
        });
    }
    if let Some(database) = headers.get("x-odoo-database").and_then(|v| v.to_str().ok()) {
        if database != db.spec.database {
            return fail(Fault::not_found(format!("database {database:?} not found")));
        }
    }
    let Ok(Value::Object(mut params)) = serde_json::from_slice::<Value>(&body) else {
        return fail(Fault {
            name: "werkzeug.exceptions.BadRequest",
            message: "could not parse the body, expecting a json object".to_owned(),
            status: 400,
        });
    };
    if db.model(&model).is_err() {
        return fail(Fault::not_found(format!(
            "the model {model:?} does not exist"
        )));
    }
    let Some((_, names)) = signature(&method) else {
        return fail(Fault::not_found(format!(
            "The method {method:?} does not exist on the model {model:?}"
        )));
    };
    let ids: Vec<i64> = params
        .remove("ids")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let context = match params.remove("context") {
        Some(Value::Object(context)) => context,
        _ => Map::new(),
    };
    if let Some(unexpected) = params.keys().find(|k| !names.contains(&k.as_str())) {
        return fail(Fault::unprocessable(format!(
            "{method}() got an unexpected keyword argument '{unexpected}'"
        )));
    }
    match db.execute(&model, &method, ids, params, context) {
        Ok(result) => Json(result).into_response(),
        Err(fault) => fail(fault),
    }
}
