//! Incremental parsing: bytes arrive in chunks (WebSocket frames, POST bodies) whose boundaries mean
//! nothing; a chunk may hold zero, one or many messages, split anywhere. [`MessageReader`] accumulates
//! them and yields whole messages as they complete.
//!
//! The maximum receive message size is enforced while parsing, the way .NET does it (protocol notes
//! §4.4): a JSON record separator must appear within the first `max` buffered bytes and a MessagePack
//! prefix plus body must fit in `max` bytes. An over-long message is refused as soon as that is known
//! (for MessagePack, from its prefix), so it is never buffered whole.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::json::RECORD_SEPARATOR;
use crate::message::HubMessage;
use crate::value::Protocol;
use crate::{json, msgpack, varint};

/// Splits accumulated bytes into hub messages of one protocol.
#[derive(Debug)]
pub struct MessageReader {
    protocol: Protocol,
    max_message_size: Option<usize>,
    buf: BytesMut,
}

impl MessageReader {
    /// A reader for `protocol`; `max_message_size` of `None` means unlimited.
    pub fn new(protocol: Protocol, max_message_size: Option<usize>) -> Self {
        Self::with_buffer(protocol, max_message_size, BytesMut::new())
    }

    /// A reader that starts with bytes already received (those after the handshake, say).
    pub fn with_buffer(protocol: Protocol, max_message_size: Option<usize>, buf: BytesMut) -> Self {
        Self {
            protocol,
            max_message_size,
            buf,
        }
    }

    /// The protocol being read.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes received but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next complete message, `Ok(None)` when more bytes are needed. Messages of unknown
    /// types are skipped. After an error the reader's state is unspecified; the connection must close.
    pub fn next_message(&mut self) -> Result<Option<HubMessage>, ProtocolError> {
        loop {
            let Some(frame) = self.next_body()? else {
                return Ok(None);
            };
            let message = match self.protocol {
                Protocol::Json => json::decode(&frame)?,
                Protocol::MessagePack => msgpack::decode(&frame)?,
            };
            if message.is_some() {
                return Ok(message);
            }
        }
    }

    /// Cuts the next complete message body off the buffer, without its framing (record separator or
    /// length prefix) and undecoded: for readers that look at some messages' bytes themselves.
    /// [`json::decode`] or [`msgpack::decode`] decodes it.
    pub fn next_body(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        let limit = self.max_message_size.unwrap_or(usize::MAX);
        match self.protocol {
            Protocol::Json => {
                let window = self.buf.get(..limit.min(self.buf.len())).unwrap_or(&[]);
                match window.iter().position(|&b| b == RECORD_SEPARATOR) {
                    Some(end) => {
                        let frame = self.buf.split_to(end).freeze();
                        self.buf.advance(1);
                        Ok(Some(frame))
                    }
                    None if self.buf.len() >= limit => {
                        Err(ProtocolError::MessageTooLarge { max: limit })
                    }
                    None => Ok(None),
                }
            }
            Protocol::MessagePack => match varint::decode(&self.buf)? {
                varint::Prefix::Incomplete => Ok(None),
                varint::Prefix::Complete { length, prefix_len } => {
                    if length.saturating_add(prefix_len) > limit {
                        return Err(ProtocolError::MessageTooLarge { max: limit });
                    }
                    if self.buf.len() < prefix_len + length {
                        return Ok(None);
                    }
                    self.buf.advance(prefix_len);
                    Ok(Some(self.buf.split_to(length).freeze()))
                }
            },
        }
    }
}

/// Decodes every complete message in `bytes` (a whole POST body, a test vector). Trailing incomplete
/// bytes are an error here, since nothing more will arrive.
pub fn decode_all(
    protocol: Protocol,
    bytes: &[u8],
    max_message_size: Option<usize>,
) -> Result<Vec<HubMessage>, ProtocolError> {
    let mut reader = MessageReader::new(protocol, max_message_size);
    reader.push(bytes);
    let mut messages = Vec::new();
    while let Some(message) = reader.next_message()? {
        messages.push(message);
    }
    if reader.buffered() > 0 {
        return Err(match protocol {
            Protocol::Json => {
                ProtocolError::Json("Message is incomplete: no record separator.".into())
            }
            Protocol::MessagePack => {
                ProtocolError::MessagePack("Unexpected end of message.".into())
            }
        });
    }
    Ok(messages)
}
