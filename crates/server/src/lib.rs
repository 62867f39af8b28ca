//! The one bootstrap every runplane service shares, and the servers it runs.
//!
//! A service's `main` is a few lines over [`bootstrap::main`]: load its
//! configuration (its settings are its own; the suite's shared file layout is
//! [`suite`]), start logging, and serve. gRPC services serve through
//! [`grpc::serve`] with health, reflection, their own metrics, every request
//! observed ([`observe`]) and admitted ([`admission`]); HTTP services through
//! [`http::serve`], observed and probed alike ([`http_observe`]). Both accept plain TCP or TLS ([`listener`]) and drain
//! gracefully on SIGTERM ([`shutdown`]). List APIs page with opaque cursors
//! ([`pagination`]); an undecodable request is INVALID_ARGUMENT ([`malformed`]).

pub mod admission;
pub mod bootstrap;
pub mod grpc;
pub mod http;
pub mod http_observe;
pub mod listener;
pub mod malformed;
pub mod observe;
pub mod pagination;
pub mod shutdown;
pub mod suite;

pub use bootstrap::{CommonArgs, ServiceConfig};
