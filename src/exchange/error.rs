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
}
