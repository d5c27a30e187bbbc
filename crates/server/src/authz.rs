//! Who may read and change what: the matrix of `docs/authorization.md` as pure
//! functions over facts (the user, a ticket's assignee, a call). Handlers read
//! the facts, ask here, and answer 403 (`ApiError::Forbidden`) on a refusal, so
//! every route decides the same way and the table tests below read like the doc.
//!
//! Supervisors and admins may do everything listed here. Agents:
//! - change a ticket (status, subject, reason, priority, due time, notes) only
//!   when it is assigned to them or to nobody. Users have no groups or teams in
//!   the store (a ticket's `assignee_group` is the number that was called, not
//!   a membership), so "her group" is "nobody in particular";
//! - assign a ticket only to themselves ("I take it") or to nobody ("back to
//!   the group"), never to a colleague;
//! - save on a call's card only when the call concerns them (see
//!   [`live_call_concerns`]), or when what the save would change, the call's
//!   ticket, is one they may change;
//! - see the live calls their websocket shows them, the calls they handled and
//!   the history of one whole number (the customer file, as the pop card's
//!   history), but not the whole call log nor the supervisor figures.

use crate::auth::CurrentUser;
use crate::http::error::ApiError;
use fiche_pbx::{Extension, LiveCall};
use fiche_store::{Call, Role, UserId};

/// Whether `user` sees and changes everything (supervisors and admins).
pub fn sees_everything(user: &CurrentUser) -> bool {
    matches!(user.role, Role::Supervisor | Role::Admin)
}

/// Ok when `user` may change a ticket assigned to `assignee` (`None`: nobody).
pub fn may_change_ticket(user: &CurrentUser, assignee: Option<UserId>) -> Result<(), ApiError> {
    if sees_everything(user) {
        return Ok(());
    }
    match assignee {
        None => Ok(()),
        Some(owner) if owner.0 == user.id => Ok(()),
        Some(_) => Err(ApiError::Forbidden(
            "this ticket is assigned to a colleague: only its assignee or a supervisor changes it"
                .into(),
        )),
    }
}

/// Ok when `user` may set a ticket's assignee to `to` (`None`: nobody).
pub fn may_assign(user: &CurrentUser, to: Option<UserId>) -> Result<(), ApiError> {
    if sees_everything(user) {
        return Ok(());
    }
    match to {
        None => Ok(()),
        Some(target) if target.0 == user.id => Ok(()),
        Some(_) => Err(ApiError::Forbidden(
            "agents assign a ticket to themselves or to nobody; a supervisor assigns it to a colleague"
                .into(),
        )),
    }
}

/// Whether a call of the live table concerns the agent owning `extensions`:
/// it rings at her now, she handles it (answered, placed, or received it by
/// transfer), or it rang at her and nobody answered it (a missed call she may
/// note before its callback exists). A call answered by a colleague stops
/// concerning her, as on the websocket.
pub fn live_call_concerns(extensions: &[String], call: &LiveCall) -> bool {
    let mine = |ext: &Extension| extensions.iter().any(|e| e == ext.as_str());
    call.ringing_extensions.iter().any(mine)
        || call.agent_extension.as_ref().is_some_and(mine)
        || call.transferred_to.iter().any(mine)
        || (call.answered_at.is_none() && call.rang_extensions.iter().any(mine))
}

/// Whether a call of the log (no longer live) concerns the agent owning
/// `extensions`: she answered or placed it. Where it rang (`rang`) is kept
/// for the record, not for access: a missed call's callback is reached
/// through its ticket instead.
pub fn logged_call_concerns(extensions: &[String], call: &Call) -> bool {
    call.agent_extension
        .as_ref()
        .is_some_and(|ext| extensions.contains(ext))
}

/// Ok when `user` may ask `fiche demo`'s simulated phone system for a call
/// (the board's "Simuler un appel"): admins only, as the demo's owner.
pub fn may_simulate_calls(user: &CurrentUser) -> Result<(), ApiError> {
    if user.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only an admin simulates calls in the demo".into(),
        ))
    }
}

/// Which part of the call log `user` may list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallLogScope {
    /// Every call (supervisors and admins).
    All,
    /// The calls with one whole number: a customer's history.
    Number,
    /// Only the calls handled at these extensions (the agent's own).
    OwnExtensions(Vec<String>),
}

