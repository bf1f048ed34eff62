//! # hubcast-test-support
//!
//! What hubcast's tests and load tools run against, kept out of the product crates:
//! - [`conformance`]: the hubs and endpoints of the official SignalR clients' functional tests, the
//!   `/bench` hub of the load generator and the `/cluster` hub of multi-node tests. `hubcast serve
//!   --conformance` mounts them in builds with the `conformance` feature; the release binary carries
//!   none of it.
//! - [`cluster`]: N gateway nodes in one process over one in-memory backplane, each on a real socket
//!   (127.0.0.1:0), for cross-node tests that need no Redis server.
//! - [`postgres`]: a private PostgreSQL cluster a test may stop, restart or configure for TLS.

pub mod cluster;
pub mod conformance;
pub mod postgres;
