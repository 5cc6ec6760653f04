//! Limits on what a peer may ask of this node, so that a flood from one peer (hostile, or a
//! sender gone wrong) is refused with a clear status and harms nothing else: the operator plane
//! has its own listener and is never limited by the peer's traffic.
//!
//! - an envelope larger than `max_envelope_bytes` is refused for good (INVALID_ARGUMENT);
//! - unary deliveries beyond `peer_rate_per_sec` (with a burst of `peer_burst`) are refused
//!   with RESOURCE_EXHAUSTED, and a stream is slowed to that rate instead;
//! - a stream carrying more than `max_stream_messages` envelopes is ended with
//!   RESOURCE_EXHAUSTED after the last one it may carry;
//! - more than `max_streams_per_peer` open streams: the next is refused, RESOURCE_EXHAUSTED;
//! - more than `max_connections_per_peer` TLS connections: the next is closed after the
//!   handshake;
//! - a TLS handshake not finished in `handshake_timeout_secs` is dropped;
//! - more than `max_pending_handshakes` connections in their handshake on one listener, or
//!   `max_pending_handshakes_per_address` from one source address: the next TCP connection is
//!   closed as soon as it is accepted, so idle connections that never start TLS cannot use up
//!   the node's file descriptors (both listeners, each with its own count).
//!
//! Every refusal for rate, streams, stream length or connections is counted in
//! `focalpoint_limit_refusals_total{limit,peer}` and logged at warn, at most once a second per
//! peer and limit, so that a flood does not flood the logs too. An oversized envelope is a
//! refusal like any invalid one: logged, counted in `focalpoint_messages_refused_total`, and
//! recorded in the log with its digest.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::model::CountryCode;

/// The configurable limits (`[limits]` in the node configuration), with safe defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest envelope accepted from a peer, in bytes (at most 262144, the protocol's).
    pub max_envelope_bytes: usize,
    /// Envelopes one `DeliverStream` call may carry.
    pub max_stream_messages: u64,
    /// `DeliverStream` calls open at once per peer.
    pub max_streams_per_peer: usize,
    /// TLS connections open at once per peer.
    pub max_connections_per_peer: usize,
    /// Seconds a client has to finish the TLS handshake, on both listeners.
    pub handshake_timeout_secs: u64,
    /// TCP connections in their TLS handshake at once, per listener; more are closed at once.
    pub max_pending_handshakes: usize,
    /// TCP connections in their TLS handshake at once from one source address, per listener.
    pub max_pending_handshakes_per_address: usize,
    /// Seconds an envelope's `created_at` may be ahead of this node's clock, on both planes.
    pub max_clock_skew_secs: u64,
    /// Envelopes per second accepted from each peer, sustained.
    pub peer_rate_per_sec: u32,
    /// Envelopes accepted from each peer in a burst above the sustained rate.
    pub peer_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_envelope_bytes: crate::domain::validate::MAX_ENVELOPE_BYTES,
            max_stream_messages: 10_000,
            max_streams_per_peer: 4,
            max_connections_per_peer: 8,
            handshake_timeout_secs: 10,
            max_pending_handshakes: 256,
            max_pending_handshakes_per_address: 32,
            max_clock_skew_secs: crate::domain::validate::DEFAULT_CLOCK_SKEW
                .whole_seconds()
                .unsigned_abs(),
            peer_rate_per_sec: 2_000,
            peer_burst: 10_000,
        }
    }
}

impl Limits {
    /// What is wrong with these limits, naming the key.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let max = crate::domain::validate::MAX_ENVELOPE_BYTES;
        if !(1024..=max).contains(&self.max_envelope_bytes) {
            return Some((
                "max_envelope_bytes",
                format!("must be between 1024 and {max}"),
            ));
        }
        for (key, value) in [
            ("max_stream_messages", self.max_stream_messages),
            ("max_streams_per_peer", self.max_streams_per_peer as u64),
            (
                "max_connections_per_peer",
                self.max_connections_per_peer as u64,
            ),
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("max_pending_handshakes", self.max_pending_handshakes as u64),
            (
                "max_pending_handshakes_per_address",
                self.max_pending_handshakes_per_address as u64,
            ),
            ("peer_rate_per_sec", u64::from(self.peer_rate_per_sec)),
            ("max_clock_skew_secs", self.max_clock_skew_secs),
            ("peer_burst", u64::from(self.peer_burst)),
        ] {
            if value == 0 {
                return Some((key, "must be at least 1".into()));
            }
        }
        None
    }

    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
}

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Default)]
struct PeerState {
    bucket: Option<Bucket>,
    connections: usize,
    last_warned: BTreeMap<&'static str, Instant>,
}

/// The limits in force and what each peer is using of them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Limiter {
    limits: Arc<Limits>,
    peers: Arc<Mutex<BTreeMap<CountryCode, PeerState>>>,
    streams: Arc<Mutex<BTreeMap<CountryCode, Arc<Semaphore>>>>,
    metrics: Arc<crate::exchange::metrics::Metrics>,
}

/// A refusal for exceeding a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// Which limit: `rate`, `streams`, `stream_length`, `connections`.
    pub limit: &'static str,
    /// What to tell the peer.
    pub message: String,
}

impl From<Exceeded> for tonic::Status {
    fn from(e: Exceeded) -> Self {
        Self::resource_exhausted(e.message)
    }
}

/// Held while a connection is open; counts it against its peer.
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: Limiter,
    peer: CountryCode,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limiter.with_peer(self.peer, |p| {
            p.connections = p.connections.saturating_sub(1);
        });
    }
}

