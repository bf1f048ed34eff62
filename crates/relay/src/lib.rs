//! # hubcast-relay
//!
//! Serves any connection from any node. A transport request (long-polling poll, POST, DELETE, an SSE
//! stream, a WebSocket upgrade, a stateful reconnect) for a connection of another node is forwarded to
//! that node over HTTP/1.1 with keep-alive, and its answer streamed back as it comes: the status,
//! headers and body are the owner's, so every rule of the transports (the 90 s poll, 204 and 409, one
//! active poll or stream, order per connection, the maximum message size) is applied once, by the
//! owner. A WebSocket upgrade is forwarded as an upgrade and, once the owner has switched protocols,
//! the two upgraded streams are joined byte for byte.
//!
//! The owner's address is what it advertises through the backplane ([`Presence::node_address`]),
//! never anything from the request: no request can make a node connect elsewhere. A node that is
//! gone (no longer advertised, or refusing connections) makes the relay answer `None`, which the
//! gateway turns into `404 No Connection with that ID`.
//!
//! Direct node-to-node HTTP rather than the Redis pub/sub: a relayed poll or stream is one streamed
//! response, without the per-message publish and re-framing a pub/sub relay would pay twice per
//! delivery, and without loading Redis with client traffic (see docs/backplane.md for measurements).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, StreamBody};
use hubcast_backplane::Presence;
use hubcast_gateway::relay::{RELAYED, Relay};
use hubcast_http::{Body, BoxFuture};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::{IntCounterVec, Opts, Registry};

/// How long connecting to an owner may take before it counts as gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Relayed requests by outcome.
#[derive(Clone)]
pub struct RelayMetrics {
    requests: IntCounterVec,
}

impl RelayMetrics {
    /// The series, at 0.
    pub fn new() -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "hubcast_relay_requests_total",
                "Transport requests forwarded to the node owning their connection, by outcome",
            ),
            &["outcome"],
        )
        .unwrap_or_else(|e| unreachable!("a static metric definition: {e}"));
        for outcome in OUTCOMES {
            requests.with_label_values(&[outcome]);
        }
        Self { requests }
    }

    /// Adds the series to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))
    }

    fn count(&self, outcome: &str) {
        self.requests.with_label_values(&[outcome]).inc();
    }
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `forwarded` (the owner answered), `upgraded` (a WebSocket joined to the owner), `unknown_node` (no
/// live node advertises the tag), `unreachable` (the owner did not answer).
const OUTCOMES: [&str; 4] = ["forwarded", "upgraded", "unknown_node", "unreachable"];

/// Forwards requests to their connection's owner over HTTP/1.1.
pub struct HttpRelay {
    presence: Arc<dyn Presence>,
    client: Client<HttpConnector, Incoming>,
    metrics: RelayMetrics,
}

impl HttpRelay {
    /// A relay finding owners through `presence`, counting in `metrics`.
    pub fn new(presence: Arc<dyn Presence>, metrics: RelayMetrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self {
            presence,
            client,
            metrics,
        }
    }
}

/// The response body: the owner's, ended early (and so cut short, as the owner's own connection
/// would be) if the owner goes away mid-stream.
fn relayed_body(body: Incoming) -> Body {
    let frames = futures_util::stream::unfold(body, |mut body| async move {
        match body.frame().await {
            Some(Ok(frame)) => Some((Ok::<Frame<Bytes>, Infallible>(frame), body)),
            _ => None,
        }
    });
    StreamBody::new(frames).boxed_unsync()
}

/// Headers about the hop itself, which each hop sets for itself.
const HOP_BY_HOP: [header::HeaderName; 4] = [
    header::HOST,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
];

impl Relay for HttpRelay {
    fn forward(
        &self,
        node: &str,
        mut request: Request<Incoming>,
    ) -> BoxFuture<'static, Option<Response<Body>>> {
        let presence = self.presence.clone();
        let client = self.client.clone();
        let metrics = self.metrics.clone();
        let node = node.to_owned();
        Box::pin(async move {
            let address = match presence.node_address(&node).await {
                Ok(Some(address)) => address,
                Ok(None) => {
                    metrics.count("unknown_node");
                    return None;
                }
                Err(error) => {
                    tracing::warn!(%error, node, "cannot look up the node owning a connection");
                    metrics.count("unknown_node");
                    return None;
                }
            };
            let upgrade = request
                .headers()
                .contains_key(header::UPGRADE)
                .then(|| hyper::upgrade::on(&mut request));
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let Ok(uri) = format!("http://{address}{path}").parse::<Uri>() else {
                tracing::warn!(node, "the node's advertised address is not host:port");
                metrics.count("unknown_node");
                return None;
            };
            let (mut parts, body) = request.into_parts();
            parts.uri = uri;
            for name in HOP_BY_HOP {
                parts.headers.remove(name);
            }
            parts.headers.insert(RELAYED, HeaderValue::from_static("1"));
            let mut response = match client.request(Request::from_parts(parts, body)).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::debug!(%error, node, "the node owning a connection did not answer");
                    metrics.count("unreachable");
                    return None;
                }
            };
            if let Some(from_client) = upgrade
                && response.status() == StatusCode::SWITCHING_PROTOCOLS
            {
                metrics.count("upgraded");
                let from_owner = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    if let (Ok(client), Ok(owner)) = (from_client.await, from_owner.await) {
                        let _ = tokio::io::copy_bidirectional(
                            &mut TokioIo::new(client),
                            &mut TokioIo::new(owner),
                        )
                        .await;
                    }
                });
                let (parts, _) = response.into_parts();
                return Some(Response::from_parts(parts, Empty::new().boxed_unsync()));
            }
            metrics.count("forwarded");
            let (mut parts, body) = response.into_parts();
            parts.headers.remove(header::TRANSFER_ENCODING);
            Some(Response::from_parts(parts, relayed_body(body)))
        })
    }
}
