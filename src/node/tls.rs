//! Mutual TLS for both planes, and the identities certificates carry.
//!
//! Trust model. Every certificate names its holder in one URI subject alternative name,
//! `urn:focalpoint:COUNTRY:ROLE[:NAME]` ([`Identity`]). Each listener terminates TLS itself
//! and refuses a client during the handshake, before any handler runs, unless:
//! - on the peer plane: the certificate chains to the CA configured for the country it names,
//!   and names the role `node` of a configured peer country;
//! - on the operator plane: the certificate chains to the local CA and names a user role
//!   (operator, auditor, sync) of this node's own country.
//!
//! Only leaf certificates issued directly by that CA are accepted: intermediates a client
//! sends are ignored, so a CA's `pathlen:0` holds even though webpki does not check path
//! length constraints.
//!
//! Handlers read the identity again from the verified leaf certificate (once per connection,
//! when its handshake ends: [`Caller`]); nothing is trusted because it came from "some
//! certificate of this CA".

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::DistinguishedName;
use rustls::RootCertStore;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

use crate::crypto::x509::{TlsError, identity_of, load_certs, load_key, read};
use crate::node::limits::{ConnectionSlot, Limiter};
use crate::node::throttle::Throttle;
use tokio_stream::wrappers::ReceiverStream;

use crate::domain::model::{CountryCode, Identity, Role};

/// Installs ring as the process's one rustls crypto provider. Safe to call more than once.
pub fn install_crypto_provider() {
    // An error means a provider is already installed; the tree only has ring, so it is ours.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn roots(path: &Path, certs: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert.clone()).map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(store)
}

/// One CA a listener trusts: where its certificate was read, the certificate, and the
/// certificates it revoked.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// The file the CA certificate was read from, for errors.
    pub path: PathBuf,
    /// The CA certificate(s).
    pub certs: Vec<CertificateDer<'static>>,
    /// Its revocation list; a revoked certificate is refused in the handshake.
    pub revoked: crate::crypto::revocation::Revocations,
}

/// Who may connect to a listener.
#[derive(Debug, Clone)]
pub enum Admission {
    /// The peer plane: nodes of these countries, each checked against its own CA.
    Peers(BTreeMap<CountryCode, Anchor>),
    /// The operator plane: users of this country with these roles, under the local CA.
    Users { country: CountryCode, ca: Anchor },
}

/// Checks the chain with the CA of the country the leaf names, then the role.
#[derive(Debug)]
struct PlaneVerifier {
    by_country: BTreeMap<CountryCode, Arc<dyn ClientCertVerifier>>,
    allowed_roles: &'static [Role],
    hints: Vec<DistinguishedName>,
}

impl PlaneVerifier {
    fn any(&self) -> Result<&Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.by_country
            .values()
            .next()
            .ok_or_else(|| rustls::Error::General("no trust anchors".into()))
    }
}

fn refuse(reason: impl Into<String>) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(IdentityRefused(reason.into())),
    )))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct IdentityRefused(String);

impl ClientCertVerifier for PlaneVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let identity = identity_of(end_entity).map_err(|e| refuse(e.to_string()))?;
        // Refusals are logged by the listener, throttled per reason and address.
        if !self.allowed_roles.contains(&identity.role) {
            return Err(refuse(format!(
                "role {} is not allowed on this listener",
                identity.role
            )));
        }
        let Some(verifier) = self.by_country.get(&identity.country) else {
            return Err(refuse(format!(
                "country {} is not trusted on this listener",
                identity.country
            )));
        };
        // Only leaves issued directly by the CA are accepted: the demo CA, and any CA a
        // country should use here, has `pathlen:0`, which webpki does not enforce. So the
        // intermediates a client sends are never used to build a path.
        let _ = intermediates;
        verifier.verify_client_cert(end_entity, &[], now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.any()
            .map(|v| v.supported_verify_schemes())
            .unwrap_or_default()
    }
}

