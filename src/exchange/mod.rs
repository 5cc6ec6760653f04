//! What a node does with envelopes, apart from any transport: authorisation, submit and
//! receive, receipts, checkpoints, statistics and their reconciliation, retention, audit, search,
//! case state, events for watchers, and the counters the node keeps.

pub mod audit;
pub mod cases;
pub mod checkpoint;
pub mod core;
pub mod error;
pub mod events;
pub mod metrics;
pub mod reconcile;
pub mod retention;
pub mod search;
pub mod stats;

pub use self::core::{Exchange, PeerTrust};
pub use self::error::ExchangeError;
