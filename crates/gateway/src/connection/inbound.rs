//! The application's side of received bytes: chunks POSTed to an SSE or long-polling connection arrive
//! through a channel; a WebSocket's frames are read straight from its read half by the application task
//! (no extra task or copy per connection).

use bytes::Bytes;
use fastwebsockets::{OpCode, WebSocketRead};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::ReadHalf;
use tokio::sync::mpsc;

use super::Connection;

/// The read half of a server WebSocket.
pub(crate) type WsRead = WebSocketRead<ReadHalf<TokioIo<Upgraded>>>;

/// How the input of a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InboundEnd {
    /// The client closed (WebSocket close frame, or the POST channel was closed).
    Closed,
    /// The transport failed (connection reset, protocol violation); the text is for logs.
    Failed(String),
}

/// Received chunks, from whichever transport.
pub(crate) enum Inbound {
    Channel(mpsc::Receiver<Bytes>),
    WebSocket(Box<WsRead>),
}

impl Inbound {
    pub(crate) fn channel(rx: mpsc::Receiver<Bytes>) -> Self {
        Self::Channel(rx)
    }

    /// The next chunk, and whether it came in a binary frame. Pings are answered through the
    /// connection's outbound queue on the way.
    pub(crate) async fn next(
        &mut self,
        connection: &Connection,
    ) -> Result<(Bytes, bool), InboundEnd> {
        match self {
            Inbound::Channel(rx) => rx
                .recv()
                .await
                .map(|b| (b, false))
                .ok_or(InboundEnd::Closed),
            Inbound::WebSocket(ws) => loop {
                let frame = ws
                    .read_frame(&mut |frame: fastwebsockets::Frame<'_>| {
                        // The only obligated send left with auto-close off is a pong.
                        if frame.opcode == OpCode::Pong {
                            connection
                                .outbound
                                .push_pong(Bytes::copy_from_slice(&frame.payload));
                        }
                        std::future::ready(Ok::<(), std::convert::Infallible>(()))
                    })
                    .await
                    .map_err(|e| InboundEnd::Failed(e.to_string()))?;
                match frame.opcode {
                    OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                        let binary = frame.opcode == OpCode::Binary;
                        let payload = match frame.payload {
                            fastwebsockets::Payload::Bytes(b) => b.freeze(),
                            other => Bytes::copy_from_slice(&other),
                        };
                        if !payload.is_empty() {
                            return Ok((payload, binary));
                        }
                    }
                    OpCode::Close => return Err(InboundEnd::Closed),
                    OpCode::Ping | OpCode::Pong => {}
                }
            },
        }
    }
}
