//! The application's side of received bytes: chunks POSTed to an SSE or long-polling connection arrive
//! through a channel; a WebSocket's frames are read straight from its read half by the application task
//! (no extra task or copy per connection).
//!
//! The WebSocket side is our own frame reader ([`WsRead`]): the socket's bytes go into a small inline
//! buffer (no heap memory while a connection is idle), each frame's head is checked by
//! `hubcast_protocol::websocket` (reserved bits, opcodes, masking, control frames, frame size), and a
//! payload is read into an allocation of exactly its size. On top of that the RFC's message rules: a
//! continuation needs a message to continue and a new message may not start inside one, Text messages
//! must be UTF-8 (across fragments too), a close frame's code and reason must be valid. A violation ends
//! the input with the close code the RFC names (1002, 1007, 1009), not as a clean close.

use bytes::{Bytes, BytesMut};
use hubcast_protocol::websocket::{self, FrameError, Head, MAX_HEAD, Opcode};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, ReadHalf};
use tokio::sync::mpsc;

use super::Connection;

/// Largest single WebSocket frame accepted. Hub messages are limited separately (per message, by the
/// hub's maximum receive size); a frame may hold several of them, as the JS client batches sends.
const MAX_FRAME: usize = 1 << 20;

/// Bytes read from the socket at a time and kept between frames: a frame head and a typical hub
/// invocation fit, so most frames take one read.
const INLINE: usize = 256;

/// The read half of a server WebSocket: the socket and the bytes read from it but not yet used.
pub(crate) struct WsRead {
    io: ReadHalf<TokioIo<Upgraded>>,
    buffer: [u8; INLINE],
    start: usize,
    end: usize,
}

impl WsRead {
    pub(crate) fn new(io: ReadHalf<TokioIo<Upgraded>>) -> Self {
        Self {
            io,
            buffer: [0; INLINE],
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes into the inline buffer (moving what is left to its start first).
    async fn fill(&mut self) -> Result<(), InboundEnd> {
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let free = self.buffer.get_mut(self.end..).unwrap_or_default();
        match self.io.read(free).await {
            Ok(0) => Err(InboundEnd::Failed(
                "the client closed the TCP connection".into(),
            )),
            Ok(read) => {
                self.end += read;
                Ok(())
            }
            Err(error) => Err(InboundEnd::Failed(error.to_string())),
        }
    }

    /// The next frame: its head and its unmasked payload.
    async fn next_frame(&mut self) -> Result<(Head, Bytes), InboundEnd> {
        let head = loop {
            let pending = self.buffer.get(self.start..self.end).unwrap_or_default();
            match websocket::parse_head(pending, MAX_FRAME) {
                Ok(Some(head)) => break head,
                Ok(None) => {
                    debug_assert!(pending.len() < MAX_HEAD);
                    self.fill().await?;
                }
                Err(error) => return Err(InboundEnd::from_frame(error)),
            }
        };
        self.start += head.head_len;
        let available = (self.end - self.start).min(head.len);
        let mut payload = BytesMut::with_capacity(head.len);
        payload.extend_from_slice(
            self.buffer
                .get(self.start..self.start + available)
                .unwrap_or_default(),
        );
        self.start += available;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        while payload.len() < head.len {
            let wanted = (head.len - payload.len()) as u64;
            match (&mut self.io).take(wanted).read_buf(&mut payload).await {
                Ok(0) => {
                    return Err(InboundEnd::Failed(
                        "the client closed the TCP connection inside a frame".into(),
                    ));
                }
                Ok(_) => {}
                Err(error) => return Err(InboundEnd::Failed(error.to_string())),
            }
        }
        websocket::unmask(&mut payload, head.mask, 0);
        Ok((head, payload.freeze()))
    }
}

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

    /// The end a refused frame means.
    fn from_frame(error: FrameError) -> Self {
        let detail = match error {
            FrameError::ReservedBits => "reserved bits set",
            FrameError::UnknownOpcode => "unknown opcode",
            FrameError::Unmasked => "unmasked client frame",
            FrameError::ControlFragmented => "fragmented control frame",
            FrameError::ControlTooLarge => "control frame too large",
            FrameError::TooLarge => "frame too large",
            FrameError::InvalidClose => "invalid close frame",
            FrameError::InvalidCloseReason => "invalid UTF-8 in a close reason",
        };
        Self::violation(error.close_code(), detail)
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
    /// Checks a data frame's place in the message sequence and, for Text, its UTF-8 (across fragments);
    /// returns whether the frame belongs to a Binary message.
    fn check(&mut self, opcode: Opcode, fin: bool, payload: &[u8]) -> Result<bool, InboundEnd> {
        let text = match (opcode, self.fragmented) {
            (Opcode::Continuation, Some(text)) => text,
            (Opcode::Continuation, None) => {
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
            (opcode, None) => opcode == Opcode::Text,
        };
        self.fragmented = if fin { None } else { Some(text) };
        if text {
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
                let (head, payload) = ws.read.next_frame().await.inspect_err(|_| ws.done = true)?;
                match head.opcode {
                    Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                        let binary = ws
                            .messages
                            .check(head.opcode, head.fin, &payload)
                            .inspect_err(|_| ws.done = true)?;
                        if !payload.is_empty() {
                            return Ok((payload, binary));
                        }
                    }
                    Opcode::Close => {
                        ws.done = true;
                        websocket::check_close(&payload).map_err(InboundEnd::from_frame)?;
                        return Err(InboundEnd::Closed);
                    }
                    // Answered through the outbound queue, which the writer drains first.
                    Opcode::Ping => connection.outbound.push_pong(payload),
                    Opcode::Pong => {}
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
