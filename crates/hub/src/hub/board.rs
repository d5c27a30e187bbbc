//! The supervisor board's agent directory: each agent's extensions, open
//! browsers and state (ringing, on call, on hold, available, offline), derived
//! from the live calls on their extensions; supervisors are told each change.

use super::{HubConfig, State};
use crate::protocol::{AgentInfo, AgentState, AgentView, ServerMessage};
use fiche_model::{CallId, CallState};

impl State {
    /// What an agent is doing: the busiest state among the calls on their
    /// extensions; otherwise available when a browser is open.
    pub(super) fn derive_agent_state(&self, user: i64) -> (AgentState, Option<CallId>) {
        let Some(agent) = self.agents.get(&user) else {
            return (AgentState::Offline, None);
        };
        let mut best: Option<(u8, AgentState, CallId)> = None;
        for ext in &agent.extensions {
            for id in self.active_by_extension.get(ext).into_iter().flatten() {
                let Some(call) = self.calls.get(id) else {
                    continue;
                };
                let found = if call.ringing_extensions.iter().any(|e| e == ext) {
                    (1, AgentState::Ringing)
                } else if call.state == CallState::Held {
                    (2, AgentState::OnHold)
                } else {
                    (3, AgentState::OnCall)
                };
                if best.is_none_or(|(rank, _, _)| found.0 > rank) {
                    best = Some((found.0, found.1, *id));
                }
            }
        }
        match best {
            Some((_, state, id)) => (state, Some(id)),
            None if self.by_user.contains_key(&user) => (AgentState::Available, None),
            None => (AgentState::Offline, None),
        }
    }

    /// Recomputes one directory agent's state; tells supervisors when it changed.
    pub(super) fn refresh_agent(&mut self, user: i64, config: &HubConfig) {
        if !self.settle_agent(user) {
            return;
        }
        let Some(view) = self.agents.get(&user) else {
            return;
        };
        let body = ServerMessage::AgentState { agent: view }.to_body();
        let recipients = self.supervisors.clone();
        self.deliver(recipients, body, config);
    }

    /// Puts `agent` in the directory with their extensions (taking each one),
    /// keeping the state of an entry already there; their sockets follow.
    pub(super) fn place_agent(&mut self, agent: AgentInfo) {
        for ext in &agent.extensions {
            self.owner_by_extension.insert(ext.clone(), agent.user_id);
        }
        let sockets = self
            .by_user
            .get(&agent.user_id)
            .cloned()
            .unwrap_or_default();
        for id in sockets {
            self.reindex_extensions(id, &agent.extensions);
        }
        let view = self
            .agents
            .entry(agent.user_id)
            .or_insert_with(|| AgentView {
                user_id: agent.user_id,
                name: String::new(),
                extensions: Vec::new(),
                state: AgentState::Offline,
                call_id: None,
                connections: 0,
            });
        view.name = agent.name;
        view.extensions = agent.extensions;
    }

    /// Derives a directory agent's state, call and open browsers; true when
    /// one of them changed.
    pub(super) fn settle_agent(&mut self, user: i64) -> bool {
        if !self.agents.contains_key(&user) {
            return false;
        }
        let (agent_state, call_id) = self.derive_agent_state(user);
        let connections =
            u32::try_from(self.by_user.get(&user).map_or(0, Vec::len)).unwrap_or(u32::MAX);
        let Some(view) = self.agents.get_mut(&user) else {
            return false;
        };
        if view.state == agent_state && view.call_id == call_id && view.connections == connections {
            return false;
        }
        view.state = agent_state;
        view.call_id = call_id;
        view.connections = connections;
        true
    }
}
