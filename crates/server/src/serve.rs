//! `fiche serve`: binds every socket, starts the listeners, the pipeline and the
//! HTTP server, and stops them all on one cancellation token.

use crate::cluster::{bus, claimed, Cluster};
use crate::config::{AmiConfig, Config};
use crate::http::{self, AppState};
use crate::pipeline::{
    self, Outputs, ACKNOWLEDGED_QUEUE_CAPACITY, EVENT_QUEUE_CAPACITY, FANOUT_CAPACITY,
};
use anyhow::Context;
use axum::serve::ListenerExt;
use bytes::Bytes;
use fiche_hub::{Hub, HubConfig};
use fiche_matcher::Index;
use fiche_pbx::ami::ChannelPatterns;
use fiche_pbx::driver::ami::{self as ami_driver, AmiSourceConfig};
use fiche_pbx::driver::hep::{self as hep_driver, HepFilter, SIP_QUEUE_CAPACITY};
use fiche_pbx::sip::SipTrackerConfig;
use fiche_pbx::ExtensionPatterns;
use fiche_store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Kernel receive buffer asked for the HEP UDP socket: mirrored SIP arrives in
/// bursts and a lost packet is a lost state change. The kernel may grant less
/// (net.core.rmem_max).
const HEP_UDP_RECV_BUFFER: usize = 8 * 1024 * 1024;

/// How long hub sockets get to send their close frame at shutdown.
const SOCKETS_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long tasks get to drain after shutdown is requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Every socket Fiche listens on, bound before anything runs, so that a port
/// already taken fails start-up at once and tests can bind port 0.
#[derive(Debug)]
pub struct Listeners {
    http: TcpListener,
    hep_udp: Option<UdpSocket>,
    hep_tcp: Option<TcpListener>,
}

impl Listeners {
    /// Binds the HTTP and HEP sockets the configuration asks for.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let (hep_udp, hep_tcp) = bind_hep(config).await?;
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding HTTP {}", config.http_addr))?;
        Ok(Self {
            http,
            hep_udp,
            hep_tcp,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The bound HEP address (UDP, else TCP).
    pub fn hep_addr(&self) -> Option<SocketAddr> {
        match (&self.hep_udp, &self.hep_tcp) {
            (Some(udp), _) => udp.local_addr().ok(),
            (None, Some(tcp)) => tcp.local_addr().ok(),
            (None, None) => None,
        }
    }
}

/// Runs Fiche on bound `listeners` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listeners: Listeners,
    store: Store,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with(config, listeners, store, shutdown, None).await
}

/// [`run`], with `fiche demo`'s simulated phone system when given: it runs
/// on the server's tasks and `POST /api/demo/calls` asks it for calls.
pub async fn run_with(
    config: Config,
    listeners: Listeners,
    store: Store,
    shutdown: CancellationToken,
    demo: Option<crate::demo::phone::PhoneSystem>,
) -> anyhow::Result<()> {
    // Read before the index and the name cache are, so that the customer sync
    // re-reads every change made while they load.
    let sync_clock = store
        .customer_changes_clock()
        .await
        .context("reading the database clock")?;
    let index = load_index(&store).await?;
    crate::auth::ensure_first_admin(&store, std::env::var("FICHE_ADMIN_PASSWORD").ok()).await?;
    let agents =
        ExtensionPatterns::new(&config.calls.agent_extensions).context("calls.agent_extensions")?;
    let tasks = TaskTracker::new();
    // Several nodes on one database: join before anything runs, so that a
    // second node under a live node's name stops here.
    let cluster = match &config.cluster {
        Some(c) => {
            let http = listeners
                .http_addr()
                .map_or_else(|_| config.http_addr.to_string(), |a| a.to_string());
            let cluster = Cluster::join(&c.node, store.clone(), http).await?;
            tasks.spawn(cluster.clone().run_heartbeat(shutdown.clone()));
            Some(cluster)
        }
        None => None,
    };
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE_CAPACITY);
    let (acknowledged_tx, acknowledged_rx) = mpsc::channel(ACKNOWLEDGED_QUEUE_CAPACITY);
    let (fanout, _) = broadcast::channel(FANOUT_CAPACITY);
    // What /metrics reads, kept where it happens (see `metrics`).
    let hep_stats = Arc::new(hep_driver::HepStats::default());
    let call_stats = Arc::new(crate::metrics::CallStats::default());
    let writer_stats = Arc::new(crate::metrics::WriterStats::default());
    let webhook_stats: crate::metrics::WebhookStats = config
        .webhooks
        .iter()
        .map(|hook| Arc::new(crate::metrics::TargetStats::new(hook.target_name())))
        .collect();
    let mut ami_statuses = Vec::new();

