//! The one bootstrap every runplane service shares.
//!
//! A service's `main` is a few lines over this crate: [`service::main`] loads the
//! typed configuration ([`config`]), starts logging ([`telemetry`]), connects and
//! migrates its database ([`database`]), and serves gRPC with health, reflection
//! and graceful shutdown ([`grpc`], [`shutdown`]). Peers are reached through
//! [`client`]; credentials are minted and checked by [`secret`] and [`auth`];
//! connections are plain TCP or TLS ([`listener`], [`tls`]).

pub mod admission;
pub mod auth;
pub mod auth_failures;
pub mod client;
pub mod config;
pub mod database;
pub mod grpc;
pub mod http;
pub mod listener;
pub mod names;
pub mod observe;
pub mod page_token;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod time;
pub mod tls;
