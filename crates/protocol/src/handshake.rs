//! The handshake that opens every hub connection (protocol notes §2.1): the client sends
//! `{"protocol":"json"|"messagepack","version":N}` + 0x1E (JSON even when it then speaks MessagePack) and
//! the server answers `{}` + 0x1E, or `{"error":"…"}` + 0x1E and closes. Bytes after the request's 0x1E
//! already belong to the hub protocol and stay in the buffer.

use bytes::{Buf, BytesMut};
use serde::Deserialize;
use thiserror::Error;

use crate::json::RECORD_SEPARATOR;
use crate::value::{Protocol, TransferFormat};

/// The highest hub protocol version the server speaks (2 adds Ack and Sequence).
pub const MAX_VERSION: i32 = 2;

/// The success reply, byte for byte.
pub const HANDSHAKE_OK: &[u8] = b"{}\x1e";

/// A parsed handshake request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HandshakeRequest {
    /// The protocol name the client asked for.
    pub protocol: String,
    /// The protocol version (1, or 2 with stateful reconnect).
    pub version: i32,
}

/// Why a handshake failed; `Display` is the text sent to the client in the error reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// The protocol is unknown or not enabled on the hub.
    #[error("The protocol '{0}' is not supported.")]
    UnsupportedProtocol(String),
    /// The version is above [`MAX_VERSION`].
    #[error("The server does not support version {version} of the '{protocol}' protocol.")]
    UnsupportedVersion {
        /// The requested protocol.
        protocol: String,
        /// The requested version.
        version: i32,
    },
    /// A binary protocol on a text-only transport (MessagePack over Server-Sent Events).
    #[error(
        "Cannot use the '{0}' protocol on the current transport. The transport does not support 'Binary' transfer format."
    )]
    TransportFormat(String),
    /// The handshake timed out or exceeded the maximum message size without its separator.
    #[error("Handshake was canceled.")]
    Canceled,
    /// The request was not valid JSON of the expected shape; the detail is shown only with detailed errors.
    #[error("An unexpected error occurred during connection handshake.")]
    Malformed(String),
}

impl HandshakeError {
    /// The error text with details appended, as .NET words it with detailed errors on.
    pub fn detailed(&self) -> String {
        match self {
            HandshakeError::Malformed(detail) => format!("{self} InvalidDataException: {detail}"),
            _ => self.to_string(),
        }
    }
}

/// Parses a handshake request from the front of `buf`, consuming it and its 0x1E. `Ok(None)` means more
/// bytes are needed. With `max_size`, a request whose separator does not fall within that many bytes is
/// refused with [`HandshakeError::Canceled`].
pub fn parse_request(
    buf: &mut BytesMut,
    max_size: Option<usize>,
) -> Result<Option<HandshakeRequest>, HandshakeError> {
    let limit = max_size.unwrap_or(usize::MAX);
    let window = buf.get(..limit.min(buf.len())).unwrap_or(&[]);
    let Some(end) = window.iter().position(|&b| b == RECORD_SEPARATOR) else {
        return if buf.len() >= limit {
            Err(HandshakeError::Canceled)
        } else {
            Ok(None)
        };
    };
    let record = buf.split_to(end);
    buf.advance(1);
    serde_json::from_slice(&record)
        .map(Some)
        .map_err(|e| HandshakeError::Malformed(e.to_string()))
}

impl HandshakeRequest {
    /// Checks the request against what the hub and transport offer and returns the chosen protocol.
    pub fn select(
        &self,
        supported: &[Protocol],
        transport_formats: &[TransferFormat],
    ) -> Result<Protocol, HandshakeError> {
        let protocol = Protocol::from_name(&self.protocol)
            .filter(|p| supported.contains(p))
            .ok_or_else(|| HandshakeError::UnsupportedProtocol(self.protocol.clone()))?;
        if self.version > MAX_VERSION {
            return Err(HandshakeError::UnsupportedVersion {
                protocol: self.protocol.clone(),
                version: self.version,
            });
        }
        if !transport_formats.contains(&protocol.transfer_format()) {
            return Err(HandshakeError::TransportFormat(self.protocol.clone()));
        }
        Ok(protocol)
    }

    /// Encodes the request as a client sends it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        out.extend_from_slice(b"{\"protocol\":");
        let _ = serde_json::to_writer(&mut out, &self.protocol);
        out.extend_from_slice(format!(",\"version\":{}}}", self.version).as_bytes());
        out.push(RECORD_SEPARATOR);
        out
    }
}

/// Encodes an error reply: `{"error":"…"}` + 0x1E.
pub fn encode_error(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 14);
    out.extend_from_slice(b"{\"error\":");
    let _ = serde_json::to_writer(&mut out, message);
    out.push(b'}');
    out.push(RECORD_SEPARATOR);
    out
}

/// What a client reads back: success, or the server's error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeResponse {
    /// `{}`: the connection is open.
    Ok,
    /// `{"error":"…"}`: the server refused.
    Error(String),
}

/// Errors a client can meet reading a handshake response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeResponseError {
    /// The response was not a JSON object.
    #[error("Error parsing handshake response: {0}")]
    Malformed(String),
    /// The response had a `type`, so it was a hub message, not a handshake response.
    #[error("Expected a handshake response from the server.")]
    NotAHandshake,
}

#[derive(Deserialize)]
struct ResponseFields {
    #[serde(default)]
    error: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<serde_json::value::Value>,
}

/// Parses a handshake response from the front of `buf` (client side), consuming it and its 0x1E.
pub fn parse_response(
    buf: &mut BytesMut,
) -> Result<Option<HandshakeResponse>, HandshakeResponseError> {
    let Some(end) = buf.iter().position(|&b| b == RECORD_SEPARATOR) else {
        return Ok(None);
    };
    let record = buf.split_to(end);
    buf.advance(1);
    let fields: ResponseFields = serde_json::from_slice(&record)
        .map_err(|e| HandshakeResponseError::Malformed(e.to_string()))?;
    if fields.kind.is_some() {
        return Err(HandshakeResponseError::NotAHandshake);
    }
    Ok(Some(match fields.error {
        Some(error) => HandshakeResponse::Error(error),
        None => HandshakeResponse::Ok,
    }))
}
