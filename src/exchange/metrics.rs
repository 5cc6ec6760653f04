//! Prometheus metrics, served as text on their own listener (loopback by default): messages
//! sent, received and refused per kind and peer, delivery latency, outbox depth, log size,
//! checkpoint age, and TLS handshake failures by reason. Labels never carry personal data.
//!
//! The exposition is the `prometheus-client` crate's OpenMetrics text, which Prometheus reads.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the delivery latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 300.0,
];

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindPeer {
    kind: String,
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlaneReason {
    plane: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitPeer {
    limit: String,
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Peer {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerDirection {
    peer: String,
    direction: String,
}

/// Overdue cases by peer and direction (`sent`: the peer owes the answer; `received`: this node
/// does), as the deadline check last counted them.
pub type OverdueCounts = std::collections::BTreeMap<(String, &'static str), u64>;

/// The node's counters. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sent: Family<KindPeer, Counter>,
    received: Family<KindPeer, Counter>,
    refused: Family<KindPeer, Counter>,
    tls_failures: Family<PlaneReason, Counter>,
    limited: Family<LimitPeer, Counter>,
    connections_refused: Family<PlaneReason, Counter>,
    latency: Histogram,
    log_entries: Gauge,
    outbox_depth: Family<Peer, Gauge>,
    checkpoint_age: Family<Peer, Gauge<f64, AtomicU64>>,
    overdue: Family<PeerDirection, Gauge>,
}

/// Values read at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Entries in the log.
    pub log_entries: u64,
    /// Messages without a receipt, per peer.
    pub outbox_depth: Vec<(String, u64)>,
    /// Seconds since the last cosigned checkpoint, per peer.
    pub checkpoint_age_seconds: Vec<(String, f64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::default(),
            sent: Family::default(),
            received: Family::default(),
            refused: Family::default(),
            tls_failures: Family::default(),
            limited: Family::default(),
            connections_refused: Family::default(),
            latency: Histogram::new(LATENCY_BUCKETS),
            log_entries: Gauge::default(),
            outbox_depth: Family::default(),
            checkpoint_age: Family::default(),
            overdue: Family::default(),
        };
        let r = &mut metrics.registry;
        // Counters are registered without `_total`: the encoder appends it.
        r.register(
            "focalpoint_messages_sent",
            "Messages logged for delivery.",
            metrics.sent.clone(),
        );
        r.register(
            "focalpoint_messages_received",
            "Messages received and acknowledged.",
            metrics.received.clone(),
        );
        r.register(
            "focalpoint_messages_refused",
            "Input refused: validation, authorisation, conflicting duplicates.",
            metrics.refused.clone(),
        );
        r.register(
            "focalpoint_tls_handshake_failures",
            "TLS handshakes refused.",
            metrics.tls_failures.clone(),
        );
        r.register(
            "focalpoint_limit_refusals",
            "Peer calls or connections refused for exceeding a configured limit.",
            metrics.limited.clone(),
        );
        r.register(
            "focalpoint_connections_refused",
            "TCP connections closed before their TLS handshake, and failed accepts.",
            metrics.connections_refused.clone(),
        );
        r.register(
            "focalpoint_delivery_latency_seconds",
            "From logging a message to logging the peer's receipt.",
            metrics.latency.clone(),
        );
        r.register(
            "focalpoint_log_entries",
            "Entries in the exchange log.",
            metrics.log_entries.clone(),
        );
        r.register(
            "focalpoint_outbox_depth",
            "Messages logged and not yet receipted.",
            metrics.outbox_depth.clone(),
        );
        r.register(
            "focalpoint_overdue_responses",
            "Cases past the response time agreed for their urgency without an answer: direction sent, the peer owes it; received, this node does.",
            metrics.overdue.clone(),
        );
        r.register(
            "focalpoint_checkpoint_age_seconds",
            "Seconds since the last checkpoint the peer cosigned.",
            metrics.checkpoint_age.clone(),
        );
        metrics
    }
}

impl Metrics {
    /// A message of `kind` logged for `peer`.
    pub fn sent(&self, kind: &str, peer: &str) {
        self.sent.get_or_create(&kind_peer(kind, peer)).inc();
    }

    /// A message of `kind` received from `peer`.
    pub fn received(&self, kind: &str, peer: &str) {
        self.received.get_or_create(&kind_peer(kind, peer)).inc();
    }

    /// Input refused (validation, authorisation, conflicting duplicate); `peer` is "local" for
    /// the operator plane.
    pub fn refused(&self, kind: &str, peer: &str) {
        self.refused.get_or_create(&kind_peer(kind, peer)).inc();
    }

    /// A call or connection from `peer` refused because it exceeded `limit`.
    pub fn limited(&self, limit: &str, peer: &str) {
        let labels = LimitPeer {
            limit: limit.into(),
            peer: peer.into(),
        };
        self.limited.get_or_create(&labels).inc();
    }

    /// A TLS handshake refused on `plane` for `reason`.
    pub fn tls_failure(&self, plane: &str, reason: &str) {
        self.tls_failures
            .get_or_create(&plane_reason(plane, reason))
            .inc();
    }

    /// A TCP connection on `plane` closed before its handshake, or an accept that failed,
    /// for `reason`.
    pub fn connection_refused(&self, plane: &str, reason: &str) {
        self.connections_refused
            .get_or_create(&plane_reason(plane, reason))
            .inc();
    }

    /// The overdue cases as the last deadline check counted them, by peer and direction.
    pub fn overdue(&self, counts: &OverdueCounts) {
        self.overdue.clear();
        for ((peer, direction), count) in counts {
            self.overdue
                .get_or_create(&PeerDirection {
                    peer: peer.clone(),
                    direction: (*direction).to_owned(),
                })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }

    /// Seconds from logging a message to logging the peer's receipt.
    pub fn delivery_latency(&self, seconds: f64) {
        self.latency.observe(seconds);
    }

    /// The OpenMetrics text exposition of everything, with `gauges` as read for this scrape.
    pub fn render(&self, gauges: &Gauges) -> String {
        self.log_entries
            .set(i64::try_from(gauges.log_entries).unwrap_or(i64::MAX));
        // Only the peers read now: a peer removed from the configuration leaves no stale line.
        self.outbox_depth.clear();
        for (peer, depth) in &gauges.outbox_depth {
            self.outbox_depth
                .get_or_create(&Peer { peer: peer.clone() })
                .set(i64::try_from(*depth).unwrap_or(i64::MAX));
        }
        self.checkpoint_age.clear();
        for (peer, age) in &gauges.checkpoint_age_seconds {
            self.checkpoint_age
                .get_or_create(&Peer { peer: peer.clone() })
                .set(*age);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn kind_peer(kind: &str, peer: &str) -> KindPeer {
    KindPeer {
        kind: kind.into(),
        peer: peer.into(),
    }
}

fn plane_reason(plane: &str, reason: &str) -> PlaneReason {
    PlaneReason {
        plane: plane.into(),
        reason: reason.into(),
    }
}
