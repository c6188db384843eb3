//! The prewarm trainer, as a library: the `prewarm` binary is a thin command line over it.
//! Modules follow the data: ingest → store → profile → publish, with `web` serving the API.
//! Modules marked `#[warn(missing_docs)]` have every public item documented (the rest are
//! on their way; `cargo xtask test` turns the warning into an error).

#![warn(unreachable_pub)]

#[warn(missing_docs)]
pub mod actuate;
#[warn(missing_docs)]
pub mod config;
pub mod forecast;
#[warn(missing_docs)]
pub mod import;
#[warn(missing_docs)]
pub mod ingest;
#[warn(missing_docs)]
pub mod model;
#[warn(missing_docs)]
pub mod monitor;
pub mod outbound;
#[warn(missing_docs)]
pub mod plan;
#[warn(missing_docs)]
pub mod profile;
#[warn(missing_docs)]
pub mod publish;
#[warn(missing_docs)]
pub mod report;
#[warn(missing_docs)]
pub mod service;
#[warn(missing_docs)]
pub mod simulate;
#[warn(missing_docs)]
pub mod store;
#[warn(missing_docs)]
pub mod synth;
#[warn(missing_docs)]
pub mod train;
#[warn(missing_docs)]
pub mod web;
