//! focalpoint: the gateway between the immigration focal points of Indonesia (IDN) and
//! Cambodia (KHM).
//!
//! Each country runs one node. Nodes exchange traveller alerts, document-fraud notices,
//! statistics and case responses over mutual TLS ([`service`]), keep every message in a
//! hash-chained exchange log ([`log`]), and answer each delivery with a signed receipt
//! ([`receipt`]). Local operators, auditors and the statistics sync use the operator plane
//! through the command-line client ([`client`]).

pub mod audit;
pub mod certs;
pub mod check;
pub mod checkpoint;
pub mod client;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod exchange;
pub mod fuzzing;
pub mod limits;
pub mod log;
pub mod merkle;
pub mod metrics;
pub mod model;
pub mod mrz;
pub mod node;
pub mod pb;
pub mod receipt;
pub mod retention;
pub mod revocation;
pub mod seal;
pub mod service;
pub mod stats;
pub mod throttle;
pub mod tls;
pub mod validate;
