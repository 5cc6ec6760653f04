//! The command line: the operator-plane client, rendering for people (tables, text, CSV, SVG),
//! figures files, configuration checks, the demonstration PKI and the demo.

pub mod certs;
pub mod check;
pub mod client;
pub mod commands;
pub mod console;
pub mod demo;
pub mod figures;
pub mod output;
pub mod render;
pub mod table;
