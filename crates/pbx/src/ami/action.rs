//! AMI actions: the encoder and the table of actions waiting for a reply.
//!
//! Every action carries an `ActionID` chosen here; replies are matched back by
//! it. Each pending action has a deadline so a wedged manager is noticed: the
//! table is sans-IO and is told the time ([`PendingActions::next_timeout`],
//! [`PendingActions::expire`]).

use super::frame::AmiMessage;
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// An action Fiche sends to the manager.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Asks for an MD5 login challenge.
    Challenge,
    /// Logs in with the secret in clear.
    LoginPlain {
        /// Manager user.
        username: String,
        /// Its secret (never logged).
        secret: String,
        /// Event classes for the session (`on`, `off`, `call,agent`).
        events: String,
    },
    /// Logs in with the answer to a challenge.
    LoginMd5 {
        /// Manager user.
        username: String,
        /// `md5(challenge + secret)`, lowercase hex.
        key: String,
        /// Event classes for the session.
        events: String,
    },
    /// Sets the event classes of the session.
    Events {
        /// `on`, `off` or a class list.
        mask: String,
    },
    /// Keepalive.
    Ping,
    /// Lists live channels (resync).
    CoreShowChannels,
    /// Click-to-call: ring the agent's phone, then dial the customer.
    Originate(Originate),
    /// Ends the session politely.
    Logoff,
}

/// The fields of a click-to-call `Originate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Originate {
    /// The agent's own phone, e.g. `PJSIP/201`.
    pub channel: String,
    /// Dialplan context used once the agent answers, e.g. `from-internal`.
    pub context: String,
    /// The customer's number.
    pub exten: String,
    /// Caller id shown on the agent's phone, e.g. `"Fiche" <0612345678>`.
    pub caller_id: Option<String>,
    /// Uniqueid given to the agent's channel: Fiche knows the call's Linkedid.
    pub channel_id: String,
    /// Uniqueid of the second channel (Local originates).
    pub other_channel_id: String,
    /// Seconds the agent's phone may ring.
    pub timeout: Duration,
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so that secrets and login keys never reach a log.
        match self {
            Action::Challenge => f.write_str("Challenge"),
            Action::LoginPlain { username, .. } | Action::LoginMd5 { username, .. } => f
                .debug_struct("Login")
                .field("username", username)
                .field("secret", &"<redacted>")
                .finish(),
            Action::Events { mask } => f.debug_struct("Events").field("mask", mask).finish(),
            Action::Ping => f.write_str("Ping"),
            Action::CoreShowChannels => f.write_str("CoreShowChannels"),
            Action::Originate(o) => f.debug_tuple("Originate").field(o).finish(),
            Action::Logoff => f.write_str("Logoff"),
        }
    }
}

/// The login key of the MD5 challenge: `md5(challenge + secret)` in lowercase hex.
pub fn md5_login_key(challenge: &str, secret: &str) -> String {
    let digest = Md5::new()
        .chain_update(challenge.as_bytes())
        .chain_update(secret.as_bytes())
        .finalize();
    let mut hex = String::with_capacity(32);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Keeps a header value on one line: CR and LF would let a value inject keys.
fn clean(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains(['\r', '\n']) {
        std::borrow::Cow::Owned(value.replace(['\r', '\n'], " "))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

impl Action {
    /// The action's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Challenge => "Challenge",
            Action::LoginPlain { .. } | Action::LoginMd5 { .. } => "Login",
            Action::Events { .. } => "Events",
            Action::Ping => "Ping",
            Action::CoreShowChannels => "CoreShowChannels",
            Action::Originate(_) => "Originate",
            Action::Logoff => "Logoff",
        }
    }

    /// The wire form of the action with this `ActionID`.
    pub fn encode(&self, action_id: &str) -> String {
        let mut out = String::with_capacity(128);
        let mut line = |key: &str, value: &str| {
            out.push_str(key);
            out.push_str(": ");
            out.push_str(&clean(value));
            out.push_str("\r\n");
        };
        line("Action", self.name());
        line("ActionID", action_id);
        match self {
            Action::Challenge => line("AuthType", "MD5"),
            Action::LoginPlain {
                username,
                secret,
                events,
            } => {
                line("Username", username);
                line("Secret", secret);
                line("Events", events);
            }
            Action::LoginMd5 {
                username,
                key,
                events,
            } => {
                line("AuthType", "MD5");
                line("Username", username);
                line("Key", key);
                line("Events", events);
            }
            Action::Events { mask } => line("EventMask", mask),
            Action::Ping | Action::CoreShowChannels | Action::Logoff => {}
            Action::Originate(o) => {
                line("Channel", &o.channel);
                line("Context", &o.context);
                line("Exten", &o.exten);
                line("Priority", "1");
                if let Some(caller_id) = &o.caller_id {
                    line("CallerID", caller_id);
                }
                line("Timeout", &o.timeout.as_millis().to_string());
                line("Async", "true");
                line("ChannelId", &o.channel_id);
                line("OtherChannelId", &o.other_channel_id);
            }
        }
        out.push_str("\r\n");
        out
    }
}

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    /// `Response: Success` (or `Goodbye`, `Follows`), with the whole reply.
    Success(AmiMessage),
    /// `Response: Error`, with its `Message`.
    Error(String),
    /// No reply before the deadline.
    TimedOut,
}

