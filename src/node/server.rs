//! One focal point's node: the exchange log, both listeners and delivery to each peer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::crypto::receipt::{ReceiptError, ReceiptSigner};
use crate::crypto::x509;
use crate::crypto::x509::TlsError;
use crate::domain::model::{CountryCode, Role};
use crate::exchange::core::{Exchange, PeerTrust};
use crate::log::{ExchangeLog, LogError};
use crate::node::config::NodeConfig;
use crate::node::service::{OperatorApi, PeerApi};
use crate::node::tls::{self, Admission};
use crate::pb::operator_service_server::OperatorServiceServer;
use crate::pb::peer_service_server::PeerServiceServer;

/// Why a node cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("node key: {0}")]
    Signer(#[from] ReceiptError),
    #[error("log key: {0}")]
    LogKey(#[from] crate::crypto::seal::SealError),
    #[error("cannot listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("node certificate names {found}, but the configuration is for the node of {expected}")]
    WrongIdentity { found: String, expected: String },
    #[error("no data directory: set data_dir in the configuration or pass --data-dir")]
    NoDataDir,
    #[error("reflection: {0}")]
    Reflection(String),
    #[error("{plane} listener failed")]
    Serve {
        plane: &'static str,
        #[source]
        source: tonic::transport::Error,
    },
}

/// The values metrics read from the log at scrape time.
fn gauges(exchange: &Exchange, peers: &[CountryCode]) -> crate::exchange::metrics::Gauges {
    let log = exchange.log();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut g = crate::exchange::metrics::Gauges {
        log_entries: log.head().map(|(n, _)| n).unwrap_or(0),
        ..Default::default()
    };
    for peer in peers {
        let depth = log.pending(*peer).map(|p| p.len() as u64).unwrap_or(0);
        g.outbox_depth.push((peer.to_string(), depth));
        let created = log
            .last_cosigned(*peer)
            .ok()
            .flatten()
            .and_then(|seq| log.content(seq).ok().flatten())
            .and_then(|c| crate::exchange::checkpoint::open(&c).ok())
            .and_then(|(checkpoint, _, _)| {
                crate::domain::model::parse_instant(&checkpoint.created_at).ok()
            });
        if let Some(t) = created {
            g.checkpoint_age_seconds
                .push((peer.to_string(), (now - t.unix_timestamp()) as f64));
        }
    }
    g
}

/// Raises the soft limit on open file descriptors to the hard limit, and says what the node
/// has: every connection costs one, and a node short of them cannot accept its operators.
fn raise_descriptor_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(soft), hard) = (limit.current, limit.maximum) else {
        tracing::info!("open file descriptors: no limit");
        return;
    };
    // No hard limit: a generous soft one, well within what the kernel allows a process.
    let target = hard.unwrap_or(1 << 20);
    if soft < target {
        let raised = rustix::process::Rlimit {
            current: Some(target),
            maximum: hard,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::info!(
                    from = soft,
                    to = target,
                    "open file descriptors: soft limit raised"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(limit = soft, error = %e, "open file descriptors: soft limit not raised");
                return;
            }
        }
    }
    tracing::info!(limit = soft, "open file descriptors");
}

/// How long a stopping node waits for in-flight calls and open connections.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Everything read from certificate and key files: what a reload replaces.
struct Material {
    peer_tls: Arc<rustls::ServerConfig>,
    operator_tls: Arc<rustls::ServerConfig>,
    signer: ReceiptSigner,
    peer_trust: BTreeMap<CountryCode, PeerTrust>,
    audit: crate::exchange::audit::AuditTrust,
}

