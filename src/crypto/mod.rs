//! Cryptography over the domain: RFC 6962 Merkle trees, sealing content at rest, signing and
//! verifying receipts, checkpoints and cosignatures, X.509 identity, and revocation lists.

pub mod merkle;
pub mod receipt;
pub mod revocation;
pub mod seal;
pub mod x509;
