//! An AMI source in a cluster: one node at a time holds the connection
//! (lease `ami:<name>`); when it dies, another logs in within seconds and
//! resyncs with `CoreShowChannels` (a fresh tracker, so the calls in progress
//! come back under their stable ids and the log keeps one copy of each
//! event). Click-to-call from an agent on any node goes to the holder: as a
//! command row in the database, which the holder takes, plays and answers.

use super::Cluster;
use fiche_pbx::driver::ami::{self as ami_driver, AmiCommand, AmiSourceConfig, OriginateError};
use fiche_pbx::{CallEvent, CallId};
use fiche_store::COMMAND_CHANNEL;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long a click-to-call waits for the holder's answer (the HTTP route
/// gives up a little later).
const RELAY_TIMEOUT: Duration = Duration::from_secs(8);
/// How often the asking node looks for the answer.
const ANSWER_POLL: Duration = Duration::from_millis(50);
/// How often the holder looks for commands without a notification.
const COMMAND_POLL: Duration = Duration::from_millis(500);
/// Capacity of the holder's queue into the AMI session.
const INNER_CAPACITY: usize = 64;

/// A click-to-call as it travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
struct Originate {
    agent_extension: String,
    number: String,
    caller_id: Option<String>,
}

/// Its answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Placed(CallId),
    NotConnected,
    Invalid { field: String, value: String },
    Rejected(String),
    TimedOut,
    Busy,
}

impl From<Result<CallId, OriginateError>> for Answer {
    fn from(result: Result<CallId, OriginateError>) -> Self {
        match result {
            Ok(id) => Answer::Placed(id),
            Err(OriginateError::NotConnected) => Answer::NotConnected,
            Err(OriginateError::Invalid { field, value }) => Answer::Invalid {
                field: field.to_owned(),
                value,
            },
            Err(OriginateError::Rejected(why)) => Answer::Rejected(why),
            Err(OriginateError::Busy) => Answer::Busy,
            Err(_) => Answer::TimedOut,
        }
    }
}

impl From<Answer> for Result<CallId, OriginateError> {
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Placed(id) => Ok(id),
            Answer::NotConnected => Err(OriginateError::NotConnected),
            Answer::Invalid { field, value } => Err(OriginateError::Invalid {
                // The driver names one of these two fields.
                field: if field == "number" {
                    "number"
                } else {
                    "agent_extension"
                },
                value,
            }),
            Answer::Rejected(why) => Err(OriginateError::Rejected(why)),
            Answer::TimedOut => Err(OriginateError::TimedOut),
            Answer::Busy => Err(OriginateError::Busy),
        }
    }
}

/// Runs AMI source `config` on whichever node holds its lease, until
/// `shutdown`; `commands` are this node's click-to-calls for it.
pub async fn run(
    cluster: Cluster,
    config: AmiSourceConfig,
    events: mpsc::Sender<CallEvent>,
    mut commands: mpsc::Receiver<AmiCommand>,
    shutdown: CancellationToken,
) {
    let lease = format!("ami:{}", config.name);
    // The session's command queue while this node holds the lease.
    let inner: Arc<Mutex<Option<mpsc::Sender<AmiCommand>>>> = Arc::default();
    let held = {
        let (cluster, lease, inner, shutdown) = (
            cluster.clone(),
            lease.clone(),
            inner.clone(),
            shutdown.clone(),
        );
        cluster
            .clone()
            .exclusive(lease.clone(), shutdown, move |tenure| {
                let (tx, rx) = mpsc::channel(INNER_CAPACITY);
                set(&inner, Some(tx.clone()));
                let config = config.clone();
                let events = events.clone();
                let cluster = cluster.clone();
                let lease = lease.clone();
                let inner = inner.clone();
                async move {
                    tokio::join!(
                        ami_driver::run(config, events, rx, tenure.clone()),
                        serve_commands(&cluster, &lease, tx, tenure),
                    );
                    set(&inner, None);
                }
            })
    };
    let asked = async {
        // Relays in flight: owned here, so they end with the source (each is
        // bounded by RELAY_TIMEOUT anyway).
        let mut relays = tokio::task::JoinSet::new();
        while let Some(command) = commands.recv().await {
            while relays.try_join_next().is_some() {}
            let local = lock(&inner).clone();
            match local {
                Some(session) => {
                    if let Err(
                        mpsc::error::TrySendError::Full(command)
                        | mpsc::error::TrySendError::Closed(command),
                    ) = session.try_send(command)
                    {
                        reply(command, Err(OriginateError::Busy));
                    }
                }
                None => {
                    let (cluster, lease) = (cluster.clone(), lease.clone());
                    // Each relay waits on its own: a slow holder delays no other agent.
                    relays.spawn(async move { relay(&cluster, &lease, command).await });
                }
            }
        }
    };
    tokio::select! {
        () = held => {}
        () = asked => shutdown.cancelled().await,
    }
}

