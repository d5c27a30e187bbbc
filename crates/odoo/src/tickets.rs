//! Fiche tickets into Odoo Helpdesk: one `helpdesk.ticket` per Fiche ticket,
//! linked to the partner, the call summary in its chatter (`message_post`), later
//! changes posted and written; a missed call's callback also becomes a "Call"
//! activity for its assignee (`activity_schedule`), marked done when it closes.
//!
//! Enterprise Helpdesk and OCA `helpdesk_mgmt` are told apart by their fields
//! ([`crate::check::helpdesk_flavour`]). OCA requires `description` and has a
//! "Phone" channel. **Invariant:** `partner_phone` is only written when the ticket
//! has no partner: Enterprise writes it back onto the partner's own phone.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::check::{helpdesk_flavour, Helpdesk};
use crate::client::OdooClient;
use crate::error::{OdooError, Result};
use crate::wire::Call;

/// What Fiche knows about a ticket, as the Odoo side needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketFacts {
    /// Fiche's ticket id.
    pub fiche_id: i64,
    /// Its subject.
    pub subject: String,
    /// A callback (missed call to return).
    pub callback: bool,
    /// Closed in Fiche.
    pub closed: bool,
    /// Fiche's priority (negative low, 0 normal, 1 high, 2+ urgent).
    pub priority: i32,
    /// The reason typed by the agent.
    pub reason: Option<String>,
    /// The latest note.
    pub note: Option<String>,
    /// The Odoo partner, when the customer came from Odoo.
    pub partner_id: Option<i64>,
    /// The caller's number.
    pub phone: Option<String>,
    /// The assignee's Fiche login (matched to an Odoo user by login or e-mail).
    pub assignee_login: Option<String>,
    /// When the callback is due.
    pub due_at: Option<DateTime<Utc>>,
    /// The call summary lines (direction, number, agent, duration, outcome), in French.
    pub call_summary: Vec<String>,
}

impl TicketFacts {
    /// The ticket's title in Odoo, with the marker that finds it again.
    pub fn title(&self) -> String {
        format!("{} {}", self.subject, marker(self.fiche_id))
    }

    /// The chatter text: the call summary, reason and note, as HTML with every
    /// value escaped (a caller's name is untrusted text).
    pub fn summary_html(&self, heading: &str) -> String {
        let mut lines = vec![format!("<p><b>{}</b></p>", escape(heading))];
        let mut items: Vec<String> = self.call_summary.clone();
        if let Some(reason) = &self.reason {
            items.push(format!("Motif : {reason}"));
        }
        if let Some(note) = &self.note {
            items.push(format!("Note : {note}"));
        }
        items.push(format!("Priorité : {}", priority_word(self.priority)));
        items.push(format!(
            "Statut : {}",
            if self.closed { "clos" } else { "ouvert" }
        ));
        if let Some(due) = self.due_at {
            items.push(format!(
                "À rappeler avant : {} UTC",
                due.format("%d/%m/%Y %H:%M")
            ));
        }
        lines.push("<ul>".to_owned());
        for item in items {
            lines.push(format!("<li>{}</li>", escape(&item)));
        }
        lines.push("</ul>".to_owned());
        lines.concat()
    }

    /// What a later change must compare against: every field the chatter shows.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{:?}|{:?}|{:?}|{:?}",
            self.closed, self.priority, self.reason, self.note, self.assignee_login, self.due_at
        )
    }
}

/// `[Fiche #42]`: put in the title so that a ticket created just before a crash
/// (before its link was stored) is found again rather than made twice.
pub fn marker(fiche_id: i64) -> String {
    format!("[Fiche #{fiche_id}]")
}

fn priority_word(priority: i32) -> &'static str {
    match priority {
        i32::MIN..=-1 => "basse",
        0 => "normale",
        1 => "haute",
        _ => "urgente",
    }
}

