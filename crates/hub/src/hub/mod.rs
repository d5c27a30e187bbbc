//! The routing table: who is connected, which extension belongs to whom, the
//! live board, and the per-socket queues every message goes through.
//!
//! State sits behind one `std::sync::Mutex`, never held across an await: every
//! operation is a short synchronous critical section (update the board, look up
//! recipients in the extension index, `try_send` into bounded queues). An actor
//! task would add a channel hop and a wake-up to every pop for no gain, since
//! nothing here waits; callers on the pipeline task publish directly, and a slow
//! socket can never hold the lock because delivery never awaits.
//!
//! Routing cost is O(recipients): a ringing call looks up the extension index,
//! and supervisors are kept in their own list, so publishing never walks every
//! socket.

use crate::protocol::{
    AgentInfo, AgentView, Body, CallCard, Card, Figures, Frame, Role, ServerMessage, Snapshot,
    TicketSummary, Viewer,
};
use crate::stats::HubStats;
mod board;
mod registry;

use crate::queue::{Queue, Status};
use crate::routing::{self, merge, Before, CallMeta};
use fiche_model::{CallEvent, CallId, LiveCall, LiveCalls, Timestamp};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tracing::debug;

/// Messages one socket may have queued. A browser this far behind is resynced
/// (its queued deltas are dropped and it gets one fresh snapshot) rather than
/// buffered: memory per socket stays bounded whatever the browser does.
pub const QUEUE_CAPACITY: usize = 256;

/// Overflows a socket may have in its lifetime; at the next one the hub closes it
/// (the page reconnects and starts from a snapshot).
pub const MAX_OVERFLOWS: u32 = 3;

/// Interval of the heartbeat `ping`; a socket silent for two intervals is dropped.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// Most calls the board holds by default (the server passes `calls.live_max`).
pub const MAX_CALLS: usize = 10_000;

/// Largest browser message accepted, in bytes; browsers send only small commands.
pub const MAX_CLIENT_MESSAGE: usize = 4 * 1024;

/// Tunables of a [`Hub`].
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Per-socket queue capacity, in messages.
    pub queue_capacity: usize,
    /// Overflows tolerated before a socket is closed.
    pub max_overflows: u32,
    /// Interval of [`Hub::run_heartbeat`]; also the longest a write may take.
    pub ping_every: Duration,
    /// Most calls the board holds (as `calls.live_max`): a flood of setups
    /// replaces its own oldest, ended calls go first, answered ones stay.
    pub max_calls: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue_capacity: QUEUE_CAPACITY,
            max_overflows: MAX_OVERFLOWS,
            ping_every: PING_EVERY,
            max_calls: MAX_CALLS,
        }
    }
}

/// Errors of the hub's API.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The connection id is not (or no longer) registered.
    #[error("connection {0} is not connected")]
    UnknownConnection(ConnectionId),
    /// A browser message above [`MAX_CLIENT_MESSAGE`].
    #[error("client message of {len} bytes exceeds the {max} byte limit")]
    MessageTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A browser message that is not a JSON object with a known `type` field.
    #[error("malformed client message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Identifies one socket for the lifetime of the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One registered socket, as handed to whoever drives it. Dropping it
/// closes the queue; the hub forgets the socket at its next message.
#[derive(Debug)]
pub struct Connection {
    /// The socket's id, for [`Hub::disconnect`] and [`Hub::handle_client_message`].
    pub id: ConnectionId,
    queue: Arc<Queue>,
}

impl Connection {
    /// The next queued message (the first is the snapshot); `None` once the
    /// hub has dropped the socket.
    pub async fn recv(&mut self) -> Option<Frame> {
        std::future::poll_fn(|cx| self.queue.poll_pop(cx)).await
    }