    // Phone-system sources.
    let filter = Arc::new(HepFilter {
        allow: config.hep.allow.clone(),
        auth_key: config.hep.auth_key.clone().map(Bytes::from),
        stats: hep_stats.clone(),
    });
    let (captures_tx, captures_rx) = mpsc::channel(SIP_QUEUE_CAPACITY);
    // The tracker's task reads the UDP socket itself: no hop between them.
    let udp = listeners.hep_udp.map(|socket| {
        info!(addr = ?socket.local_addr().ok(), "HEP UDP listening");
        hep_driver::UdpReceiver::new(socket, filter.clone())
    });
    if let Some(listener) = listeners.hep_tcp {
        info!(addr = ?listener.local_addr().ok(), "HEP TCP listening");
        tasks.spawn(hep_driver::run_tcp(
            listener,
            filter,
            config.hep.tcp_limits(),
            captures_tx.clone(),
            shutdown.clone(),
        ));
    }
    drop(captures_tx);
    let tracker_config = SipTrackerConfig {
        agents: agents.clone(),
        silence_timeout: Duration::from_secs(config.calls.silence_timeout_secs),
        ringing_timeout: Duration::from_secs(config.calls.ringing_timeout_secs),
        ..SipTrackerConfig::default()
    };
    tasks.spawn(hep_driver::run_tracker(
        tracker_config,
        udp,
        captures_rx,
        events_tx.clone(),
        shutdown.clone(),
    ));
    let mut ami_commands = Vec::new();
    for source in &config.ami {
        let ami_config = ami_source_config(source, &agents)?;
        ami_statuses.push((source.name.clone(), ami_config.status.clone()));
        let (commands_tx, commands_rx) = mpsc::channel(AMI_COMMAND_CAPACITY);
        info!(name = %source.name, addr = %source.addr, "AMI source");
        match &cluster {
            // One node at a time holds the connection.
            Some(cluster) => tasks.spawn(crate::cluster::ami::run(
                cluster.clone(),
                ami_config,
                events_tx.clone(),
                commands_rx,
                shutdown.clone(),
            )),
            None => tasks.spawn(ami_driver::run(
                ami_config,
                events_tx.clone(),
                commands_rx,
                shutdown.clone(),
            )),
        };
        ami_commands.push(commands_tx);
    }