/// The rustls server configuration of one listener.
pub fn server_config(
    admission: &Admission,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let build = |anchor: &Anchor| {
        let store = Arc::new(roots(&anchor.path, &anchor.certs)?);
        let hints = store.subjects();
        WebPkiClientVerifier::builder(store)
            .with_crls(anchor.revoked.lists().iter().cloned())
            .only_check_end_entity_revocation()
            // A certificate of a CA that no configured list covers (a second CA during a
            // rollover) is judged by its chain alone, not refused.
            .allow_unknown_revocation_status()
            .build()
            .map(|v| (v, hints))
            .map_err(|e| TlsError::Config(e.to_string()))
    };
    let mut by_country = BTreeMap::new();
    let mut hints = Vec::new();
    let allowed_roles: &'static [Role] = match admission {
        Admission::Peers(peers) => {
            for (country, anchor) in peers {
                let (verifier, h) = build(anchor)?;
                hints.extend(h);
                by_country.insert(*country, verifier);
            }
            &[Role::Node]
        }
        Admission::Users { country, ca } => {
            let (verifier, h) = build(ca)?;
            hints.extend(h);
            by_country.insert(*country, verifier);
            &[Role::Operator, Role::Auditor, Role::Sync, Role::Screening]
        }
    };
    let verifier = Arc::new(PlaneVerifier {
        by_country,
        allowed_roles,
        hints,
    });
    let mut config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// An accepted TLS connection; on the peer plane it counts against its peer's connections
/// until it closes.
#[derive(Debug)]
pub struct Accepted {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    caller: Caller,
    _slot: Option<ConnectionSlot>,
}

/// Who is calling on a connection: the identity its verified client certificate names, read
/// once when the handshake ended and handed to each of its calls (as the request's connect
/// info), so that a call does not parse the certificate again.
#[derive(Debug, Clone)]
pub struct Caller(Arc<Option<Result<Identity, String>>>);

impl Caller {
    fn of(stream: &tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        let identity = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|leaf| identity_of(leaf).map_err(|e| e.to_string()));
        Self(Arc::new(identity))
    }

    /// The identity, or why there is none: no client certificate (`None`), or one that names
    /// no identity.
    pub fn identity(&self) -> Option<Result<&Identity, &str>> {
        self.0
            .as_ref()
            .as_ref()
            .map(|r| r.as_ref().map_err(String::as_str))
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for Accepted {
    type ConnectInfo = Caller;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.caller.clone()
    }
}

/// What one listener admits before TLS: how many connections may be in their handshake at
/// once, in all and from one source address. Owned by the listener; counts are given back
/// when a handshake ends, however it ends.
#[derive(Debug)]
struct HandshakeGate {
    max: usize,
    max_per_address: usize,
    pending: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Held while one connection is in its handshake.
#[derive(Debug)]
struct PendingHandshake {
    gate: Arc<HandshakeGate>,
    address: IpAddr,
}

impl HandshakeGate {
    fn new(max: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_address,
            pending: Mutex::new((0, HashMap::new())),
        })
    }

    /// A place for a handshake from `address`, or the limit that refuses it.
    fn enter(self: &Arc<Self>, address: IpAddr) -> Result<PendingHandshake, &'static str> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let (total, by_address) = &mut *pending;
        if *total >= self.max {
            return Err("pending_handshakes");
        }
        let from_address = by_address.entry(address).or_default();
        if *from_address >= self.max_per_address {
            return Err("pending_handshakes_per_address");
        }
        *from_address += 1;
        *total += 1;
        Ok(PendingHandshake {
            gate: self.clone(),
            address,
        })
    }
}

impl Drop for PendingHandshake {
    fn drop(&mut self) {
        let mut pending = self
            .gate
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (total, by_address) = &mut *pending;
        *total = total.saturating_sub(1);
        if let Some(n) = by_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_address.remove(&self.address);
            }
        }
    }
}

/// How long the accept loop pauses after a failed accept: growing from 5 ms to 1 s while
/// accepts keep failing (out of file descriptors, mostly), so that it never spins.
fn accept_backoff(failures: u32) -> Duration {
    Duration::from_millis(5u64.saturating_mul(1 << failures.min(8)).min(1_000))
}