    /// [`Connection::recv`] by hand: `Pending` registers `cx`'s waker for the
    /// next message or the end.
    pub fn poll_recv(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Frame>> {
        self.queue.poll_pop(cx)
    }

    /// The browser said something: the heartbeat counts it alive.
    pub fn heard(&self) {
        self.queue.heard();
    }

    /// The next queued message, without waiting.
    pub fn try_recv(&mut self) -> Option<Frame> {
        self.queue.try_pop()
    }

    /// Messages waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The queue overflowed: what it holds is stale; call [`Hub::resync`]
    /// for a fresh snapshot. [`crate::pump`] does this itself.
    pub fn lagged(&self) -> bool {
        self.queue.status() == Status::Lagged
    }

    /// The hub closed this socket after repeated overflows.
    pub fn too_slow(&self) -> bool {
        self.queue.status() == Status::TooSlow
    }

    /// The hub's heartbeat closed this socket: the browser stopped answering.
    pub fn silent(&self) -> bool {
        self.queue.status() == Status::Silent
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// What one call event queued, for [`HubStats`]: messages, one per socket.
#[derive(Debug, Default, Clone, Copy)]
struct Queued {
    pops: u64,
    withdrawn: u64,
}

/// What a message routed by `apply_call` counts as.
#[derive(Debug, Clone, Copy)]
enum Sent {
    Pop,
    Withdrawn,
    Other,
}

/// Handle to the hub; clones share one state.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: HubConfig,
    state: Mutex<State>,
    /// Set by [`Hub::shut_down`]: sockets ending now end because the server stops.
    closing: std::sync::atomic::AtomicBool,
    /// Pops and withdrawals queued, pop latency; read by the server's `/metrics`.
    stats: HubStats,
}

#[derive(Debug)]
struct Socket {
    viewer: Viewer,
    queue: Arc<Queue>,
    seq: u64,
    overflows: u32,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    sockets: HashMap<ConnectionId, Socket>,
    /// Sockets whose viewer owns the extension (any role).
    by_extension: HashMap<String, Vec<ConnectionId>>,
    /// Sockets of users who see the board.
    supervisors: Vec<ConnectionId>,
    by_user: HashMap<i64, Vec<ConnectionId>>,
    calls: LiveCalls,
    meta: HashMap<CallId, CallMeta>,
    /// Calls not ended that concern each extension (ringing there, or handled there).
    active_by_extension: HashMap<String, Vec<CallId>>,
    agents: BTreeMap<i64, AgentView>,
    owner_by_extension: HashMap<String, i64>,
    open_callbacks: HashMap<i64, u32>,
    figures: Option<Figures>,
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Self {
        let calls = LiveCalls::with_max(config.max_calls);
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    calls,
                    ..State::default()
                }),
                closing: std::sync::atomic::AtomicBool::new(false),
                stats: HubStats::default(),
            }),
        }
    }

    /// The hub's tunables.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while routing leaves a consistent-enough board; keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a socket for `viewer`; its queue already holds the snapshot.
    pub fn connect(&self, viewer: Viewer) -> Connection {
        let queue = Queue::new();
        let mut state = self.state();
        state.next_id += 1;
        let id = ConnectionId(state.next_id);
        if self.is_closing() {
            // The server is stopping: this socket ends before it begins.
            queue.close();
            return Connection { id, queue };
        }
        let user_id = viewer.user_id;
        let socket = Socket {
            viewer,
            queue: Arc::clone(&queue),
            seq: 0,
            overflows: 0,
        };
        state.index_socket(id, &socket.viewer);
        state.sockets.insert(id, socket);
        state.send_snapshot(id, &self.inner.config);
        state.refresh_agent(user_id, &self.inner.config);
        Connection { id, queue }
    }

    /// The server is stopping: every socket's queue ends (its pump returns
    /// [`crate::PumpEnd::Removed`], and [`Hub::is_closing`] tells the socket's
    /// owner to say 1001 "going away"), and new connections are refused.
    pub fn shut_down(&self) {
        self.inner
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut state = self.state();
        let ids: Vec<ConnectionId> = state.sockets.keys().copied().collect();
        for id in ids {
            state.remove_socket(id);
        }
    }

    /// True once [`Hub::shut_down`] was called.
    pub fn is_closing(&self) -> bool {
        self.inner.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Forgets a socket; its queue ends. Unknown ids are ignored.
    pub fn disconnect(&self, id: ConnectionId) {
        let mut state = self.state();
        if let Some(socket) = state.remove_socket(id) {
            state.refresh_agent(socket.viewer.user_id, &self.inner.config);
        }
    }

    /// One heartbeat for every socket, at once: a socket that has not been
    /// heard from since the previous beat is closed (its pump ends with
    /// [`crate::PumpEnd::TimedOut`]); the others are sent
    /// `{"v":1,"seq":N,"type":"ping"}`, N being the seq of the last message
    /// queued (heartbeats do not advance it). One timer for the hub rather than
    /// one per socket: ten thousand idle sockets do not each keep a timer.
    /// Returns how many sockets were closed.
    pub fn heartbeat(&self) -> usize {
        let config = &self.inner.config;
        let mut state = self.state();
        let silent: Vec<ConnectionId> = state
            .sockets
            .iter()
            .filter(|(_, socket)| !socket.queue.beat(socket.seq))
            .map(|(id, _)| *id)
            .collect();
        for id in &silent {
            debug!(connection = %id, "socket silent, dropping it");
            if let Some(socket) = state.remove_socket(*id) {
                state.refresh_agent(socket.viewer.user_id, config);
            }
        }
        silent.len()
    }

    /// Runs [`Hub::heartbeat`] every `ping_every`, forever; spawn it once.
    pub async fn run_heartbeat(self) {
        let every = self.inner.config.ping_every;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.heartbeat();
        }
    }

    /// Number of registered sockets.
    pub fn connections(&self) -> usize {
        self.state().sockets.len()
    }

    /// Registered sockets by their user's role (every role listed, zeros too).
    pub fn connections_by_role(&self) -> [(Role, usize); 3] {
        let mut counts = [(Role::Agent, 0), (Role::Supervisor, 0), (Role::Admin, 0)];
        for socket in self.state().sockets.values() {
            if let Some((_, n)) = counts.iter_mut().find(|(r, _)| *r == socket.viewer.role) {
                *n += 1;
            }
        }
        counts
    }

    /// What the hub counted: pops, withdrawals, pop latency.
    pub fn stats(&self) -> &HubStats {
        &self.inner.stats
    }

    /// Replaces whatever a socket has queued (stale deltas) with a fresh
    /// snapshot, and clears its lagged mark.
    pub fn resync(&self, id: ConnectionId) -> Result<(), HubError> {
        let mut state = self.state();
        let socket = state
            .sockets
            .get(&id)
            .ok_or(HubError::UnknownConnection(id))?;
        socket.queue.reset();
        state.send_snapshot(id, &self.inner.config);
        Ok(())
    }

    /// Handles one text message from a browser and returns what it was; a
    /// `resync` queues the snapshot. Heartbeat replies are the caller's (the pump's) job.
    pub fn handle_client_message(
        &self,
        id: ConnectionId,
        text: &str,
    ) -> Result<crate::ClientMessage, HubError> {
        if text.len() > MAX_CLIENT_MESSAGE {
            return Err(HubError::MessageTooLarge {
                len: text.len(),
                max: MAX_CLIENT_MESSAGE,
            });
        }
        let message: crate::ClientMessage = serde_json::from_str(text)?;
        if message == crate::ClientMessage::Resync {
            self.resync(id)?;
        } else if !self.state().sockets.contains_key(&id) {
            return Err(HubError::UnknownConnection(id));
        }
        Ok(message)
    }

    /// Applies a call event to the board and routes it: the pop to the
    /// extensions that ring, updates to the agents the call concerns,
    /// "withdrawn" to agents whose phone stopped ringing because someone else
    /// answered, everything to supervisors. `card`, when given, becomes the
    /// call's card (kept for snapshots).
    pub fn publish_call(&self, event: &CallEvent, card: Option<Card>) {
        let config = &self.inner.config;
        let queued = self.state().apply_call(event, card, config);
        // Counted after the lock is released: the pop is queued already.
        if queued.pops > 0 {
            // `at` is when Fiche read what made the phone ring (the HEP packet,
            // the AMI message, the CTI request): see `fiche_model::CallEvent`.
            let latency = (chrono::Utc::now() - event.at).to_std().unwrap_or_default();
            self.inner.stats.popped(queued.pops, latency);
        }
        if queued.withdrawn > 0 {
            self.inner.stats.withdrew(queued.withdrawn);
        }
    }

    /// Replaces a call's card (the agent created the customer, or attached the
    /// number) and sends it to the sockets following the call.
    pub fn publish_card(&self, call_id: CallId, card: Card) {
        let config = &self.inner.config;
        let mut state = self.state();
        let Some(call) = state.calls.get(&call_id) else {
            return;
        };
        let meta = state.meta.get(&call_id);
        let exts = routing::card_recipients(call, meta);
        let body = ServerMessage::Card {
            call_id,
            card: &card,
        }
        .to_body();
        let mut recipients = state.sockets_of_extensions(exts.iter().map(String::as_str));
        recipients.extend(state.supervisors.iter().copied());
        state.deliver(recipients, body, config);
        state.meta.entry(call_id).or_default().card = Some(card);
    }

    /// Routes a created or changed ticket to its assignee, to the agent of its
    /// call, and to supervisors.
    pub fn publish_ticket(&self, ticket: &TicketSummary) {
        let config = &self.inner.config;
        let mut state = self.state();
        let mut recipients = state.supervisors.clone();
        if let Some(user) = ticket.assignee_user_id {
            recipients.extend(state.by_user.get(&user).into_iter().flatten().copied());
        }
        if let Some(call) = ticket.call_id.and_then(|id| state.calls.get(&id)) {
            let meta = state.meta.get(&call.id);
            let agent = call
                .agent_extension
                .as_deref()
                .or(meta.and_then(|m| m.answered_by.as_deref()));
            recipients.extend(state.sockets_of_extensions(agent));
        }
        let body = ServerMessage::Ticket { ticket }.to_body();
        state.deliver(recipients, body, config);
    }

    /// Sets a user's count of open callbacks (shown in snapshots) and tells their sockets.
    pub fn set_open_callbacks(&self, user_id: i64, open: u32) {
        let config = &self.inner.config;
        let mut state = self.state();
        if state.open_callbacks.insert(user_id, open) == Some(open) {
            return;
        }
        let recipients = state.by_user.get(&user_id).cloned().unwrap_or_default();
        let body = ServerMessage::Callbacks { open }.to_body();
        state.deliver(recipients, body, config);
    }

    /// Stores today's figures and sends them to supervisors.
    pub fn publish_figures(&self, figures: Figures) {
        let config = &self.inner.config;
        let mut state = self.state();
        let body = ServerMessage::Figures { figures: &figures }.to_body();
        let recipients = state.supervisors.clone();
        state.deliver(recipients, body, config);
        state.figures = Some(figures);
    }

    /// Replaces the agent directory (names and extensions). Connected sockets of
    /// these users take the new extensions, so pops follow an extension moved
    /// from one agent to another. Supervisors get the new list.
    pub fn set_agents(&self, agents: Vec<AgentInfo>) {
        let config = &self.inner.config;
        let mut state = self.state();
        state.owner_by_extension.clear();
        state.agents.clear();
        for agent in agents {
            state.place_agent(agent);
        }
        let users: Vec<i64> = state.agents.keys().copied().collect();
        for user in users {
            state.settle_agent(user);
        }
        // The whole directory as JSON (a megabyte at 10,000 agents): only
        // when a supervisor is there to receive it.
        if state.supervisors.is_empty() {
            return;
        }
        let body = ServerMessage::Agents {
            agents: state.agents.values().collect(),
        }
        .to_body();
        let recipients = state.supervisors.clone();
        state.deliver(recipients, body, config);
    }

    /// Adds one agent to the directory, or updates their name and extensions,
    /// without rebuilding it: what a login or a new user needs, at a cost that
    /// does not grow with the directory. Supervisors get the agent's
    /// `agent_state`. Returns false, changing nothing, when one of the
    /// extensions belongs to another agent here: an extension moved, which
    /// only the whole directory ([`Hub::set_agents`]) can say.
    pub fn upsert_agent(&self, agent: AgentInfo) -> bool {
        let config = &self.inner.config;
        let mut state = self.state();
        let taken = agent.extensions.iter().any(|ext| {
            state
                .owner_by_extension
                .get(ext)
                .is_some_and(|owner| *owner != agent.user_id)
        });
        if taken {
            return false;
        }
        let user = agent.user_id;
        if let Some(view) = state.agents.get(&user) {
            if view.name == agent.name && view.extensions == agent.extensions {
                return true;
            }
            let old = view.extensions.clone();
            for ext in old.iter().filter(|e| !agent.extensions.contains(e)) {
                state.owner_by_extension.remove(ext);
            }
        }
        state.place_agent(agent);
        state.settle_agent(user);
        if !state.supervisors.is_empty() {
            if let Some(view) = state.agents.get(&user) {
                let body = ServerMessage::AgentState { agent: view }.to_body();
                let recipients = state.supervisors.clone();
                state.deliver(recipients, body, config);
            }
        }
        true
    }

    /// Forgets calls that ended before `ended_before` (and their cards); returns how many.
    pub fn prune(&self, ended_before: Timestamp) -> usize {
        let mut state = self.state();
        let pruned = state.calls.prune(ended_before);
        if pruned > 0 {
            let State { calls, meta, .. } = &mut *state;
            meta.retain(|id, _| calls.get(id).is_some());
        }
        pruned
    }

    /// The live call with this id, if the hub knows it.
    pub fn call(&self, id: &CallId) -> Option<LiveCall> {
        self.state().calls.get(id).cloned()
    }

    /// How many calls the live table holds.
    pub fn call_count(&self) -> usize {
        self.state().calls.len()
    }

    /// Whether the live table holds this call.
    pub fn has_call(&self, id: &CallId) -> bool {
        self.state().calls.get(id).is_some()
    }

    /// How many calls the live table holds, and at most `limit` of them, oldest
    /// first, after skipping `offset` (supervisors' `/api/calls/live`).
    pub fn page_calls(&self, offset: usize, limit: usize) -> (usize, Vec<LiveCall>) {
        let state = self.state();
        (state.calls.len(), state.calls.page(offset, limit))
    }

    /// The calls a socket of `viewer` is shown in its snapshot, oldest first:
    /// every known call for supervisors and admins, the calls ringing at or
    /// handled at the viewer's extensions for agents. `/api/calls/live` answers
    /// agents with this, so REST never shows them more than their websocket.
    pub fn visible_calls(&self, viewer: &Viewer) -> Vec<LiveCall> {
        let state = self.state();
        let mut calls: Vec<&LiveCall> = state
            .visible_call_ids(viewer)
            .iter()
            .filter_map(|i| state.calls.get(i))
            .collect();
        calls.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        calls.into_iter().cloned().collect()
    }

    /// The agents and their current state.
    pub fn agents(&self) -> Vec<AgentView> {
        self.state().agents.values().cloned().collect()
    }
}