    let hub = Hub::new(HubConfig {
        ping_every: config.websocket.ping_every(),
        max_calls: config.calls.live_max,
        ..HubConfig::default()
    });
    // One heartbeat for every hub socket, rather than a timer in each.
    let heartbeat = hub.clone();
    let heartbeat_stop = shutdown.clone();
    tasks.spawn(async move {
        tokio::select! {
            () = heartbeat.run_heartbeat() => {}
            () = heartbeat_stop.cancelled() => {}
        }
    });
    // Tickets: the pop card from memory, a writer sink, the board's figures.
    let policy = Arc::new(config.numbers.policy());
    // The numbering-plan data loads lazily: without this the first pop waits for it.
    fiche_matcher::warm::warm_up(&policy);
    let names = crate::tickets::CustomerCache::default();
    names
        .load(&store)
        .await
        .context("reading customers' names")?;
    let customers = crate::customer_memory::CustomerMemory::new(index, names);
    // Customers changed by `fiche import` or by another node reach the index.
    if let Some(interval) = config.customers.sync_interval() {
        let sync =
            crate::customers_sync::CustomersSync::new(store.clone(), customers.clone(), sync_clock);
        tasks.spawn(sync.run(interval, shutdown.clone()));
    }
    // Odoo (only with an [odoo] table): partners polled into the customer file,
    // which the customer sync above brings into the index. Its first attempt
    // runs at once, so a refused key is in the log at start, without delaying it.
    if let Some(odoo) = config.odoo.as_ref().filter(|o| o.poll_interval().is_some()) {
        let (odoo, store, policy) = (odoo.clone(), store.clone(), config.numbers.policy());
        tasks.spawn(claimed(
            cluster.clone(),
            "odoo-poll".into(),
            shutdown.clone(),
            move |token| {
                crate::odoo::run_poller(odoo.clone(), store.clone(), policy.clone(), token)
            },
        ));
    }
    let cards = crate::tickets::cards::CardMaker {
        customers: customers.clone(),
        policy: policy.clone(),
        store: store.clone(),
        odoo_url: config
            .odoo
            .as_ref()
            .map(|odoo| Arc::from(odoo.browser_url())),
    };
    let (tickets_tx, tickets_rx) = mpsc::channel(crate::tickets::writer::WRITER_QUEUE_CAPACITY);
    let tickets_changed = Arc::new(tokio::sync::Notify::new());
    // Ticket changes reach the webhook outbox only when a target is configured,
    // and Odoo's outbox only with an [odoo] table.
    // In a cluster the log hears them too, for the other nodes' pages.
    let (tickets_feed, mut feed_rxs) = crate::tickets::TicketFeed::channels(
        usize::from(!config.webhooks.is_empty())
            + usize::from(config.odoo.is_some())
            + usize::from(cluster.is_some()),
    );
    let cluster_feed_rx = cluster.as_ref().and_then(|_| feed_rxs.pop());
    let odoo_feed_rx = config.odoo.as_ref().and_then(|_| feed_rxs.pop());
    let tickets_feed_rx = feed_rxs.pop();
    if let (Some(odoo), Some(rx)) = (&config.odoo, odoo_feed_rx) {
        let waker = Arc::new(tokio::sync::Notify::new());
        tasks.spawn(crate::odoo::delivery::write(
            store.clone(),
            rx,
            waker.clone(),
        ));
        let (odoo, store) = (odoo.clone(), store.clone());
        tasks.spawn(claimed(
            cluster.clone(),
            "odoo-delivery".into(),
            shutdown.clone(),
            move |token| {
                crate::odoo::delivery::deliver(odoo.clone(), store.clone(), waker.clone(), token)
            },
        ));
    }
    let mut writer = crate::tickets::writer::TicketWriter::new(
        store.clone(),
        hub.clone(),
        cards.clone(),
        config.tickets.clone(),
        tickets_changed.clone(),
        tickets_feed.clone(),
    );
    writer.stats = writer_stats.clone();
    let writer_queue = tickets_tx.downgrade();
    tasks.spawn(writer.run(tickets_rx));
    tasks.spawn(crate::tickets::figures::run(
        store.clone(),
        hub.clone(),
        tickets_changed.clone(),
        shutdown.clone(),
    ));
    let completion = cards.start_completion(hub.clone(), &tasks, shutdown.clone());
    // `fiche demo`: the simulated phone system, fed the hub to see who is online.
    let demo = demo.map(|phone| {
        let handle = phone.handle();
        tasks.spawn(phone.run(hub.clone(), shutdown.clone()));
        handle
    });
    let mut outputs = Outputs {
        fanout: fanout.clone(),
        hub: hub.clone(),
        sinks: Vec::new(),
        cards: Some(cards),
        completion: Some(completion),
        calls: call_stats.clone(),
        seen: None,
    };
    // Outbound webhooks: an outbox writer fed like any sink, delivery tasks per target.
    let webhooks_sink = crate::webhooks::start(
        &config.webhooks,
        &webhook_stats,
        store.clone(),
        tickets_feed_rx,
        &tasks,
        cluster.clone(),
        shutdown.clone(),
    )?;
    let remote_rx = match &cluster {
        None => {
            outputs.sinks.push(tickets_tx);
            outputs.sinks.extend(webhooks_sink);
            None
        }
        Some(cluster) => {
            // The sources' events go to the log; the writers read the log on
            // the one node holding `writer`, and every node follows it.
            outputs
                .sinks
                .push(bus::publisher(cluster.clone(), cluster_feed_rx, &tasks));
            outputs.seen = Some(bus::Seen::default());
            let mut writers = vec![(
                vec![crate::tickets::writer::LOG_CURSOR.to_owned()],
                tickets_tx,
            )];
            if let Some(sink) = webhooks_sink {
                writers.push((crate::webhooks::cursor_names(&config.webhooks), sink));
            }
            let feeder_store = store.clone();
            tasks.spawn(cluster.clone().exclusive(
                "writer".into(),
                shutdown.clone(),
                move |tenure| bus::feed_writers(feeder_store.clone(), writers.clone(), tenure),
            ));
            let prune_store = store.clone();
            tasks.spawn(cluster.clone().exclusive(
                "prune".into(),
                shutdown.clone(),
                move |tenure| bus::prune(prune_store.clone(), tenure),
            ));
            let (remote_tx, remote_rx) = mpsc::channel(EVENT_QUEUE_CAPACITY);
            let targets = bus::FollowTargets {
                remote: remote_tx,
                hub: hub.clone(),
                tickets_changed: tickets_changed.clone(),
                live_max: config.calls.live_max,
            };
            tasks.spawn(bus::follow(cluster.clone(), targets, shutdown.clone()));
            Some(remote_rx)
        }
    };
    tasks.spawn(pipeline::run(
        events_rx,
        acknowledged_rx,
        remote_rx,
        outputs,
        config.calls.ended_linger(),
        shutdown.clone(),
    ));