/// Actions sent and not yet answered.
///
/// `T` is what the caller wants back with the reply (a tag, a oneshot sender…).
#[derive(Debug)]
pub struct PendingActions<T> {
    prefix: String,
    next: u64,
    pending: HashMap<String, (Instant, T)>,
}

impl<T> PendingActions<T> {
    /// An empty table whose ActionIDs start with `prefix` (e.g. `fiche-3-`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            next: 1,
            pending: HashMap::new(),
        }
    }

    /// Registers `action`, due by `now + timeout`; returns its ActionID and wire bytes.
    pub fn send(
        &mut self,
        action: &Action,
        tag: T,
        now: Instant,
        timeout: Duration,
    ) -> (String, String) {
        let action_id = format!("{}{}", self.prefix, self.next);
        self.next += 1;
        let wire = action.encode(&action_id);
        self.pending.insert(action_id.clone(), (now + timeout, tag));
        (action_id, wire)
    }

    /// Matches a `Response` message to its action; `None` when it is not a
    /// response or answers nothing we wait for (another client's action).
    pub fn on_response(&mut self, message: &AmiMessage) -> Option<(String, T, ActionOutcome)> {
        let response = message.response()?;
        let action_id = message.action_id()?;
        let (_, tag) = self.pending.remove(action_id)?;
        let outcome = if response.eq_ignore_ascii_case("Error") {
            ActionOutcome::Error(message.get("Message").unwrap_or_default().to_owned())
        } else {
            ActionOutcome::Success(message.clone())
        };
        Some((action_id.to_owned(), tag, outcome))
    }

    /// True when `action_id` is still waiting.
    pub fn is_pending(&self, action_id: &str) -> bool {
        self.pending.contains_key(action_id)
    }

    /// The earliest deadline, if any action waits.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|(deadline, _)| *deadline).min()
    }

    /// Removes and returns the actions whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, T)> {
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        due.into_iter()
            .filter_map(|id| self.pending.remove(&id).map(|(_, tag)| (id, tag)))
            .collect()
    }

    /// Drops every pending action (the connection is gone) and returns them.
    pub fn drain(&mut self) -> Vec<(String, T)> {
        self.pending
            .drain()
            .map(|(id, (_, tag))| (id, tag))
            .collect()
    }

    /// Number of actions waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_key_matches_the_asterisk_formula() {
        // md5("145769581" + "mysecret"), computed independently with Python's hashlib.
        assert_eq!(
            md5_login_key("145769581", "mysecret"),
            "64a9dd58a0dc90a8f248ffa922086d3d"
        );
    }

    #[test]
    fn originate_wire_form_and_no_header_injection() {
        let action = Action::Originate(Originate {
            channel: "PJSIP/201".into(),
            context: "from-internal".into(),
            exten: "0612345678\r\nAction: Hangup".into(),
            caller_id: Some("\"Fiche\" <0612345678>".into()),
            channel_id: "fiche-abc".into(),
            other_channel_id: "fiche-abc-2".into(),
            timeout: Duration::from_secs(30),
        });
        let wire = action.encode("fiche-1-7");
        assert!(
            wire.starts_with("Action: Originate\r\nActionID: fiche-1-7\r\nChannel: PJSIP/201\r\n")
        );
        assert!(wire.contains("Exten: 0612345678  Action: Hangup\r\n"));
        assert!(wire.contains("Async: true\r\nChannelId: fiche-abc\r\n"));
        assert!(wire.ends_with("\r\n\r\n"));
    }

    #[test]
    fn login_debug_redacts_the_secret() {
        let action = Action::LoginPlain {
            username: "fiche".into(),
            secret: "s3cr3t".into(),
            events: "on".into(),
        };
        assert!(!format!("{action:?}").contains("s3cr3t"));
        assert!(action.encode("1").contains("Secret: s3cr3t\r\n"));
    }

    #[test]
    fn replies_are_matched_and_deadlines_expire() {
        let t0 = Instant::now();
        let mut table = PendingActions::new("f-");
        let (ping, _) = table.send(&Action::Ping, "ping", t0, Duration::from_secs(5));
        let (list, _) = table.send(
            &Action::CoreShowChannels,
            "list",
            t0,
            Duration::from_secs(10),
        );
        assert_eq!(table.next_timeout(), Some(t0 + Duration::from_secs(5)));
        let reply =
            AmiMessage::from_fields(&[("Response", "Success"), ("ActionId", ping.as_str())]);
        let (_, tag, outcome) = table.on_response(&reply).unwrap();
        assert_eq!(tag, "ping");
        assert!(matches!(outcome, ActionOutcome::Success(_)));
        assert!(
            table.on_response(&reply).is_none(),
            "a reply is matched once"
        );
        assert!(table.expire(t0 + Duration::from_secs(9)).is_empty());
        let expired = table.expire(t0 + Duration::from_secs(10));
        assert_eq!(expired, vec![(list, "list")]);
        assert!(table.is_empty());
    }
}
