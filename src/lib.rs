//! focalpoint: the gateway between the immigration focal points of Indonesia (IDN) and
//! Cambodia (KHM).
//!
//! Each country runs one node. Nodes exchange traveller alerts, document-fraud notices,
//! statistics and case responses over mutual TLS, keep every message in a hash-chained
//! exchange log, and answer each delivery with a signed receipt. Local operators, auditors
//! and the statistics sync use the operator plane through the command-line client.
//!
//! The crate reads as layers, each importing only what lies below it:
//!
//! - [`domain`]: typed values, MRZ, validation, the names of kinds and periods; pure.
//! - [`crypto`]: Merkle trees, sealing, receipt and checkpoint signatures, X.509, revocation.
//! - [`log`]: the exchange log over sled: the only place that knows sled.
//! - [`exchange`]: what a node does with envelopes, apart from any transport.
//! - [`node`]: configuration, listeners, limits, gRPC adapters, delivery, metrics.
//! - [`cli`]: the client, rendering, figures files, checks, the demo PKI and the demo.
//!
//! [`pb`] holds the types generated from `proto/`, which every layer may use; [`fuzzing`]
//! holds the fuzz targets' entry points.

pub mod cli;
pub mod crypto;
pub mod domain;
pub mod exchange;
pub mod fuzzing;
pub mod log;
pub mod node;
pub mod pb;