    let cti = crate::cti::CtiContext::new(
        store.clone(),
        acknowledged_tx,
        crate::cti::translator_config(&config, &agents),
        crate::cti::providers::settings(&config),
    );
    tasks.spawn(cti.clone().run_expiry(shutdown.clone()));
    info!(addr = ?listeners.http.local_addr().ok(), "HTTP listening");
    let sockets = TaskTracker::new();
    let hub_for_shutdown = hub.clone();
    let metrics = crate::metrics::Metrics::new(crate::metrics::Sources {
        calls: call_stats,
        hep: hep_stats,
        ami: ami_statuses,
        hub: hub.clone(),
        writer: writer_stats,
        writer_queue,
        webhooks: webhook_stats,
        store: store.clone(),
        token: config.metrics.token.clone(),
    });
    let state = AppState {
        fanout,
        store: store.clone(),
        policy,
        customers,
        hub,
        events: events_tx,
        ami: Arc::new(ami_commands),
        auth: Arc::new(
            crate::auth::Auth::new(config.auth.session_ttl())
                .trusting(config.auth.trusted_proxies.clone()),
        ),
        tickets_feed,
        allowed_origins: Arc::new(config.websocket.allowed_origins.clone()),
        sockets: sockets.clone(),
        demo,
        cluster,
    };
    // Read before the users, so that the watcher starts from what is loaded.
    let users_stamp = state.store.users_stamp().await.ok();
    http::users::push_agents(&state.store, &state.hub)
        .await
        .context("loading the agents")?;
    tasks.spawn(http::users::watch_directory(
        state.store.clone(),
        state.hub.clone(),
        users_stamp,
        shutdown.clone(),
    ));
    tasks.spawn(crate::auth::watch_socket_sessions(
        state.auth.clone(),
        state.store.clone(),
        state.hub.clone(),
        shutdown.clone(),
    ));
    // Merged after the session layer: the CTI route has its own token. The
    // access log, outermost, replaces that token in the path it writes.
    let app = http::router(state, config.web_root.clone())
        .merge(crate::cti::router(cti))
        // /metrics has its own rule (loopback, or the metrics token).
        .merge(metrics.router())
        // Outermost, so that every request, the CTI webhook's too, is logged
        // once (with its token replaced).
        .layer(axum::middleware::from_fn(http::access_log::log_request));
    // Pops are small frames: Nagle's algorithm would hold one back until the
    // browser acknowledges the previous frame (up to its delayed-ACK time).
    let http_listener = listeners.http.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            debug!(%error, "could not set TCP_NODELAY on an HTTP connection");
        }
    });
    axum::serve(
        http_listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .await
    .context("HTTP server")?;

    shutdown.cancel();
    // Every hub socket is told "going away" (1001) before the process ends,
    // so the pages reconnect at once rather than after a timeout.
    hub_for_shutdown.shut_down();
    sockets.close();
    if tokio::time::timeout(SOCKETS_CLOSE_TIMEOUT, sockets.wait())
        .await
        .is_err()
    {
        debug!("some hub sockets did not close within {SOCKETS_CLOSE_TIMEOUT:?}");
    }
    tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not stop within {DRAIN_TIMEOUT:?}");
    }
    store.close().await;
    info!("stopped");
    Ok(())
}

