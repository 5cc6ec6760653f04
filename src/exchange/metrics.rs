//! Prometheus metrics, served as text on their own listener (loopback by default): messages
//! sent, received and refused per kind and peer, delivery latency, outbox depth, log size,
//! checkpoint age, and TLS handshake failures by reason. Labels never carry personal data.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds of the delivery latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 300.0,
];

/// The node's counters. Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    sent: BTreeMap<(String, String), u64>,
    received: BTreeMap<(String, String), u64>,
    refused: BTreeMap<(String, String), u64>,
    tls_failures: BTreeMap<(String, String), u64>,
    limited: BTreeMap<(String, String), u64>,
    connections_refused: BTreeMap<(String, String), u64>,
    latency_buckets: [u64; LATENCY_BUCKETS.len()],
    latency_count: u64,
    latency_sum: f64,
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

impl Metrics {
    fn with(&self, update: impl FnOnce(&mut Counters)) {
        // A poisoned lock only means a panic mid-increment; the counters stay usable.
        update(
            &mut self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }

    /// A message of `kind` logged for `peer`.
    pub fn sent(&self, kind: &str, peer: &str) {
        self.with(|c| *c.sent.entry((kind.into(), peer.into())).or_default() += 1);
    }

    /// A message of `kind` received from `peer`.
    pub fn received(&self, kind: &str, peer: &str) {
        self.with(|c| *c.received.entry((kind.into(), peer.into())).or_default() += 1);
    }

    /// Input refused (validation, authorisation, conflicting duplicate); `peer` is "local" for
    /// the operator plane.
    pub fn refused(&self, kind: &str, peer: &str) {
        self.with(|c| *c.refused.entry((kind.into(), peer.into())).or_default() += 1);
    }

    /// A call or connection from `peer` refused because it exceeded `limit`.
    pub fn limited(&self, limit: &str, peer: &str) {
        self.with(|c| *c.limited.entry((limit.into(), peer.into())).or_default() += 1);
    }

    /// A TLS handshake refused on `plane` for `reason`.
    pub fn tls_failure(&self, plane: &str, reason: &str) {
        self.with(|c| {
            *c.tls_failures
                .entry((plane.into(), reason.into()))
                .or_default() += 1
        });
    }

    /// A TCP connection on `plane` closed before its handshake, or an accept that failed,
    /// for `reason`.
    pub fn connection_refused(&self, plane: &str, reason: &str) {
        self.with(|c| {
            *c.connections_refused
                .entry((plane.into(), reason.into()))
                .or_default() += 1
        });
    }

    /// Seconds from logging a message to logging the peer's receipt.
    pub fn delivery_latency(&self, seconds: f64) {
        self.with(|c| {
            for (bucket, bound) in c.latency_buckets.iter_mut().zip(LATENCY_BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            c.latency_count += 1;
            c.latency_sum += seconds;
        });
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self, gauges: &Gauges) -> String {
        let c = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        let family = |out: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        for (name, help, map, labels) in [
            (
                "focalpoint_messages_sent_total",
                "Messages logged for delivery.",
                &c.sent,
                ("kind", "peer"),
            ),
            (
                "focalpoint_messages_received_total",
                "Messages received and acknowledged.",
                &c.received,
                ("kind", "peer"),
            ),
            (
                "focalpoint_messages_refused_total",
                "Input refused: validation, authorisation, conflicting duplicates.",
                &c.refused,
                ("kind", "peer"),
            ),
            (
                "focalpoint_tls_handshake_failures_total",
                "TLS handshakes refused.",
                &c.tls_failures,
                ("plane", "reason"),
            ),
            (
                "focalpoint_limit_refusals_total",
                "Peer calls or connections refused for exceeding a configured limit.",
                &c.limited,
                ("limit", "peer"),
            ),
            (
                "focalpoint_connections_refused_total",
                "TCP connections closed before their TLS handshake, and failed accepts.",
                &c.connections_refused,
                ("plane", "reason"),
            ),
        ] {
            family(&mut out, name, help, "counter");
            for ((a, b), v) in map {
                let _ = writeln!(
                    out,
                    "{name}{{{}=\"{a}\",{}=\"{b}\"}} {v}",
                    labels.0, labels.1
                );
            }
        }
        let name = "focalpoint_delivery_latency_seconds";
        family(
            &mut out,
            name,
            "From logging a message to logging the peer's receipt.",
            "histogram",
        );
        for (bound, count) in LATENCY_BUCKETS.iter().zip(c.latency_buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", c.latency_count);
        let _ = writeln!(out, "{name}_sum {}", c.latency_sum);
        let _ = writeln!(out, "{name}_count {}", c.latency_count);
        family(
            &mut out,
            "focalpoint_log_entries",
            "Entries in the exchange log.",
            "gauge",
        );
        let _ = writeln!(out, "focalpoint_log_entries {}", gauges.log_entries);
        family(
            &mut out,
            "focalpoint_outbox_depth",
            "Messages logged and not yet receipted.",
            "gauge",
        );
        for (peer, depth) in &gauges.outbox_depth {
            let _ = writeln!(out, "focalpoint_outbox_depth{{peer=\"{peer}\"}} {depth}");
        }
        family(
            &mut out,
            "focalpoint_checkpoint_age_seconds",
            "Seconds since the last checkpoint the peer cosigned.",
            "gauge",
        );
        for (peer, age) in &gauges.checkpoint_age_seconds {
            let _ = writeln!(
                out,
                "focalpoint_checkpoint_age_seconds{{peer=\"{peer}\"}} {age}"
            );
        }
        out
    }
}