impl Limiter {
    /// A limiter enforcing `limits`, counting refusals in `metrics`.
    pub fn new(limits: Limits, metrics: Arc<crate::exchange::metrics::Metrics>) -> Self {
        Self {
            limits: Arc::new(limits),
            peers: Arc::default(),
            streams: Arc::default(),
            metrics,
        }
    }

    fn with_peer<R>(&self, peer: CountryCode, f: impl FnOnce(&mut PeerState) -> R) -> R {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        f(peers.entry(peer).or_default())
    }

    fn exceeded(&self, peer: CountryCode, limit: &'static str, message: String) -> Exceeded {
        self.metrics.limited(limit, peer.as_str());
        let now = Instant::now();
        let warn = self.with_peer(peer, |p| {
            let due = p
                .last_warned
                .get(limit)
                .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(1));
            if due {
                p.last_warned.insert(limit, now);
            }
            due
        });
        if warn {
            tracing::warn!(peer = %peer, limit, reason = %message, "peer exceeded a limit");
        }
        Exceeded { limit, message }
    }

    /// Takes one token for `peer`; `Err` holds how long until one is available.
    fn take(&self, peer: CountryCode) -> Result<(), Duration> {
        let rate = f64::from(self.limits.peer_rate_per_sec);
        let burst = f64::from(self.limits.peer_burst);
        let now = Instant::now();
        self.with_peer(peer, |p| {
            let bucket = p.bucket.get_or_insert(Bucket {
                tokens: burst,
                last: now,
            });
            let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
            bucket.tokens = (bucket.tokens + refill).min(burst);
            bucket.last = now;
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                Ok(())
            } else {
                Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
            }
        })
    }

    /// One unary delivery from `peer`: refused beyond the rate.
    pub fn admit(&self, peer: CountryCode) -> Result<(), Exceeded> {
        self.take(peer).map_err(|_| {
            self.exceeded(
                peer,
                "rate",
                format!(
                    "{peer} is sending more than {} envelopes a second (burst {}); retry later",
                    self.limits.peer_rate_per_sec, self.limits.peer_burst
                ),
            )
        })
    }

    /// One envelope on a stream from `peer`: waits for the rate rather than refusing.
    pub async fn pace(&self, peer: CountryCode) {
        while let Err(wait) = self.take(peer) {
            tokio::time::sleep(wait).await;
        }
    }

    /// A stream slot for `peer`, held for as long as the stream is open.
    pub fn open_stream(&self, peer: CountryCode) -> Result<OwnedSemaphorePermit, Exceeded> {
        let semaphore = self
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(peer)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.max_streams_per_peer)))
            .clone();
        semaphore.try_acquire_owned().map_err(|_| {
            self.exceeded(
                peer,
                "streams",
                format!(
                    "{peer} already has {} streams open, the most this node allows",
                    self.limits.max_streams_per_peer
                ),
            )
        })
    }

    /// The most envelopes one stream may carry, as a sender is told before it sends.
    pub fn max_stream_messages(&self) -> u64 {
        self.limits.max_stream_messages
    }

    /// Refuses the envelope after the last one a stream may carry.
    pub fn stream_length(&self, peer: CountryCode, carried: u64) -> Result<(), Exceeded> {
        let max = self.limits.max_stream_messages;
        if carried > max {
            return Err(self.exceeded(
                peer,
                "stream_length",
                format!("a stream may carry {max} envelopes; open a new stream for the rest"),
            ));
        }
        Ok(())
    }

    /// A connection slot for `peer`, or `None` when it holds as many as allowed.
    pub fn connect(&self, peer: CountryCode) -> Option<ConnectionSlot> {
        let max = self.limits.max_connections_per_peer;
        let admitted = self.with_peer(peer, |p| {
            if p.connections < max {
                p.connections += 1;
                true
            } else {
                false
            }
        });
        if admitted {
            Some(ConnectionSlot {
                limiter: self.clone(),
                peer,
            })
        } else {
            self.exceeded(
                peer,
                "connections",
                format!("{peer} already holds {max} connections; closing the new one"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limits: Limits) -> Limiter {
        Limiter::new(limits, Arc::default())
    }

    #[test]
    fn the_bucket_allows_the_burst_then_refuses() {
        let l = limiter(Limits {
            peer_rate_per_sec: 1,
            peer_burst: 3,
            ..Limits::default()
        });
        let khm: CountryCode = "KHM".parse().unwrap();
        let idn: CountryCode = "IDN".parse().unwrap();
        for _ in 0..3 {
            l.admit(khm).unwrap();
        }
        let refused = l.admit(khm).unwrap_err();
        assert_eq!(refused.limit, "rate");
        assert!(refused.message.contains("more than 1 envelopes a second"));
        // Another peer has its own bucket.
        l.admit(idn).unwrap();
    }

    #[test]
    fn connection_slots_are_returned_when_dropped() {
        let l = limiter(Limits {
            max_connections_per_peer: 2,
            ..Limits::default()
        });
        let khm: CountryCode = "KHM".parse().unwrap();
        let a = l.connect(khm).unwrap();
        let _b = l.connect(khm).unwrap();
        assert!(l.connect(khm).is_none());
        drop(a);
        assert!(l.connect(khm).is_some());
    }

    #[test]
    fn limits_are_checked() {
        let bad = Limits {
            max_envelope_bytes: 10 * 1024 * 1024,
            ..Limits::default()
        };
        assert_eq!(bad.problem().unwrap().0, "max_envelope_bytes");
        let bad = Limits {
            peer_burst: 0,
            ..Limits::default()
        };
        assert_eq!(bad.problem().unwrap().0, "peer_burst");
        assert!(Limits::default().problem().is_none());
    }
}
