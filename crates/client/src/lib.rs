//! How a runplane service or tool calls another: lazily connecting channels
//! with deadlines and TLS ([`channel`]), every call measured and traced
//! ([`observed`]) and carrying what is left of the caller's own deadline
//! ([`deadline`]), and one reading of what a failed call means
//! ([`upstream`]).

pub mod channel;
pub mod deadline;
pub mod observed;
pub mod upstream;

pub use channel::{Channel, ChannelError, UpstreamArgs, channel, with_bearer};
pub use observed::ObservedChannel;
pub use upstream::{Failure, classify};
