//! The application's side of received bytes: chunks POSTed to an SSE or long-polling connection arrive
//! through a channel; a WebSocket's frames are read straight from its read half by the application task
//! (no extra task or copy per connection).
//!
//! The WebSocket side enforces what RFC 6455 asks of a server beyond the library's own checks (reserved
//! bits, control frames, opcodes, frame size, UTF-8 of whole Text frames): client frames must be masked,
//! a continuation needs a message to continue and a new message may not start inside one, and a Text
//! message split into fragments must be UTF-8 across them. A violation ends the input with the close code
//! the RFC names (1002, 1007, 1009), not as a clean close.

use bytes::Bytes;
use fastwebsockets::{OpCode, WebSocketError, WebSocketRead};
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
    /// The transport failed (connection reset, end of stream); the text is for logs.
    Failed(String),
    /// The client broke the WebSocket protocol: the socket is closed with `code` (RFC 6455 §7.4.1).
    Violation {
        /// 1002 (protocol error), 1007 (invalid UTF-8) or 1009 (too big).
        code: u16,
        /// What was wrong.
        detail: &'static str,
    },
}

impl InboundEnd {
    fn violation(code: u16, detail: &'static str) -> Self {
        Self::Violation { code, detail }
    }

    /// The end a read error means.
    fn from_ws(error: WebSocketError) -> Self {
        match error {
            WebSocketError::InvalidUTF8 => Self::violation(1007, "invalid UTF-8 in a Text message"),
            WebSocketError::FrameTooLarge => Self::violation(1009, "frame too large"),
            WebSocketError::ReservedBitsNotZero => Self::violation(1002, "reserved bits set"),
            WebSocketError::ControlFrameFragmented => {
                Self::violation(1002, "fragmented control frame")
            }
            WebSocketError::PingFrameTooLarge => Self::violation(1002, "control frame too large"),
            WebSocketError::InvalidValue => Self::violation(1002, "unknown opcode"),
            WebSocketError::InvalidFragment | WebSocketError::InvalidContinuationFrame => {
                Self::violation(1002, "invalid fragmentation")
            }
            WebSocketError::InvalidCloseFrame | WebSocketError::InvalidCloseCode => {
                Self::violation(1002, "invalid close frame")
            }
            other => Self::Failed(other.to_string()),
        }
    }
}

/// A server WebSocket's read half, with the fragmentation state RFC 6455 checks need.
pub(crate) struct WsInbound {
    read: Box<WsRead>,
    messages: MessageState,
    /// The client's close frame arrived (or it broke the protocol): nothing more is read.
    done: bool,
}

/// Where the client is in its message sequence.
#[derive(Default)]
struct MessageState {
    /// Inside a fragmented message: whether it is Text.
    fragmented: Option<bool>,
    /// The bytes of a UTF-8 sequence cut by a fragment boundary (at most 3).
    utf8_tail: [u8; 3],
    utf8_tail_len: u8,
}

