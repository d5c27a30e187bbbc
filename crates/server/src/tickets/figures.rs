//! Today's figures for the supervisor board: recomputed from the store after
//! changes, at most once per [`FIGURES_EVERY`], and pushed to the hub.

use super::local_day;
use chrono::{Local, Offset, Utc};
use fiche_hub::{Figures, Hub};
use fiche_store::{Kpis, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Shortest time between two recomputations.
pub const FIGURES_EVERY: Duration = Duration::from_secs(1);
/// Figures are refreshed at least this often (overdue callbacks change with time).
const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The store's figures as the hub carries them.
pub fn figures(kpis: Kpis, day: Option<chrono::NaiveDate>) -> Figures {
    Figures {
        day,
        calls_in: kpis.calls_in,
        calls_out: kpis.calls_out,
        answered_rate: kpis.answered_rate,
        missed: kpis.missed,
        missed_not_called_back: kpis.missed_not_called_back,
        overdue_callbacks: kpis.overdue_callbacks,
        oldest_overdue_due_at: kpis.oldest_overdue_due_at,
        average_wait_secs: kpis.average_wait_secs,
        average_duration_secs: kpis.average_duration_secs,
        open_tickets: kpis.open_tickets,
        calls_per_hour: kpis.calls_per_hour,
    }
}

/// Today's figures from the store.
pub async fn today(store: &Store) -> fiche_store::Result<Figures> {
    let now = Utc::now();
    let (from, to, day) = local_day(now);
    let offset = Local::now().offset().fix();
    let kpis = store.kpis(from, to, now, offset).await?;
    Ok(figures(kpis, Some(day)))
}

/// Pushes figures when `changed` fires (debounced) or every minute, until `shutdown`.
pub async fn run(store: Store, hub: Hub, changed: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        match today(&store).await {
            Ok(figures) => hub.publish_figures(figures),
            Err(error) => warn!(%error, "figures not computed"),
        }
        tokio::select! {
            () = changed.notified() => {}
            () = tokio::time::sleep(REFRESH_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(FIGURES_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