impl Material {
    /// Reads and checks the node's certificate, key and trust anchors. The node certificate
    /// must name this country's node and be valid now.
    fn load(config: &NodeConfig) -> Result<Self, NodeError> {
        let chain = x509::load_certs(&config.node.certificate)?;
        let key = x509::load_key(&config.node.key)?;
        let identity = x509::identity_of(&chain[0])?;
        if identity.country != config.country || identity.role != Role::Node {
            return Err(NodeError::WrongIdentity {
                found: identity.to_string(),
                expected: config.country.to_string(),
            });
        }
        let (not_before, not_after) = x509::validity_of(&chain[0])?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if now < not_before || now > not_after {
            return Err(NodeError::Tls(TlsError::Invalid {
                path: config.node.certificate.clone(),
                reason: "the node certificate is expired or not yet valid".into(),
            }));
        }
        let mut peers = BTreeMap::new();
        let mut peer_trust = BTreeMap::new();
        for peer in config.active_peers() {
            let anchors = x509::load_certs(&peer.ca)?;
            let revoked = crate::crypto::revocation::load_optional(peer.crl.as_deref(), &anchors)
                .map_err(TlsError::from)?;
            peers.insert(
                peer.country,
                tls::Anchor {
                    path: peer.ca.clone(),
                    certs: anchors.clone(),
                    revoked: revoked.clone(),
                },
            );
            peer_trust.insert(
                peer.country,
                PeerTrust {
                    anchors,
                    revoked,
                    response_times: peer.response_hours.times(),
                    agreement: peer.agreement.agreement(),
                },
            );
        }
        let local_ca = x509::load_certs(&config.operator_listener.ca)?;
        let local_revoked = crate::crypto::revocation::load_optional(
            config.operator_listener.crl.as_deref(),
            &local_ca,
        )
        .map_err(TlsError::from)?;
        let peer_tls =
            tls::server_config(&Admission::Peers(peers), chain.clone(), key.clone_key())?;
        let operator_tls = tls::server_config(
            &Admission::Users {
                country: config.country,
                ca: tls::Anchor {
                    path: config.operator_listener.ca.clone(),
                    certs: local_ca,
                    revoked: local_revoked,
                },
            },
            chain.clone(),
            key.clone_key(),
        )?;
        Ok(Self {
            peer_tls,
            operator_tls,
            signer: ReceiptSigner::new(&chain[0], &key)?,
            peer_trust,
            audit: config.audit_trust()?,
        })
    }
}

/// A channel to each peer, presenting the node certificate as configured now.
fn peer_channels(
    config: &NodeConfig,
) -> Result<BTreeMap<CountryCode, tonic::transport::Channel>, NodeError> {
    let mut channels = BTreeMap::new();
    let chain = x509::load_certs(&config.node.certificate)?;
    let key = x509::load_key(&config.node.key)?;
    for peer in config.active_peers() {
        let certs = x509::load_certs(&peer.ca)?;
        let revoked = crate::crypto::revocation::load_optional(peer.crl.as_deref(), &certs)
            .map_err(TlsError::from)?;
        let anchor = tls::Anchor {
            path: peer.ca.clone(),
            certs,
            revoked,
        };
        let channel = tls::peer_channel(
            peer.country,
            &anchor,
            chain.clone(),
            key.clone_key(),
            &peer.server_name,
            &peer.address,
        )?;
        channels.insert(peer.country, channel);
    }
    Ok(channels)
}

/// What a running node swaps when its certificates or peers are reloaded.
#[derive(Debug)]
struct Live {
    config: std::sync::Mutex<NodeConfig>,
    peer_tls: watch::Sender<Arc<rustls::ServerConfig>>,
    operator_tls: watch::Sender<Arc<rustls::ServerConfig>>,
    /// Each peer's channel and the stop of its delivery and checkpoint tasks.
    links: std::sync::Mutex<BTreeMap<CountryCode, PeerLink>>,
    /// The channels the operator plane replays and checkpoints over.
    channels: crate::node::service::PeerChannels,
    audit: watch::Sender<crate::exchange::audit::AuditTrust>,
    /// The node's stop, which every peer's tasks also follow.
    shutdown: watch::Receiver<bool>,
    /// The tasks of peers added by a reload.
    added_tasks: std::sync::Mutex<Vec<JoinHandle<Result<(), NodeError>>>>,
}

/// One peer's channel, and the stop of its tasks.
#[derive(Debug)]
struct PeerLink {
    channel: watch::Sender<tonic::transport::Channel>,
    stop: Arc<watch::Sender<bool>>,
    /// Its delivery and checkpoint tasks, ended at once when the peer is removed: a send in
    /// flight is dropped, its message stays queued, and a resend is answered with the first
    /// receipt, so that a peer removed and added again never has two senders.
    tasks: Vec<tokio::task::AbortHandle>,
}

/// What a reload changed among the peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeersReloaded {
    /// Peers configured now that were not before.
    pub added: Vec<CountryCode>,
    /// Peers no longer configured, each with the messages to it that stay queued.
    pub removed: Vec<(CountryCode, usize)>,
}