impl State {
    fn send_snapshot(&mut self, id: ConnectionId, config: &HubConfig) {
        let Some(socket) = self.sockets.get(&id) else {
            return;
        };
        let viewer = &socket.viewer;
        let open_callbacks = self
            .open_callbacks
            .get(&viewer.user_id)
            .copied()
            .unwrap_or(0);
        let mut calls: Vec<&LiveCall> = self
            .visible_call_ids(viewer)
            .iter()
            .filter_map(|i| self.calls.get(i))
            .collect();
        calls.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        let body = if viewer.role.sees_board() {
            ServerMessage::Snapshot(Snapshot {
                role: viewer.role,
                extensions: &viewer.extensions,
                calls: calls.into_iter().map(|call| self.call_card(call)).collect(),
                open_callbacks,
                agents: Some(self.agents.values().collect()),
                figures: Some(self.figures.as_ref()),
            })
            .to_body()
        } else {
            ServerMessage::Snapshot(Snapshot {
                role: viewer.role,
                extensions: &viewer.extensions,
                calls: calls.into_iter().map(|call| self.call_card(call)).collect(),
                open_callbacks,
                agents: None,
                figures: None,
            })
            .to_body()
        };
        self.deliver(vec![id], body, config);
    }

    /// Ids of the calls `viewer` may see: every known call (each has a meta
    /// entry, ended ones until pruned) for the board, the calls active at the
    /// viewer's extensions for agents.
    fn visible_call_ids(&self, viewer: &Viewer) -> Vec<CallId> {
        if viewer.role.sees_board() {
            return self.meta.keys().copied().collect();
        }
        let mut ids: Vec<CallId> = Vec::new();
        for ext in &viewer.extensions {
            ids.extend(self.active_by_extension.get(ext).into_iter().flatten());
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn call_card<'a>(&'a self, call: &'a LiveCall) -> CallCard<'a> {
        CallCard {
            call,
            card: self.meta.get(&call.id).and_then(|m| m.card.as_ref()),
        }
    }

    fn apply_call(&mut self, event: &CallEvent, card: Option<Card>, config: &HubConfig) -> Queued {
        let id = event.call_id;
        let before = Before::of(self.calls.get(&id), self.meta.get(&id));
        let (changed, evicted) = self.calls.apply_evicting(event);
        if let Some(gone) = evicted {
            self.forget_call(gone);
        }
        let mut queued = Queued::default();
        if !self
            .calls
            .get(&id)
            .is_some_and(|_| changed || card.is_some())
        {
            return queued;
        }
        let new_card = card.is_some();
        self.meta
            .entry(id)
            .or_default()
            .follow(&event.kind, changed, card);
        let Some(call) = self.calls.get(&id) else {
            return queued;
        };
        let meta = self.meta.get(&id);
        let routing = routing::route(&event.kind, call, meta, &before, changed, new_card);

        // Messages, each serialised once, with what they count as.
        let mut sends: Vec<(Vec<ConnectionId>, Result<Body, serde_json::Error>, Sent)> = Vec::new();
        let card_ref = meta.and_then(|m| m.card.as_ref());
        if let Some(extension) = routing.pop {
            let pop = ServerMessage::Pop {
                extension,
                call,
                card: card_ref,
            }
            .to_body();
            sends.push((self.sockets_of_extensions([extension]), pop, Sent::Pop));
        }
        for (ext, cause) in &routing.withdrawals {
            let name = routing
                .answered_by
                .as_ref()
                .and_then(|a| self.owner_by_extension.get(a))
                .and_then(|user| self.agents.get(user))
                .map(|a| a.name.as_str());
            let body = ServerMessage::Withdrawn {
                call_id: id,
                extension: ext,
                cause: *cause,
                answered_by: routing.answered_by.as_deref(),
                answered_by_name: name,
            }
            .to_body();
            sends.push((
                self.sockets_of_extensions([ext.as_str()]),
                body,
                Sent::Withdrawn,
            ));
        }
        let update = ServerMessage::Call {
            event: event.kind.name(),
            at: event.at,
            call,
        }
        .to_body();
        let mut update_to = self.sockets_of_extensions(routing.update.iter().map(String::as_str));
        update_to.extend(self.supervisors.iter().copied());
        sends.push((update_to, update, Sent::Other));
        if let (Some(card_exts), Some(card)) = (&routing.card, card_ref) {
            let body = ServerMessage::Card { call_id: id, card }.to_body();
            let mut to = self.supervisors.clone();
            to.extend(self.sockets_of_extensions(card_exts.iter().map(String::as_str)));
            sends.push((to, body, Sent::Other));
        }

        // Deliver after the borrows of the call end.
        for (recipients, body, sent) in sends {
            let n = self.deliver(recipients, body, config);
            match sent {
                Sent::Pop => queued.pops += n,
                Sent::Withdrawn => queued.withdrawn += n,
                Sent::Other => {}
            }
        }
        if let Some(meta) = self.meta.get_mut(&id) {
            meta.remember_withdrawals(&routing);
        }
        let occupied_after = routing.occupied;

        // Keep the per-extension index of active calls, then agent states.
        for ext in &before.occupied {
            if !occupied_after.contains(ext) {
                if let Some(ids) = self.active_by_extension.get_mut(ext) {
                    ids.retain(|c| *c != id);
                    if ids.is_empty() {
                        self.active_by_extension.remove(ext);
                    }
                }
            }
        }
        for ext in &occupied_after {
            if !before.occupied.contains(ext) {
                self.active_by_extension
                    .entry(ext.clone())
                    .or_default()
                    .push(id);
            }
        }
        let mut users: Vec<i64> = merge(&before.occupied, &occupied_after)
            .iter()
            .filter_map(|e| self.owner_by_extension.get(e).copied())
            .collect();
        users.sort_unstable();
        users.dedup();
        for user in users {
            self.refresh_agent(user, config);
        }
        queued
    }
}