/// Odoo's helpdesk priorities are "0" to "3".
fn odoo_priority(priority: i32) -> String {
    (priority + 1).clamp(0, 3).to_string()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The first closing stage of the help desk: a folded stage on Enterprise
/// (`helpdesk.stage.fold`: a ticket entering one is closed), a `closed` one on
/// OCA (`helpdesk.ticket.stage.closed`). `None` when there is none or the bot
/// may not read stages: closing then only posts to the chatter.
async fn closing_stage(client: &OdooClient, helpdesk: Helpdesk) -> Result<Option<i64>> {
    let (model, flag) = match helpdesk {
        Helpdesk::Enterprise => ("helpdesk.stage", "fold"),
        Helpdesk::Oca => ("helpdesk.ticket.stage", "closed"),
    };
    let found = client
        .call(
            &Call::new(model, "search")
                .kw("domain", json!([[flag, "=", true]]))
                .kw("order", json!("sequence, id"))
                .kw("limit", json!(1)),
        )
        .await;
    match found {
        Ok(ids) => Ok(ids.get(0).and_then(Value::as_i64)),
        Err(OdooError::NotFound { .. } | OdooError::AccessError { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// How the summary of every "Call" activity Fiche schedules begins.
const CALL_SUMMARY: &str = "Rappeler ";

/// The help desk of a database, discovered once.
#[derive(Debug, Clone)]
pub struct TicketSync {
    /// Which help desk.
    pub helpdesk: Helpdesk,
    fields: Map<String, Value>,
    phone_channel: Option<i64>,
    /// The first closing stage, where a ticket closed in Fiche is moved.
    closing_stage: Option<i64>,
}

impl TicketSync {
    /// Reads `helpdesk.ticket`'s fields; `None` when no help desk is installed.
    pub async fn discover(client: &OdooClient) -> Result<Option<Self>> {
        let fields = match client.fields("helpdesk.ticket").await {
            Ok(fields) => fields,
            Err(OdooError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let helpdesk = helpdesk_flavour(&fields);
        let mut phone_channel = None;
        if helpdesk == Helpdesk::Oca {
            let found = client
                .call(
                    &Call::new("helpdesk.ticket.channel", "search_read")
                        .kw("domain", json!([["name", "ilike", "phone"]]))
                        .kw("fields", json!(["name"]))
                        .kw("limit", json!(1)),
                )
                .await?;
            phone_channel = found
                .get(0)
                .and_then(|c| c.get("id"))
                .and_then(Value::as_i64);
        }
        let closing_stage = closing_stage(client, helpdesk).await?;
        Ok(Some(TicketSync {
            helpdesk,
            fields,
            phone_channel,
            closing_stage,
        }))
    }

    /// The Odoo ticket already made for `facts` (found by its marker), if any.
    pub async fn find(&self, client: &OdooClient, fiche_id: i64) -> Result<Option<i64>> {
        let found = client
            .call(
                &Call::new("helpdesk.ticket", "search")
                    .kw("domain", json!([["name", "ilike", marker(fiche_id)]]))
                    .kw("limit", json!(1))
                    .context("active_test", json!(false)),
            )
            .await?;
        Ok(found.get(0).and_then(Value::as_i64))
    }

    /// Creates the Odoo ticket and posts the call summary; returns its id.
    pub async fn create(
        &self,
        client: &OdooClient,
        facts: &TicketFacts,
        user_id: Option<i64>,
    ) -> Result<i64> {
        let summary = facts.summary_html(if facts.callback {
            "Appel manqué, à rappeler (Fiche)"
        } else {
            "Appel (Fiche)"
        });
        let mut values = Map::new();
        values.insert("name".to_owned(), json!(facts.title()));
        values.insert("description".to_owned(), json!(summary));
        if self.fields.contains_key("priority") {
            values.insert("priority".to_owned(), json!(odoo_priority(facts.priority)));
        }
        match facts.partner_id {
            Some(partner) => {
                values.insert("partner_id".to_owned(), json!(partner));
            }
            None => {
                // Only without a partner: on Enterprise it would overwrite the
                // partner's own phone.
                if let (Some(phone), true) =
                    (&facts.phone, self.fields.contains_key("partner_phone"))
                {
                    values.insert("partner_phone".to_owned(), json!(phone));
                }
            }
        }
        if let Some(user) = user_id {
            values.insert("user_id".to_owned(), json!(user));
        }
        if let (Some(channel), true) = (self.phone_channel, self.fields.contains_key("channel_id"))
        {
            values.insert("channel_id".to_owned(), json!(channel));
        }
        let created = client
            .call(&Call::new("helpdesk.ticket", "create").arg("vals_list", json!([values])))
            .await?;
        let id = match &created {
            Value::Array(ids) => ids.first().and_then(Value::as_i64),
            other => other.as_i64(),
        }
        .ok_or_else(|| {
            OdooError::protocol("helpdesk.ticket.create", format!("no id in {created}"))
        })?;
        self.post(client, id, &summary).await?;
        Ok(id)
    }

    /// Writes what changed and posts it to the chatter.
    pub async fn update(
        &self,
        client: &OdooClient,
        odoo_id: i64,
        facts: &TicketFacts,
        user_id: Option<i64>,
    ) -> Result<()> {
        let mut values = Map::new();
        if self.fields.contains_key("priority") {
            values.insert("priority".to_owned(), json!(odoo_priority(facts.priority)));
        }
        if let Some(user) = user_id {
            values.insert("user_id".to_owned(), json!(user));
        }
        if let (true, Some(stage)) = (facts.closed, self.closing_stage) {
            values.insert("stage_id".to_owned(), json!(stage));
        }
        client
            .call(
                &Call::new("helpdesk.ticket", "write")
                    .ids(vec![odoo_id])
                    .arg("vals", Value::Object(values)),
            )
            .await?;
        let heading = if facts.closed {
            "Clos dans Fiche"
        } else {
            "Mis à jour dans Fiche"
        };
        self.post(client, odoo_id, &facts.summary_html(heading))
            .await
    }

    async fn post(&self, client: &OdooClient, odoo_id: i64, body: &str) -> Result<()> {
        client
            .call(
                &Call::new("helpdesk.ticket", "message_post")
                    .ids(vec![odoo_id])
                    .kw("body", json!(body))
                    .kw("message_type", json!("comment"))
                    .kw("subtype_xmlid", json!("mail.mt_note")),
            )
            .await?;
        Ok(())
    }

    /// The open "Call" activity Fiche scheduled on the Odoo ticket, if any: found
    /// by its summary, so a crash between Odoo's answer and recording its id
    /// never makes a second one.
    pub async fn find_call(&self, client: &OdooClient, odoo_id: i64) -> Result<Option<i64>> {
        let found = client
            .call(
                &Call::new("mail.activity", "search")
                    .kw(
                        "domain",
                        json!([
                            ["res_model", "=", "helpdesk.ticket"],
                            ["res_id", "=", odoo_id],
                            ["summary", "ilike", CALL_SUMMARY]
                        ]),
                    )
                    .kw("limit", json!(1)),
            )
            .await?;
        Ok(found.get(0).and_then(Value::as_i64))
    }

    /// Schedules the "Call" activity of a callback on the Odoo ticket; returns its id.
    pub async fn schedule_call(
        &self,
        client: &OdooClient,
        odoo_id: i64,
        facts: &TicketFacts,
        user_id: Option<i64>,
    ) -> Result<i64> {
        let due = facts.due_at.unwrap_or_else(Utc::now);
        let mut call = Call::new("helpdesk.ticket", "activity_schedule")
            .ids(vec![odoo_id])
            .kw("act_type_xmlid", json!("mail.mail_activity_data_call"))
            // `date_deadline` is a date in Odoo; the time is in the summary.
            .kw("date_deadline", json!(due.format("%Y-%m-%d").to_string()))
            .kw(
                "summary",
                json!(format!(
                    "{CALL_SUMMARY}{} avant {} UTC",
                    facts.phone.as_deref().unwrap_or("le client"),
                    due.format("%H:%M")
                )),
            );
        if let Some(user) = user_id {
            call = call.kw("user_id", json!(user));
        }
        let created = client.call(&call).await?;
        match &created {
            Value::Array(ids) => ids.first().and_then(Value::as_i64),
            other => other.as_i64(),
        }
        .ok_or_else(|| {
            OdooError::protocol(
                "helpdesk.ticket.activity_schedule",
                format!("no id in {created}"),
            )
        })
    }

    /// Marks the activity done (Odoo keeps it, archived, with its done date).
    pub async fn activity_done(&self, client: &OdooClient, activity_id: i64) -> Result<()> {
        match client
            .call(
                &Call::new("mail.activity", "action_feedback")
                    .ids(vec![activity_id])
                    .kw("feedback", json!("Rappel fait dans Fiche")),
            )
            .await
        {
            // Already done or deleted in Odoo: nothing left to do.
            Err(OdooError::MissingRecord { .. }) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// The Odoo user whose login or e-mail is `login`.
pub async fn odoo_user(client: &OdooClient, login: &str) -> Result<Option<i64>> {
    let found = client
        .call(
            &Call::new("res.users", "search")
                .kw(
                    "domain",
                    json!(["|", ["login", "=", login], ["email", "=", login]]),
                )
                .kw("limit", json!(1)),
        )
        .await?;
    Ok(found.get(0).and_then(Value::as_i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_escapes_what_callers_typed() {
        let facts = TicketFacts {
            fiche_id: 7,
            subject: "Appel de Zoé".to_owned(),
            callback: false,
            closed: false,
            priority: 1,
            reason: Some("<script>x</script>".to_owned()),
            note: None,
            partner_id: Some(3),
            phone: Some("+33611223344".to_owned()),
            assignee_login: None,
            due_at: None,
            call_summary: vec!["Entrant, de +33 6 11 22 33 44 (\"Zoé\" <b>)".to_owned()],
        };
        let html = facts.summary_html("Appel (Fiche)");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
        assert!(html.contains("Priorité : haute"));
        assert_eq!(facts.title(), "Appel de Zoé [Fiche #7]");
        assert_eq!(odoo_priority(1), "2");
        assert_eq!(odoo_priority(-5), "0");
    }
}