impl MessageState {
    /// Checks a data frame's place in the message sequence and, for Text, its UTF-8 across fragments;
    /// returns whether the frame belongs to a Binary message.
    fn check(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Result<bool, InboundEnd> {
        let text = match (opcode, self.fragmented) {
            (OpCode::Continuation, Some(text)) => text,
            (OpCode::Continuation, None) => {
                return Err(InboundEnd::violation(
                    1002,
                    "continuation without a message",
                ));
            }
            (_, Some(_)) => {
                return Err(InboundEnd::violation(
                    1002,
                    "new message inside a fragmented one",
                ));
            }
            (opcode, None) => opcode == OpCode::Text,
        };
        self.fragmented = if fin { None } else { Some(text) };
        // A whole Text frame was checked by the library; fragments are checked here.
        if text && !(fin && opcode == OpCode::Text) {
            self.check_utf8(payload, fin)?;
        }
        Ok(!text)
    }

    fn check_utf8(&mut self, payload: &[u8], fin: bool) -> Result<(), InboundEnd> {
        let invalid = || InboundEnd::violation(1007, "invalid UTF-8 in a Text message");
        let held = usize::from(self.utf8_tail_len);
        let mut joined;
        let bytes = if held > 0 {
            joined = self.utf8_tail.get(..held).unwrap_or_default().to_vec();
            joined.extend_from_slice(payload);
            joined.as_slice()
        } else {
            payload
        };
        self.utf8_tail_len = 0;
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            // Cut at the end of a fragment: kept for the next one, unless this was the last.
            Err(error) if error.error_len().is_none() && !fin => {
                let rest = bytes.get(error.valid_up_to()..).unwrap_or_default();
                let tail = self.utf8_tail.get_mut(..rest.len()).ok_or_else(invalid)?;
                tail.copy_from_slice(rest);
                self.utf8_tail_len = u8::try_from(rest.len()).map_err(|_| invalid())?;
                Ok(())
            }
            Err(_) => Err(invalid()),
        }
    }
}

/// Received chunks, from whichever transport.
pub(crate) enum Inbound {
    Channel(mpsc::Receiver<Bytes>),
    WebSocket(Box<WsInbound>),
}

/// Whether the client masked the frame (RFC 6455 §5.1: a server must close on an unmasked one). The
/// library keeps the key private but writes it into a formatted head (14 bytes at most).
fn is_masked(frame: &mut fastwebsockets::Frame<'_>) -> bool {
    let mut head = [0u8; 16];
    frame.fmt_head(&mut head);
    head.get(1).is_some_and(|byte| byte & 0x80 != 0)
}

impl Inbound {
    pub(crate) fn websocket(read: Box<WsRead>) -> Self {
        Self::WebSocket(Box::new(WsInbound {
            read,
            messages: MessageState::default(),
            done: false,
        }))
    }

    /// Whether more input may come: false once a WebSocket's close frame arrived or it broke the
    /// protocol (the server then closes the socket without waiting for anything).
    pub(crate) fn may_continue(&self) -> bool {
        match self {
            Inbound::Channel(_) => true,
            Inbound::WebSocket(ws) => !ws.done,
        }
    }

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
                if ws.done {
                    return Err(InboundEnd::Closed);
                }
                let mut frame = ws
                    .read
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
                    .map_err(InboundEnd::from_ws)
                    .inspect_err(|_| ws.done = true)?;
                if !is_masked(&mut frame) {
                    ws.done = true;
                    return Err(InboundEnd::violation(1002, "unmasked client frame"));
                }
                match frame.opcode {
                    OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                        let binary = ws
                            .messages
                            .check(frame.opcode, frame.fin, &frame.payload)
                            .inspect_err(|_| ws.done = true)?;
                        let payload = match frame.payload {
                            fastwebsockets::Payload::Bytes(b) => b.freeze(),
                            other => Bytes::copy_from_slice(&other),
                        };
                        if !payload.is_empty() {
                            return Ok((payload, binary));
                        }
                    }
                    OpCode::Close => {
                        ws.done = true;
                        return Err(InboundEnd::Closed);
                    }
                    OpCode::Ping | OpCode::Pong => {}
                }
            },
        }
    }
}

/// The end of input from a transport, mapped to a close reason.
impl InboundEnd {
    /// The close reason this end of input means.
    pub(crate) fn close_reason(self) -> crate::close::CloseReason {
        match self {
            InboundEnd::Closed => crate::close::CloseReason::ClientClosed,
            InboundEnd::Failed(detail) => {
                tracing::debug!(%detail, "transport failed");
                crate::close::CloseReason::TransportLost
            }
            InboundEnd::Violation { code, detail } => {
                tracing::debug!(code, detail, "the client broke the WebSocket protocol");
                crate::close::CloseReason::WebSocketViolation { code, detail }
            }
        }
    }
}
