//! A running node: configuration, the two TLS listeners and their limits, the gRPC adapters
//! with the one mapping to gRPC status, delivery to each peer, and the metrics listener.

pub mod allocator;
pub mod config;
pub mod delivery;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod service;
pub mod throttle;
pub mod tls;

pub use self::server::{BoundNode, NodeError, RunningNode, SHUTDOWN_GRACE};