/// The part of the log `user` may list, given the filters asked: `whole_number`
/// when the `number` filter is a whole phone number, `agent` the extension
/// filter. An agent asking for a colleague's extension is refused.
pub fn call_log_scope(
    user: &CurrentUser,
    whole_number: bool,
    agent: Option<&str>,
) -> Result<CallLogScope, ApiError> {
    if sees_everything(user) {
        return Ok(CallLogScope::All);
    }
    if whole_number {
        return Ok(CallLogScope::Number);
    }
    if let Some(agent) = agent {
        if !user.extensions.iter().any(|ext| ext == agent) {
            return Err(ApiError::Forbidden(
                "agents list their own calls, or the calls of one whole number".into(),
            ));
        }
    }
    Ok(CallLogScope::OwnExtensions(user.extensions.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fiche_pbx::{CallId, CallState, Direction, Party, Source};

    fn user(role: Role, id: i64, extensions: &[&str]) -> CurrentUser {
        CurrentUser {
            id,
            login: format!("u{id}"),
            display_name: format!("U{id}"),
            role,
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    const CLAIRE: i64 = 2;
    const MALIK: i64 = 3;

    #[test]
    fn tickets_change_hands_as_the_matrix_says() {
        let claire = user(Role::Agent, CLAIRE, &["201"]);
        let sophie = user(Role::Supervisor, 4, &[]);
        let admin = user(Role::Admin, 1, &[]);
        // (who, assignee, may change, may assign to nobody, to herself, to Malik)
        let table = [
            (&claire, None, true, true, true, false),
            (&claire, Some(CLAIRE), true, true, true, false),
            (&claire, Some(MALIK), false, true, true, false),
            (&sophie, Some(MALIK), true, true, true, true),
            (&admin, Some(MALIK), true, true, true, true),
        ];
        for (who, assignee, change, to_nobody, to_self, to_malik) in table {
            let assignee = assignee.map(UserId);
            let case = format!("{} on a ticket of {assignee:?}", who.login);
            assert_eq!(may_change_ticket(who, assignee).is_ok(), change, "{case}");
            assert_eq!(may_assign(who, None).is_ok(), to_nobody, "{case}");
            assert_eq!(
                may_assign(who, Some(UserId(who.id))).is_ok(),
                to_self,
                "{case}"
            );
            assert_eq!(
                may_assign(who, Some(UserId(MALIK))).is_ok(),
                to_malik,
                "{case}"
            );
        }
    }

    fn call(ringing: &[&str], rang: &[&str], agent: Option<&str>, answered: bool) -> LiveCall {
        let strings = |list: &[&str]| list.iter().filter_map(|e| Extension::new(e)).collect();
        let party = Party {
            number: Some("+33612345678".into()),
            name: None,
            withheld: false,
        };
        LiveCall {
            id: CallId::from_source_key(Source::Hep, "k"),
            source: Source::Hep,
            source_key: "k".into(),
            state: if answered {
                CallState::Answered
            } else {
                CallState::Ringing
            },
            direction: Direction::Inbound,
            caller: party.clone(),
            callee: party,
            ringing_extensions: strings(ringing),
            rang_extensions: strings(rang),
            agent_extension: agent.and_then(Extension::new),
            answered_by: None,
            transferred_to: Vec::new(),
            transfers: Vec::new(),
            diverted_from: Vec::new(),
            queue: None,
            started_at: chrono::Utc::now(),
            answered_at: answered.then(chrono::Utc::now),
            ended_at: None,
            outcome: None,
            cause: None,
        }
    }

    #[test]
    fn a_call_concerns_the_agents_it_rings_at_or_that_handle_it() {
        let claire = ["201".to_owned()];
        let table = [
            (
                "ringing at her",
                call(&["201"], &["201"], None, false),
                true,
            ),
            (
                "ringing at her and a colleague",
                call(&["201", "202"], &["201", "202"], None, false),
                true,
            ),
            (
                "ringing at a colleague",
                call(&["202"], &["202"], None, false),
                false,
            ),
            (
                "answered by her",
                call(&[], &["201"], Some("201"), true),
                true,
            ),
            (
                "answered by a colleague after ringing at both",
                call(&[], &["201", "202"], Some("202"), true),
                false,
            ),
            (
                "rang at her, stopped, nobody answered yet",
                call(&["202"], &["201", "202"], None, false),
                true,
            ),
        ];
        for (case, call, expected) in table {
            assert_eq!(live_call_concerns(&claire, &call), expected, "{case}");
        }
        let mut transferred = call(&[], &["202"], Some("202"), true);
        transferred.transferred_to.extend(Extension::new("201"));
        assert!(
            live_call_concerns(&claire, &transferred),
            "transferred to her"
        );
    }

    #[test]
    fn only_the_admin_simulates_demo_calls() {
        assert!(may_simulate_calls(&user(Role::Admin, 1, &[])).is_ok());
        assert!(may_simulate_calls(&user(Role::Supervisor, 4, &[])).is_err());
        assert!(may_simulate_calls(&user(Role::Agent, CLAIRE, &["201"])).is_err());
    }

    #[test]
    fn agents_list_their_own_calls_or_one_numbers_history() {
        let claire = user(Role::Agent, CLAIRE, &["201"]);
        let sophie = user(Role::Supervisor, 4, &[]);
        let own = CallLogScope::OwnExtensions(vec!["201".into()]);
        assert_eq!(
            call_log_scope(&sophie, false, None).ok(),
            Some(CallLogScope::All)
        );
        assert_eq!(
            call_log_scope(&claire, true, Some("202")).ok(),
            Some(CallLogScope::Number)
        );
        assert_eq!(call_log_scope(&claire, false, None).ok(), Some(own.clone()));
        assert_eq!(call_log_scope(&claire, false, Some("201")).ok(), Some(own));
        assert!(call_log_scope(&claire, false, Some("202")).is_err());
    }
}
