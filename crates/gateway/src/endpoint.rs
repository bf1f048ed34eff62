//! Endpoints: a path mapped to a hub or to a raw connection handler (ASP.NET's `MapHub` and
//! `MapConnectionHandler`), with the options of its transports, and the code that starts the
//! application of a connection once its transport is attached.

use std::sync::Arc;

use bytes::Bytes;
use hubcast_backplane::{BoxFuture, ConnectionId};

use crate::config::HubOptions;
use crate::connection::{Connection, Inbound, Mount, PushError, RequestInfo};
use crate::runtime::HubRuntime;

/// A mapped path: what its connections need of it (the [`Mount`]), and what runs on them.
pub(crate) struct Endpoint {
    pub(crate) mount: Arc<Mount>,
    pub(crate) app: App,
    /// This endpoint's own bearer-token validator, in place of the gateway's (and of session tokens).
    pub(crate) auth: Option<Arc<crate::auth::JwtAuth>>,
}

impl Endpoint {
    /// The path as mapped, lower-cased, without a trailing slash.
    pub(crate) fn path(&self) -> &str {
        &self.mount.path
    }

    /// The options of its transports and hub.
    pub(crate) fn options(&self) -> &HubOptions {
        &self.mount.options
    }
}

/// What runs on the connections of an endpoint.
#[derive(Clone)]
pub(crate) enum App {
    Hub(Arc<HubRuntime>),
    Raw(Arc<dyn ConnectionHandler>),
}

/// Application code for a raw endpoint: bytes in, bytes out, no hub protocol and no handshake.
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Runs for the lifetime of one connection; the connection closes when the future completes.
    fn run(&self, connection: RawConnection) -> BoxFuture<'static, ()>;
}

/// A chunk received on a raw connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChunk {
    /// The bytes, as received (frame and request boundaries carry no meaning).
    pub data: Bytes,
    /// Whether they came in a binary WebSocket frame.
    pub binary: bool,
}

/// One raw connection, as its handler sees it.
pub struct RawConnection {
    connection: Arc<Connection>,
    inbound: Inbound,
}

impl RawConnection {
    /// The connection id.
    pub fn connection_id(&self) -> &ConnectionId {
        &self.connection.id
    }

    /// The HTTP request that opened the transport.
    pub fn request(&self) -> Option<Arc<RequestInfo>> {
        self.connection.request()
    }

    /// The next received chunk; `None` when the client is gone.
    pub async fn recv(&mut self) -> Option<RawChunk> {
        tokio::select! {
            _ = self.connection.abort.cancelled() => None,
            next = self.inbound.next(&self.connection) => {
                next.ok().map(|(data, binary)| RawChunk { data, binary })
            }
        }
    }

    /// Queues bytes for the client, as a binary WebSocket frame when `binary`. Fails when the client
    /// is gone or not reading.
    pub fn send(&self, data: Bytes, binary: bool) -> Result<(), PushError> {
        self.connection.set_binary(binary);
        self.connection.outbound.push(data)
    }
}

/// The raw echo endpoint of the official client's functional tests: every chunk goes back as received.
pub struct EchoHandler;

impl ConnectionHandler for EchoHandler {
    fn run(&self, mut connection: RawConnection) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            while let Some(chunk) = connection.recv().await {
                if connection.send(chunk.data, chunk.binary).is_err() {
                    break;
                }
            }
        })
    }
}

/// Runs the endpoint's application on a connection whose transport was just attached, then finishes the
/// outbound queue so the transport can end. The transport removes the connection from the manager once
/// it has written what was queued.
pub(crate) async fn run_application(app: App, connection: Arc<Connection>, inbound: Inbound) {
    // One span per connection: every event of its application carries the connection id and path.
    let span = tracing::info_span!(
        "connection",
        connection_id = %connection.id,
        path = %connection.mount.path,
    );
    tracing::Instrument::instrument(serve_application(app, connection, inbound), span).await;
}

async fn serve_application(app: App, connection: Arc<Connection>, inbound: Inbound) {
    match &app {
        App::Hub(hub) => hub.clone().run_session(connection.clone(), inbound).await,
        App::Raw(handler) => {
            let raw = RawConnection {
                connection: connection.clone(),
                inbound,
            };
            handler.run(raw).await;
            connection.outbound.finish(None, false);
        }
    }
    connection.close_inbound();
}