/// A node with its listeners bound, not yet serving.
#[derive(Debug)]
pub struct BoundNode {
    config: NodeConfig,
    exchange: Exchange,
    peer_listener: TcpListener,
    operator_listener: TcpListener,
    peer_tls: Arc<rustls::ServerConfig>,
    operator_tls: Arc<rustls::ServerConfig>,
    trust: crate::exchange::audit::AuditTrust,
    metrics_listener: Option<TcpListener>,
}

/// A serving node.
#[derive(Debug)]
pub struct RunningNode {
    /// The peer listener's address.
    pub peer_address: SocketAddr,
    /// The operator listener's address.
    pub operator_address: SocketAddr,
    /// The metrics listener's address, if metrics are served.
    pub metrics_address: Option<SocketAddr>,
    exchange: Exchange,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), NodeError>>>,
    live: Live,
}

impl BoundNode {
    /// Loads certificates, opens the log and binds both listeners.
    pub async fn bind(config: NodeConfig, data_dir: Option<PathBuf>) -> Result<Self, NodeError> {
        Self::bind_ahead(config, data_dir, 0).await
    }

    /// [`Self::bind`], with the log's clock `micros` ahead of the system's: for drills and
    /// tests of deadlines and retention, which need the node as it will be days from now. A
    /// service never starts a node this way.
    pub async fn bind_ahead(
        config: NodeConfig,
        data_dir: Option<PathBuf>,
        micros: i64,
    ) -> Result<Self, NodeError> {
        tls::install_crypto_provider();
        raise_descriptor_limit();
        let data_dir = data_dir
            .or_else(|| config.data_dir.clone())
            .ok_or(NodeError::NoDataDir)?;
        let material = Material::load(&config)?;
        let key = match &config.encryption {
            Some(encryption) => Some(Arc::new(encryption.load_key()?)),
            None => None,
        };
        if let Some(key) = &key {
            tracing::info!(key = %key.id(), "message content is encrypted at rest");
        }
        let signer = Arc::new(material.signer);
        let log = ExchangeLog::open(
            &data_dir,
            crate::log::LogOptions {
                durability: config.durability,
                key,
                compression: config.compression,
                cache_mib: config.cache_mib,
                signer: Some(signer.clone()),
                clock_offset_micros: micros,
            },
        )?;
        if log.compression() != config.compression {
            tracing::warn!(
                configured = ?config.compression,
                kept = ?log.compression(),
                "the exchange log keeps the compression it was created with"
            );
        }
        let exchange = Exchange::new(config.country, log, signer, material.peer_trust);
        let bind = |address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| NodeError::Listen { address, source })
        };
        let peer_listener = bind(config.peer_listener.address).await?;
        let operator_listener = bind(config.operator_listener.address).await?;
        let metrics_listener = if config.metrics.enabled {
            Some(bind(config.metrics.address).await?)
        } else {
            None
        };
        Ok(Self {
            config,
            exchange,
            peer_listener,
            operator_listener,
            peer_tls: material.peer_tls,
            operator_tls: material.operator_tls,
            trust: material.audit,
            metrics_listener,
        })
    }

    /// The bound peer listener's address.
    pub fn peer_address(&self) -> SocketAddr {
        self.peer_listener
            .local_addr()
            .unwrap_or(self.config.peer_listener.address)
    }

    /// The bound operator listener's address.
    pub fn operator_address(&self) -> SocketAddr {
        self.operator_listener
            .local_addr()
            .unwrap_or(self.config.operator_listener.address)
    }

    /// This node's country.
    pub fn country(&self) -> CountryCode {
        self.config.country
    }

    /// Points delivery for `country` at another address (for nodes on ephemeral ports).
    pub fn set_peer_address(&mut self, country: CountryCode, address: &str) {
        for peer in &mut self.config.peers {
            if peer.country == country {
                peer.address = address.to_owned();
            }
        }
    }

    /// Starts serving both planes and delivering to every peer.
    pub async fn start(self) -> Result<RunningNode, NodeError> {
        let peer_address = self.peer_address();
        let operator_address = self.operator_address();
        let (shutdown, watcher) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut links = BTreeMap::new();
        let mut receivers = BTreeMap::new();
        for (country, channel) in peer_channels(&self.config)? {
            let started = spawn_peer(
                self.config.checkpoint_interval_secs,
                &self.exchange,
                country,
                channel,
                &watcher,
            );
            links.insert(country, started.link);
            receivers.insert(country, started.channel);
            tasks.extend(started.tasks);
        }
        let channels: crate::node::service::PeerChannels =
            Arc::new(std::sync::RwLock::new(receivers));
        {
            let (exchange, watcher, cases) =
                (self.exchange.clone(), watcher.clone(), self.config.cases);
            tasks.push(tokio::spawn(async move {
                deadline_checks(exchange, cases, watcher).await;
                Ok(())
            }));
        }
        if let Some(policy) = self.config.retention.clone() {
            let (log, watcher) = (self.exchange.log().clone(), watcher.clone());
            tasks.push(tokio::spawn(async move {
                retention_sweeps(log, policy, watcher).await;
                Ok(())
            }));
        }
        let (peer_tls, peer_tls_rx) = watch::channel(self.peer_tls);
        let (operator_tls, operator_tls_rx) = watch::channel(self.operator_tls);
        let (audit, audit_rx) = watch::channel(self.trust);
        let metrics = self.exchange.metrics().clone();
        let limits = self.config.limits.clone();
        let limiter = crate::node::limits::Limiter::new(limits.clone(), metrics.clone());
        self.exchange
            .set_max_envelope_bytes(limits.max_envelope_bytes);
        self.exchange.set_max_clock_skew(limits.max_clock_skew_secs);
        let peer_incoming = tls::incoming(
            self.peer_listener,
            peer_tls_rx,
            tls::ListenerOptions::new("peer", &limits),
            metrics.clone(),
            Some(limiter.clone()),
        );
        let operator_incoming = tls::incoming(
            self.operator_listener,
            operator_tls_rx,
            tls::ListenerOptions::new("operator", &limits),
            metrics.clone(),
            None,
        );
        let peer_api = PeerServiceServer::new(PeerApi::new(self.exchange.clone(), limiter));
        let (peer_health, peer_v1, peer_v1alpha) =
            introspection::<PeerServiceServer<PeerApi>>().await?;
        // Pings find a peer that vanished without closing its connection, so that its
        // connection slot is given back.
        let peer_plane = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
            .add_service(peer_health)
            .add_service(peer_v1)
            .add_service(peer_v1alpha)
            .add_service(peer_api)
            .serve_with_incoming_shutdown(peer_incoming, stopped(watcher.clone()));
        tasks.push(tokio::spawn(async move {
            peer_plane.await.map_err(|source| NodeError::Serve {
                plane: "peer",
                source,
            })
        }));
        let operator_api = OperatorServiceServer::new(OperatorApi::new(
            self.exchange.clone(),
            channels.clone(),
            audit_rx,
            watcher.clone(),
        ));
        let (operator_health, operator_v1, operator_v1alpha) =
            introspection::<OperatorServiceServer<OperatorApi>>().await?;
        let operator_plane = tonic::transport::Server::builder()
            .add_service(operator_health)
            .add_service(operator_v1)
            .add_service(operator_v1alpha)
            .add_service(operator_api)
            .serve_with_incoming_shutdown(operator_incoming, stopped(watcher.clone()));
        tasks.push(tokio::spawn(async move {
            operator_plane.await.map_err(|source| NodeError::Serve {
                plane: "operator",
                source,
            })
        }));
        let metrics_address = self
            .metrics_listener
            .and_then(|listener| spawn_metrics(listener, &self.exchange, &watcher, &mut tasks));
        tracing::info!(
            country = %self.config.country,
            peer = %peer_address,
            operator = %operator_address,
            "node serving"
        );
        Ok(RunningNode {
            peer_address,
            operator_address,
            metrics_address,
            exchange: self.exchange,
            shutdown,
            tasks,
            live: Live {
                config: std::sync::Mutex::new(self.config),
                peer_tls,
                operator_tls,
                links: std::sync::Mutex::new(links),
                channels,
                audit,
                shutdown: watcher,
                added_tasks: std::sync::Mutex::default(),
            },
        })
    }
}

