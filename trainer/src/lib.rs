//! The prewarm trainer, as a library: the `prewarm` binary is a thin command line over it.
//! Modules follow the data: ingest → store → profile → publish, with `web` serving the API.
//! Every public item is documented (`missing_docs`; `cargo xtask test` makes it an error).

#![warn(missing_docs, unreachable_pub)]

pub mod actuate;
pub mod config;
pub mod forecast;
pub mod import;
pub mod ingest;
pub mod model;
pub mod monitor;
pub mod outbound;
pub mod plan;
pub mod profile;
pub mod publish;
pub mod report;
pub mod service;
pub mod simulate;
pub mod store;
pub mod synth;
pub mod train;
pub mod web;
