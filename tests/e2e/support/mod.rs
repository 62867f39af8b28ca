//! The harness: a suite of real processes in a temporary directory
//! ([`suite`]), how tests talk to it ([`clients`]), and the independent
//! parsers its expositions are checked with ([`checks`]).

mod checks;
mod clients;
mod suite;

pub(crate) use checks::*;
pub(crate) use clients::*;
pub(crate) use suite::*;