/// Builds the number → customer index from the database.
async fn load_index(store: &Store) -> anyhow::Result<Index> {
    let started = std::time::Instant::now();
    let numbers = store
        .all_phone_numbers()
        .await
        .context("reading customers' numbers")?;
    let count = numbers.len();
    let rows = numbers.into_iter().map(|entry| {
        let number = entry.e164.unwrap_or(entry.raw);
        (
            fiche_matcher::CustomerId(entry.customer_id.0),
            number,
            entry.last_contact_at,
        )
    });
    let index = Index::build(rows, count);
    info!(numbers = count, elapsed = ?started.elapsed(), "customer index built");
    Ok(index)
}

/// How many random ports to try when HEP asks for port 0 on both UDP and TCP.
const HEP_PORT_ATTEMPTS: usize = 16;

/// Binds the HEP sockets. With port 0 both transports share one number: UDP
/// picks it, and TCP takes the same one; when that TCP port is already used,
/// another UDP port is drawn.
async fn bind_hep(config: &Config) -> anyhow::Result<(Option<UdpSocket>, Option<TcpListener>)> {
    let addr = config.hep.addr;
    let bind_tcp = |at: SocketAddr| async move {
        TcpListener::bind(at)
            .await
            .with_context(|| format!("binding HEP TCP {at}"))
    };
    match (config.hep.udp, config.hep.tcp) {
        (false, false) => Ok((None, None)),
        (false, true) => Ok((None, Some(bind_tcp(addr).await?))),
        (true, tcp) => {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let udp = bind_udp(addr).with_context(|| format!("binding HEP UDP {addr}"))?;
                if !tcp {
                    return Ok((Some(udp), None));
                }
                let at = if addr.port() == 0 {
                    udp.local_addr()?
                } else {
                    addr
                };
                match bind_tcp(at).await {
                    Ok(listener) => return Ok((Some(udp), Some(listener))),
                    Err(_) if addr.port() == 0 && attempt < HEP_PORT_ATTEMPTS => continue,
                    Err(error) => return Err(error),
                }
            }
        }
    }
}

/// Capacity of each AMI source's command queue (click-to-call requests); a full
/// queue answers the caller "busy" rather than waiting.
const AMI_COMMAND_CAPACITY: usize = 64;

fn ami_source_config(
    source: &AmiConfig,
    agents: &ExtensionPatterns,
) -> anyhow::Result<AmiSourceConfig> {
    let mut config = AmiSourceConfig::new(
        source.name.clone(),
        source.addr.clone(),
        source.username.clone(),
        source.secret.clone(),
    );
    config.use_md5 = source.md5;
    config.ping_interval = Duration::from_secs(source.ping_interval_secs);
    config.ping_timeout = Duration::from_secs(source.ping_timeout_secs);
    config.agents = agents.clone();
    if !source.channel_patterns.is_empty() {
        config.channel_patterns = ChannelPatterns::new(&source.channel_patterns)
            .with_context(|| format!("ami {}: channel_patterns", source.name))?;
    }
    config.aliases = source
        .aliases
        .iter()
        .map(|(account, extension)| (account.clone(), extension.clone()))
        .collect();
    config.originate_technology = source.originate_technology.clone();
    config.originate_context = source.originate_context.clone();
    Ok(config)
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(error) = socket.set_recv_buffer_size(HEP_UDP_RECV_BUFFER) {
        warn!(%error, "could not enlarge the HEP UDP receive buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}