/// Starts delivering to `country` over `channel`, and asking it to cosign checkpoints every
/// `checkpoint_interval_secs` (none when 0), until the node stops or the peer is removed.
fn spawn_peer(
    checkpoint_interval_secs: u64,
    exchange: &Exchange,
    country: CountryCode,
    channel: tonic::transport::Channel,
    node_shutdown: &watch::Receiver<bool>,
) -> StartedPeer {
    let (tx, rx) = watch::channel(channel);
    let (stop, stopped_rx) = watch::channel(false);
    let stop = Arc::new(stop);
    {
        // The node's stop stops this peer's tasks too.
        let (stop, mut node) = (stop.clone(), node_shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = node.wait_for(|stopped| *stopped) => {
                    let _ = stop.send(true);
                }
                () = stop.closed() => {}
            }
        });
    }
    let mut tasks = Vec::new();
    if checkpoint_interval_secs > 0 {
        let every = std::time::Duration::from_secs(checkpoint_interval_secs);
        let (exchange, rx, stopped) = (exchange.clone(), rx.clone(), stopped_rx.clone());
        tasks.push(tokio::spawn(async move {
            crate::node::delivery::checkpoints(exchange, country, rx, every, stopped).await;
            Ok(())
        }));
    }
    let (exchange, delivery_rx) = (exchange.clone(), rx.clone());
    tasks.push(tokio::spawn(async move {
        crate::node::delivery::run(exchange, country, delivery_rx, stopped_rx).await;
        Ok(())
    }));
    StartedPeer {
        link: PeerLink {
            channel: tx,
            stop,
            tasks: tasks.iter().map(JoinHandle::abort_handle).collect(),
        },
        channel: rx,
        tasks,
    }
}