fn lock(
    inner: &Mutex<Option<mpsc::Sender<AmiCommand>>>,
) -> std::sync::MutexGuard<'_, Option<mpsc::Sender<AmiCommand>>> {
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn set(inner: &Mutex<Option<mpsc::Sender<AmiCommand>>>, value: Option<mpsc::Sender<AmiCommand>>) {
    *lock(inner) = value;
}

fn reply(command: AmiCommand, result: Result<CallId, OriginateError>) {
    match command {
        AmiCommand::Originate { reply, .. } => {
            // The asker may have given up: nobody to tell.
            let _ = reply.send(result);
        }
        _ => warn!("an AMI command this node cannot relay was dropped"),
    }
}

/// Sends a click-to-call to the holder through the database and waits for its answer.
async fn relay(cluster: &Cluster, lease: &str, command: AmiCommand) {
    let AmiCommand::Originate {
        agent_extension,
        number,
        caller_id,
        reply,
    } = command
    else {
        return;
    };
    let body = Originate {
        agent_extension,
        number,
        caller_id,
    };
    let Ok(body) = serde_json::to_string(&body) else {
        let _ = reply.send(Err(OriginateError::NotConnected));
        return;
    };
    let store = cluster.store();
    let id = match store.command_push(lease, &body).await {
        Ok(id) => id,
        Err(error) => {
            warn!(%error, "click-to-call not relayed to the node holding the AMI connection");
            let _ = reply.send(Err(OriginateError::NotConnected));
            return;
        }
    };
    let deadline = tokio::time::Instant::now() + RELAY_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(ANSWER_POLL).await;
        match store.command_answer_of(id).await {
            Ok(Some(answer)) => {
                let result = serde_json::from_str::<Answer>(&answer)
                    .map_or(Err(OriginateError::TimedOut), Into::into);
                let _ = reply.send(result);
                return;
            }
            Ok(None) => {}
            Err(error) => warn!(%error, "click-to-call answer not read"),
        }
    }
    let _ = reply.send(Err(OriginateError::TimedOut));
}

/// On the holder: takes the commands other nodes queued for `lease`, plays
/// them on the session and answers them, until `tenure` ends.
async fn serve_commands(
    cluster: &Cluster,
    lease: &str,
    session: mpsc::Sender<AmiCommand>,
    tenure: CancellationToken,
) {
    let store = cluster.store();
    let mut listener = None;
    loop {
        match store.commands_take(lease, cluster.node()).await {
            Ok(commands) => {
                for command in commands {
                    let answer = match serde_json::from_str::<Originate>(&command.body) {
                        Ok(o) => play(&session, o).await,
                        Err(_) => Answer::Invalid {
                            field: "number".into(),
                            value: String::new(),
                        },
                    };
                    let answer = serde_json::to_string(&answer).unwrap_or_default();
                    if let Err(error) = store.command_answer(command.id, &answer).await {
                        warn!(%error, "click-to-call answer not written");
                    }
                }
            }
            Err(error) => warn!(%error, "click-to-calls from other nodes not read"),
        }
        if !super::wait_for_news(store, COMMAND_CHANNEL, &mut listener, COMMAND_POLL, &tenure).await
        {
            return;
        }
    }
}

async fn play(session: &mpsc::Sender<AmiCommand>, originate: Originate) -> Answer {
    let (reply, answer) = oneshot::channel();
    let command = AmiCommand::Originate {
        agent_extension: originate.agent_extension,
        number: originate.number,
        caller_id: originate.caller_id,
        reply,
    };
    if session.try_send(command).is_err() {
        return Answer::Busy;
    }
    match tokio::time::timeout(RELAY_TIMEOUT, answer).await {
        Ok(Ok(result)) => result.into(),
        Ok(Err(_)) => Answer::NotConnected,
        Err(_) => Answer::TimedOut,
    }
}
