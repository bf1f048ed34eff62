//! The seam for serving any connection on any node: a transport request (a long-polling poll, a POST
//! or DELETE, an SSE stream, a WebSocket upgrade, a stateful reconnect) for a connection another node
//! owns is handed to a [`Relay`], which forwards it to the owner and hands back the owner's answer. The
//! owner is named by the node tag that prefixes every connection token (and connection id); the
//! owner's address comes from the backplane (what the nodes advertise), never from the request. The
//! relaying node authenticates the request first, and the owner checks it again as for any request.
//!
//! A forwarded request carries [`RELAYED`]: the owner never forwards it again (no loops), and a node
//! that does not have the connection answers `404 No Connection with that ID` as usual.

use http::{Request, Response};
use hubcast_http::{Body, BoxFuture};
use hyper::body::Incoming;

/// The header marking a request forwarded by another node.
pub const RELAYED: &str = "x-hubcast-relayed";

/// Forwards requests to the node that owns their connection (hubcast-relay's `HttpRelay`).
pub trait Relay: Send + Sync + 'static {
    /// Forwards `request` to node `node` and answers with its response; `None` when that node is gone
    /// (no live node advertises it, or it cannot be reached), which the gateway answers `404 No
    /// Connection with that ID`.
    fn forward(
        &self,
        node: &str,
        request: Request<Incoming>,
    ) -> BoxFuture<'static, Option<Response<Body>>>;
}

/// The node tag a connection token starts with (`tag.random`), if any.
pub(crate) fn token_node(token: &str) -> Option<&str> {
    token
        .split_once('.')
        .map(|(node, _)| node)
        .filter(|n| !n.is_empty())
}
