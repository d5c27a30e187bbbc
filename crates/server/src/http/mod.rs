//! The HTTP surface: health, the live-call API, the websocket and the web pages.

pub mod access_log;
mod calls;
mod customers;
pub mod error;
mod kpis;
mod pages;
pub(crate) mod session;
mod tickets;
pub mod users;
mod ws;

use crate::auth::Auth;
use axum::routing::get;
use axum::{Json, Router};
use fiche_hub::Hub;
use fiche_matcher::{Match, NumberKind, NumberPolicy};
use fiche_pbx::driver::ami::AmiCommand;
use fiche_pbx::CallEvent;
use fiche_store::{Customer, CustomerId, Store};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Every call event as JSON, for the websocket.
    pub fanout: broadcast::Sender<Arc<str>>,
    /// Customers, users, calls and tickets.
    pub store: Store,
    /// How numbers are normalised.
    pub policy: Arc<NumberPolicy>,
    /// Per-agent websocket routing and the supervisor board.
    pub hub: Hub,
    /// The pipeline's input: sources that arrive over HTTP (CTI webhooks) send here.
    pub events: mpsc::Sender<CallEvent>,
    /// One command queue per configured AMI source (click-to-call).
    pub ami: Arc<Vec<mpsc::Sender<AmiCommand>>>,
    /// The customers in memory (number index and names), kept current as
    /// customers change.
    pub customers: crate::customer_memory::CustomerMemory,
    /// Sessions, login throttling and each user's open sockets.
    pub auth: Arc<Auth>,
    /// Ticket changes made through the API, for the webhook outbox.
    pub tickets_feed: crate::tickets::TicketFeed,
    /// This node in its cluster (`None`: a single node).
    pub cluster: Option<crate::cluster::Cluster>,
    /// Origins besides the server's own whose pages may open the websockets.
    pub allowed_origins: Arc<Vec<String>>,
    /// The hub sockets' tasks: a stopping server tells each "going away"
    /// (1001) and waits for the frame to leave.
    pub sockets: tokio_util::task::TaskTracker,
    /// `fiche demo`'s simulated phone system; `None` in production.
    pub demo: Option<crate::demo::phone::DemoHandle>,
}

impl AppState {
    /// Customers owning `number`, ranked.
    pub fn lookup(&self, number: &NumberKind) -> Vec<Match> {
        self.customers.lookup(number)
    }

    /// Puts a created or updated customer's numbers in the index.
    pub fn index_customer(&self, customer: &Customer) {
        self.customers.put(customer);
    }

    /// Takes a deleted customer out of the index.
    pub fn unindex_customer(&self, id: CustomerId) {
        self.customers.remove(id);
    }
}

/// A path parameter (`/api/tickets/{id}`) whose parse failure is answered with
/// the API's JSON 400, like a bad body or query, rather than axum's plain text.
pub(crate) struct ApiPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = error::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(error::ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// Largest page a list route returns (`limit`); 0 asks for the default of 50.
pub(crate) const MAX_LIMIT: u32 = 500;

/// `limit` of a list, refused above [`MAX_LIMIT`] rather than cut silently,
/// so a client asking for more learns it gets less.
pub(crate) fn page_limit(limit: u32) -> Result<u32, error::ApiError> {
    if limit > MAX_LIMIT {
        return Err(error::ApiError::Invalid {
            field: "limit".into(),
            message: format!("at most {MAX_LIMIT}"),
        });
    }
    Ok(limit)
}

/// The application: API routes, then the web pages (built in, or from `web_root`).
pub fn router(state: AppState, web_root: Option<PathBuf>) -> Router {
    let session = axum::middleware::from_fn_with_state(state.clone(), session::require_session);
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/api/calls/live", get(calls::live))
        .route("/ws", get(ws::upgrade))
        .route("/ws/events", get(ws::upgrade_events))
        .nest("/api", session::router())
        .nest("/api", users::router())
        .nest("/api", customers::router())
        .merge(calls::router())
        .merge(tickets::router())
        // `fiche demo`'s "Simuler un appel" (404 outside demo mode).
        .merge(crate::demo::router())
        .fallback_service(pages::service(web_root))
        .with_state(state)
        // Last, so that it wraps every route above, whatever order they are added in.
        .layer(session);
    pages::security_headers(app)
}

/// Liveness; in a cluster also this node's name and the leases it holds
/// (which PBX connections, whether it writes tickets).
async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Json<serde_json::Value> {
    match &state.cluster {
        None => Json(serde_json::json!({ "status": "ok" })),
        Some(cluster) => Json(serde_json::json!({
            "status": "ok",
            "node": cluster.node(),
            "leases": cluster.held(),
        })),
    }
}
