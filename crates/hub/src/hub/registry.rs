//! The socket registry: which sockets are open, whose they are, the index of
//! sockets by extension, user and board, and the one place a message is queued
//! on a socket (never waiting: a full queue lags the socket, then closes it).

use super::{ConnectionId, HubConfig, Socket, State};
use crate::protocol::{Body, Frame, Viewer};
use crate::queue::{PushError, Status};
use fiche_model::CallId;
use tracing::{debug, warn};

impl State {
    pub(super) fn index_socket(&mut self, id: ConnectionId, viewer: &Viewer) {
        for ext in &viewer.extensions {
            self.by_extension.entry(ext.clone()).or_default().push(id);
        }
        if viewer.role.sees_board() {
            self.supervisors.push(id);
        }
        self.by_user.entry(viewer.user_id).or_default().push(id);
    }

    pub(super) fn unindex_extensions(&mut self, id: ConnectionId, extensions: &[String]) {
        for ext in extensions {
            if let Some(ids) = self.by_extension.get_mut(ext) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.by_extension.remove(ext);
                }
            }
        }
    }

    pub(super) fn reindex_extensions(&mut self, id: ConnectionId, extensions: &[String]) {
        let Some(old) = self.sockets.get(&id).map(|s| s.viewer.extensions.clone()) else {
            return;
        };
        if old == extensions {
            return;
        }
        self.unindex_extensions(id, &old);
        for ext in extensions {
            self.by_extension.entry(ext.clone()).or_default().push(id);
        }
        if let Some(socket) = self.sockets.get_mut(&id) {
            socket.viewer.extensions = extensions.to_vec();
        }
    }

    /// A call the board no longer holds (it made way for a new one): its
    /// card and its place in the per-extension index go with it.
    pub(super) fn forget_call(&mut self, id: CallId) {
        self.meta.remove(&id);
        self.active_by_extension.retain(|_, ids| {
            ids.retain(|c| *c != id);
            !ids.is_empty()
        });
    }

    pub(super) fn remove_socket(&mut self, id: ConnectionId) -> Option<Socket> {
        let socket = self.sockets.remove(&id)?;
        socket.queue.close();
        self.unindex_extensions(id, &socket.viewer.extensions);
        self.supervisors.retain(|i| *i != id);
        if let Some(ids) = self.by_user.get_mut(&socket.viewer.user_id) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_user.remove(&socket.viewer.user_id);
            }
        }
        Some(socket)
    }

    pub(super) fn sockets_of_extensions<'e>(
        &self,
        extensions: impl IntoIterator<Item = &'e str>,
    ) -> Vec<ConnectionId> {
        let mut ids = Vec::new();
        for ext in extensions {
            if let Some(found) = self.by_extension.get(ext) {
                ids.extend(found.iter().copied());
            }
        }
        ids
    }

    /// Queues `body` for each recipient once, without ever waiting: a full queue
    /// marks the socket lagged (it resyncs when it drains) and, past the overflow
    /// budget, closes it. Returns on how many sockets it was queued.
    pub(super) fn deliver(
        &mut self,
        mut recipients: Vec<ConnectionId>,
        body: Result<Body, serde_json::Error>,
        config: &HubConfig,
    ) -> u64 {
        let body = match body {
            Ok(body) => body,
            Err(error) => {
                warn!(%error, "hub message not serialisable");
                return 0;
            }
        };
        let mut queued = 0;
        recipients.sort_unstable();
        recipients.dedup();
        let mut dropped = Vec::new();
        for id in recipients {
            let Some(socket) = self.sockets.get_mut(&id) else {
                continue;
            };
            let frame = Frame::new(socket.seq + 1, body.clone());
            match socket.queue.push(frame, config.queue_capacity.max(1)) {
                Ok(()) => {
                    socket.seq += 1;
                    queued += 1;
                }
                Err(PushError::Lagged) => {}
                Err(PushError::Full) => {
                    socket.overflows += 1;
                    if socket.overflows > config.max_overflows {
                        debug!(connection = %id, "socket overflowed too often, closing it");
                        socket.queue.set_status(Status::TooSlow);
                        dropped.push(id);
                    } else {
                        debug!(connection = %id, "socket queue full, will resync");
                        socket.queue.set_status(Status::Lagged);
                    }
                }
                Err(PushError::Closed) => dropped.push(id),
            }
        }
        for id in dropped {
            if let Some(socket) = self.remove_socket(id) {
                self.refresh_agent(socket.viewer.user_id, config);
            }
        }
        queued
    }
}
