#![doc = include_str!("../README.md")]
//!
//! Module map: [`builder`] (options), [`connection`] (the handle, calls, handlers, streams),
//! `driver` (the connection task: negotiate, transports, handshake, dispatch, keep-alive,
//! reconnects), `transport` (WebSockets, Server-Sent Events, long polling), `stateful`
//! (stateful-reconnect buffers), [`args`] (typed argument lists), [`error`].

pub mod args;
pub mod builder;
pub mod connection;
mod driver;
pub mod error;
mod http;
mod stateful;
mod transport;

pub use args::{FromArguments, ToArguments};
pub use builder::{HubConnectionBuilder, RetryContext, RetryPolicy, default_reconnect_delays};
pub use connection::{HubConnection, HubConnectionState, HubStream};
pub use error::{Error, Result};
pub use hubcast_protocol::{Arguments, NamingPolicy, Protocol, RawValue, Transport};
