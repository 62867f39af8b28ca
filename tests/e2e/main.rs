//! End-to-end tests: the real binaries as separate processes, talking real gRPC
//! and HTTP, over real SQLite files in a temporary directory per test.
//!
//! Run `cargo build --workspace --bins` first (the README's test command does):
//! the tests start the binaries that build produced.

mod support;

mod auth_cache;
mod chaos;
mod ci_depth;
mod cli_errors;
mod cli_output;
mod config_file;
mod docs;
mod dora;
mod drain;
mod grpc_api;
mod hostile;
mod large_scrape;
mod limits;
mod long_runs;
mod org_metrics;
mod postgres;
mod prometheus;
mod reflection;
mod reload;
mod reported_times;
mod restart;
mod retention;
mod retries;
mod scrape_cache;
mod scrape_status;
mod supervision;
mod telemetry;
mod tls;
mod upstream_down;
mod walkthrough;
mod webhooks;
