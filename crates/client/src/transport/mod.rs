//! The three transports behind one shape, a [`Link`]: bytes out through an unbounded queue (the
//! connection never waits on the network), chunks of bytes in through a bounded channel, and a stop
//! signal. Message boundaries carry no meaning on any transport; the hub protocol frames messages.

mod long_polling;
mod post;
mod sse;
mod websocket;

use std::time::Duration;

use bytes::Bytes;
use hubcast_protocol::Transport;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::http::{Http, HubUrl};

/// What a transport reports.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// Bytes from the server.
    Data(Bytes),
    /// The transport ended. `graceful` is true when the server closed it deliberately (a WebSocket
    /// close frame, the end of an SSE stream, a 204 poll); `error` says why when it was not.
    Closed {
        graceful: bool,
        error: Option<String>,
    },
}

/// A started transport.
pub(crate) struct Link {
    pub(crate) kind: Transport,
    outgoing: mpsc::UnboundedSender<Bytes>,
    pub(crate) incoming: mpsc::Receiver<Incoming>,
    stop: CancellationToken,
    /// The tasks that finish the transport on stop (flush, close frame, DELETE).
    closers: Vec<JoinHandle<()>>,
}

/// How long a graceful stop may take before the transport is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

impl Link {
    /// Queues bytes for the server; false once the transport is gone.
    pub(crate) fn send(&self, bytes: Bytes) -> bool {
        self.outgoing.send(bytes).is_ok()
    }

    /// Ends the transport gracefully: flushes what is queued, then a WebSocket close frame or a
    /// long-polling DELETE; waits at most a second for that.
    pub(crate) async fn close(&mut self) {
        self.stop.cancel();
        for task in self.closers.drain(..) {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, task).await;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Where and how to open a transport.
pub(crate) struct Target<'a> {
    pub(crate) http: &'a Http,
    pub(crate) url: &'a HubUrl,
    /// The connection token (absent with skip-negotiation).
    pub(crate) token: Option<&'a str>,
    pub(crate) access_token: Option<&'a str>,
    /// Binary frames (MessagePack) rather than text.
    pub(crate) binary: bool,
}

/// Opens `kind`; returns once the transport can carry the handshake.
pub(crate) async fn open(kind: Transport, target: Target<'_>) -> Result<Link> {
    let (in_tx, incoming) = mpsc::channel(64);
    let (outgoing, out_rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let closers = match kind {
        Transport::WebSockets => websocket::open(&target, in_tx, out_rx, stop.clone()).await?,
        Transport::ServerSentEvents => sse::open(&target, in_tx, out_rx, stop.clone()).await?,
        Transport::LongPolling => long_polling::open(&target, in_tx, out_rx, stop.clone()).await?,
    };
    Ok(Link {
        kind,
        outgoing,
        incoming,
        stop,
        closers,
    })
}

/// Takes everything queued right now behind `first`, as one chunk (several hub messages may travel in
/// one frame or request, as the official clients batch them).
pub(crate) fn batch(first: Bytes, queue: &mut mpsc::UnboundedReceiver<Bytes>) -> Bytes {
    let Ok(second) = queue.try_recv() else {
        return first;
    };
    let mut all = Vec::with_capacity(first.len() + second.len());
    all.extend_from_slice(&first);
    all.extend_from_slice(&second);
    while let Ok(more) = queue.try_recv() {
        all.extend_from_slice(&more);
    }
    Bytes::from(all)
}
