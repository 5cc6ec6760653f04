//! Why the exchange refused or failed a request: one error for every operation of the
//! exchange layer, mapped to a gRPC status in exactly one place (`node::service`).

use crate::crypto::receipt::ReceiptError;
use crate::domain::validate::ValidationError;
use crate::log::LogError;

/// Why the exchange refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("invalid {0}")]
    Invalid(#[from] ValidationError),
    #[error("permission denied: {0}")]
    Forbidden(String),
    #[error("message {0} was already logged with other content")]
    Conflict(String),
    #[error("{0} is not a configured peer")]
    UnknownPeer(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("inconsistent: {0}")]
    Inconsistent(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("receipt refused: {0}")]
    Receipt(#[from] ReceiptError),
    #[error(transparent)]
    Log(#[from] LogError),
    /// This node's own failure, never the caller's: a task that stopped, stored data that
    /// does not decode, a signature this node could not make.
    #[error("{what}")]
    Internal {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ExchangeError {
    /// This node's own failure at `what`.
    pub fn internal(
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Internal {
            what,
            source: source.into(),
        }
    }
}