/// A peer's delivery and checkpoint tasks, started.
struct StartedPeer {
    link: PeerLink,
    /// The channel, for the operator plane.
    channel: watch::Receiver<tonic::transport::Channel>,
    tasks: Vec<JoinHandle<Result<(), NodeError>>>,
}

/// Serves the metrics on `listener`; its address.
fn spawn_metrics(
    listener: TcpListener,
    exchange: &Exchange,
    watcher: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<Result<(), NodeError>>>,
) -> Option<SocketAddr> {
    let address = listener.local_addr().ok();
    let exchange = exchange.clone();
    let stop = stopped(watcher.clone());
    tasks.push(tokio::spawn(async move {
        crate::node::metrics::serve(
            listener,
            exchange.metrics().clone(),
            move || gauges(&exchange, &exchange.peers()),
            stop,
        )
        .await;
        Ok(())
    }));
    address
}

/// Completes when the node is told to stop.
async fn stopped(mut watcher: watch::Receiver<bool>) {
    let _ = watcher.wait_for(|stopped| *stopped).await;
}

/// Notes the case deadlines that came, at start and then every `deadline_check_secs`, and
/// counts the overdue cases for the metrics, until shutdown.
async fn deadline_checks(
    exchange: Exchange,
    cases: crate::node::config::CasesConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = std::time::Duration::from_secs(cases.deadline_check_secs);
    loop {
        match exchange.note_deadlines(cases.expiry_reminder_days).await {
            Ok(counts) => exchange.metrics().overdue(&counts),
            Err(e) => tracing::error!(error = %e, "deadline check failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// Sweeps the log at start and then every `sweep_interval_secs` until shutdown.
async fn retention_sweeps(
    log: ExchangeLog,
    policy: crate::exchange::retention::RetentionPolicy,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = std::time::Duration::from_secs(policy.sweep_interval_secs);
    let policy = Arc::new(policy);
    // Each sweep reads on from where the last one stopped.
    let sweeper = Arc::new(std::sync::Mutex::new(
        crate::exchange::retention::Sweeper::default(),
    ));
    loop {
        let (log, policy, sweeper) = (log.clone(), policy.clone(), sweeper.clone());
        let swept = tokio::task::spawn_blocking(move || {
            sweeper
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .sweep(&log, &policy, crate::domain::model::now_micros())
        })
        .await;
        match swept {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed"),
            Err(e) => tracing::error!(error = %e, "retention sweep stopped"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// gRPC health and reflection (both `v1` and `v1alpha`, which grpcurl 1.8 and Python grpcio
/// speak) for a listener serving `S`, behind the same mutual TLS as the service itself.
#[allow(clippy::type_complexity)]
async fn introspection<S: tonic::server::NamedService>() -> Result<
    (
        tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    NodeError,
> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<S>().await;
    // Each listener lists its own service, health and reflection, and not the other plane's.
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(S::NAME)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
    };
    let v1 = builder()
        .build_v1()
        .map_err(|e| NodeError::Reflection(e.to_string()))?;
    let v1alpha = builder()
        .build_v1alpha()
        .map_err(|e| NodeError::Reflection(e.to_string()))?;
    Ok((health, v1, v1alpha))
}

impl RunningNode {
    /// The configuration the node runs with now, as the last reload left it.
    pub fn config(&self) -> NodeConfig {
        lock(&self.live.config).clone()
    }

    /// The node's exchange, for in-process inspection.
    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// Stops accepting, lets in-flight calls finish (for at most [`SHUTDOWN_GRACE`]; a client
    /// that keeps its connection open does not hold the node up), and flushes the log.
    pub async fn stop(self) -> Result<(), NodeError> {
        let _ = self.shutdown.send(true);
        let mut first_error = None;
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let added = std::mem::take(
            &mut *self
                .live
                .added_tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for mut task in self.tasks.into_iter().chain(added) {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(Err(e))) => {
                    first_error.get_or_insert(e);
                }
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!("shutdown grace period over; closing remaining connections");
                    task.abort();
                }
            }
        }
        self.exchange.log().flush()?;
        first_error.map_or(Ok(()), Err)
    }

    /// Rereads the node's certificate, key and trust anchors (the files the configuration
    /// names) and takes them into use for new connections, receipts and checkpoints.
    /// Established connections and calls carry on. On any error nothing changes.
    pub fn reload(&self) -> Result<PeersReloaded, NodeError> {
        let config = lock(&self.live.config).clone();
        self.reload_config(config)
    }

    /// [`Self::reload`] with the peers of `config` (a node configuration read again, as
    /// SIGHUP does): peers added, changed or removed take effect without a restart. A removed
    /// peer's undelivered messages stay queued in the log, are reported, and are delivered if
    /// it is added again. The rest of `config` takes effect at the next start. A configuration
    /// for another country is refused. On any error nothing changes.
    pub fn reload_config(&self, config: NodeConfig) -> Result<PeersReloaded, NodeError> {
        let mut live_config = lock(&self.live.config).clone();
        if config.country != live_config.country {
            return Err(NodeError::WrongIdentity {
                found: config.country.to_string(),
                expected: live_config.country.to_string(),
            });
        }
        live_config.peers = config.peers;
        live_config.node = config.node;
        live_config.operator_listener.ca = config.operator_listener.ca;
        live_config.operator_listener.crl = config.operator_listener.crl;
        let material = Material::load(&live_config)?;
        let channels = peer_channels(&live_config)?;
        self.live.peer_tls.send_replace(material.peer_tls);
        self.live.operator_tls.send_replace(material.operator_tls);
        self.live.audit.send_replace(material.audit);
        self.exchange.reload(material.signer, material.peer_trust);
        let mut report = PeersReloaded::default();
        let mut links = lock(&self.live.links);
        let mut receivers = self
            .live
            .channels
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (country, channel) in channels {
            if let Some(link) = links.get(&country) {
                link.channel.send_replace(channel);
                continue;
            }
            let started = spawn_peer(
                live_config.checkpoint_interval_secs,
                &self.exchange,
                country,
                channel,
                &self.live.shutdown,
            );
            links.insert(country, started.link);
            receivers.insert(country, started.channel);
            let mut added = lock(&self.live.added_tasks);
            added.retain(|t| !t.is_finished());
            added.extend(started.tasks);
            report.added.push(country);
            tracing::info!(peer = %country, "peer added");
        }
        let gone: Vec<CountryCode> = links
            .keys()
            .copied()
            .filter(|c| live_config.peer(*c).is_none())
            .collect();
        for country in gone {
            if let Some(link) = links.remove(&country) {
                let _ = link.stop.send(true);
                for task in &link.tasks {
                    task.abort();
                }
            }
            receivers.remove(&country);
            let queued = self
                .exchange
                .log()
                .pending(country)
                .map(|p| p.len())
                .unwrap_or(0);
            tracing::warn!(
                peer = %country,
                queued,
                "peer removed: its undelivered messages stay queued, and are delivered if it is added again"
            );
            report.removed.push((country, queued));
        }
        drop(receivers);
        drop(links);
        *lock(&self.live.config) = live_config;
        tracing::info!(country = %self.exchange.country(), "certificates, key, trust anchors and peers reloaded");
        Ok(report)
    }

    /// Serves until `signal` completes, then stops.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), NodeError> {
        signal.await;
        self.stop().await
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