/// How one listener accepts connections.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// `peer` or `operator`: for metrics and log lines.
    pub plane: &'static str,
    /// A handshake not finished in this time is dropped.
    pub handshake_timeout: Duration,
    /// Connections in their handshake at once.
    pub max_pending_handshakes: usize,
    /// Connections in their handshake at once from one source address.
    pub max_pending_handshakes_per_address: usize,
}

impl ListenerOptions {
    /// The options for `plane` under `limits`.
    pub fn new(plane: &'static str, limits: &crate::node::limits::Limits) -> Self {
        Self {
            plane,
            handshake_timeout: limits.handshake_timeout(),
            max_pending_handshakes: limits.max_pending_handshakes,
            max_pending_handshakes_per_address: limits.max_pending_handshakes_per_address,
        }
    }
}

/// Accepts TCP connections and completes TLS handshakes off the accept loop, yielding the
/// connections that passed, each under the server configuration current when it arrived.
///
/// Before TLS, a connection beyond the listener's or its source address's bound of pending
/// handshakes is closed at once; a handshake not finished in time is dropped; a failed accept
/// pauses the loop with a growing backoff. With a `limiter`, a connection beyond its peer's
/// limit is closed after the handshake. Refusals are counted in the metrics every time and
/// logged through a [`Throttle`]. Ends when the receiver is dropped.
pub fn incoming(
    listener: TcpListener,
    config: tokio::sync::watch::Receiver<Arc<ServerConfig>>,
    options: ListenerOptions,
    metrics: Arc<crate::exchange::metrics::Metrics>,
    limiter: Option<Limiter>,
) -> ReceiverStream<Result<Accepted, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let gate = HandshakeGate::new(
        options.max_pending_handshakes,
        options.max_pending_handshakes_per_address,
    );
    let throttle = Arc::new(Throttle::new());
    let plane = options.plane;
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => {
                        failures = 0;
                        pair
                    }
                    Err(e) => {
                        metrics.connection_refused(plane, "accept_error");
                        if let Some(suppressed) = throttle.admit("accept_error", None) {
                            tracing::warn!(plane, error = %e, suppressed, "accept failed; pausing");
                        }
                        let pause = accept_backoff(failures);
                        failures = failures.saturating_add(1);
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = tx.closed() => return,
                        }
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let pending = match gate.enter(crate::node::throttle::source(remote.ip())) {
                Ok(pending) => pending,
                Err(limit) => {
                    // Dropping the stream closes it: no handshake, no task, no descriptor kept.
                    drop(tcp);
                    metrics.connection_refused(plane, limit);
                    // The listener's own bound is one reason whatever the address.
                    let address = (limit == "pending_handshakes_per_address").then(|| remote.ip());
                    if let Some(suppressed) = throttle.admit(limit, address) {
                        tracing::warn!(plane, address = %remote.ip(), limit, suppressed, "connection closed before its handshake: too many pending");
                    }
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            // The configuration current at accept time: a reload applies to new connections.
            let acceptor = TlsAcceptor::from(config.borrow().clone());
            let tx = tx.clone();
            let metrics = metrics.clone();
            let limiter = limiter.clone();
            let throttle = throttle.clone();
            let timeout = options.handshake_timeout;
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(timeout, acceptor.accept(tcp)).await;
                drop(pending);
                let reason = match handshake {
                    Ok(Ok(mut stream)) => {
                        let caller = Caller::of(&stream);
                        let peer = caller
                            .identity()
                            .and_then(Result::ok)
                            .map(|identity| identity.country);
                        let slot = match (&limiter, peer) {
                            (Some(limiter), Some(peer)) => match limiter.connect(peer) {
                                Some(slot) => Some(slot),
                                None => {
                                    let _ = stream.shutdown().await;
                                    return;
                                }
                            },
                            _ => None,
                        };
                        let _ = tx
                            .send(Ok(Accepted {
                                stream,
                                caller,
                                _slot: slot,
                            }))
                            .await;
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timeout".to_owned(),
                };
                let label = crate::node::metrics::handshake_reason(&reason);
                metrics.tls_failure(plane, label);
                if let Some(suppressed) = throttle.admit(label, Some(remote.ip())) {
                    tracing::warn!(plane, %remote, reason, suppressed, "tls handshake refused");
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// How this node checks a peer's server certificate on the connections it opens: the same
/// rules as its own listener applies to the peer's client certificate. The leaf must name the
/// expected peer's node, chain to that peer's CA directly (intermediates are ignored), be
/// valid now, carry the configured server name, and not be on the peer CA's revocation list.
#[derive(Debug)]
struct PeerServerVerifier {
    peer: CountryCode,
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl rustls::client::danger::ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let identity = identity_of(end_entity).map_err(|e| refuse(e.to_string()))?;
        if identity.role != Role::Node || identity.country != self.peer {
            return Err(refuse(format!(
                "the server's certificate names {identity}, not the node of {}",
                self.peer
            )));
        }
        let _ = intermediates;
        self.inner
            .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Opens TCP and TLS to a peer with this node's own client configuration, for tonic.
#[derive(Clone)]
struct PeerConnector {
    tls: tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for PeerConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl tonic::codegen::Service<tonic::codegen::http::Uri> for PeerConnector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let (tls, server_name) = (self.tls.clone(), self.server_name.clone());
        Box::pin(async move {
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                .ok_or_else(|| std::io::Error::other("the peer address names no host"))?;
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tls.connect(server_name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

/// A lazily connecting channel from this node to the peer listener of `peer` at `address`
/// (`https://host:port`), presenting `chain` and `key`, the peer's certificate checked
/// against `anchor` as [`PeerServerVerifier`] says.
pub fn peer_channel(
    peer: CountryCode,
    anchor: &Anchor,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    server_name: &str,
    address: &str,
) -> Result<tonic::transport::Channel, TlsError> {
    let roots = Arc::new(roots(&anchor.path, &anchor.certs)?);
    let inner = rustls::client::WebPkiServerVerifier::builder(roots)
        .with_crls(anchor.revoked.lists().iter().cloned())
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerServerVerifier { peer, inner }))
        .with_client_auth_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let server_name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| TlsError::Config(format!("server_name {server_name:?}: {e}")))?;
    // TLS is this connector's; tonic speaks HTTP/2 over it.
    let plain = address
        .strip_prefix("https://")
        .map(|rest| format!("http://{rest}"))
        .ok_or_else(|| {
            TlsError::Config(format!("address {address:?}: must be https://host:port"))
        })?;
    let endpoint = tonic::transport::Endpoint::from_shared(plain)
        .map_err(|e| TlsError::Config(format!("address {address:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_with_connector_lazy(PeerConnector {
        tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    }))
}

/// Client-side TLS material: whom to trust and what to present.
#[derive(Clone)]
pub struct ClientTls {
    /// The CA the server's certificate must chain to (PEM).
    pub ca_pem: Vec<u8>,
    /// The client's certificate chain (PEM).
    pub cert_pem: Vec<u8>,
    /// The client's key (PEM); printed as MASKED.
    pub key_pem: Vec<u8>,
    /// The DNS name the server's certificate must carry.
    pub server_name: String,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .field("key_pem", &"MASKED")
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads the PEM files.
    pub fn load(ca: &Path, cert: &Path, key: &Path, server_name: &str) -> Result<Self, TlsError> {
        // Parse now so a bad file is named here, not as an opaque handshake failure later.
        load_certs(ca)?;
        load_certs(cert)?;
        load_key(key)?;
        Ok(Self {
            ca_pem: read(ca)?,
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            server_name: server_name.to_owned(),
        })
    }

    /// A lazily connecting channel to `address` (`https://host:port`).
    pub fn channel(&self, address: &str) -> Result<tonic::transport::Channel, TlsError> {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
            .domain_name(self.server_name.clone());
        let endpoint = tonic::transport::Endpoint::from_shared(address.to_owned())
            .map_err(|e| TlsError::Config(format!("address {address:?}: {e}")))?
            .tls_config(tls)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(endpoint.connect_lazy())
    }
}
