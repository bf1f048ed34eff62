//! Serialize once: a message sent to many connections is encoded at most once per protocol, and every
//! connection gets a clone of the same [`Bytes`] (a reference count, not a copy).
//!
//! A [`SerializedMessage`] holds the typed message and encodes it lazily the first time a connection of
//! a given protocol asks, so a hub whose clients all speak JSON never pays for MessagePack. Messages that
//! arrive already encoded (from the backplane) are wrapped as they are and never re-encoded.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::error::EncodeError;
use crate::message::HubMessage;
use crate::naming::NamingPolicy;
use crate::value::{EncodeValue, Protocol};
use crate::{json, msgpack};

/// Encodes one framed message (0x1E-terminated JSON, or VarInt-prefixed MessagePack).
pub fn encode_message<A: EncodeValue, V: EncodeValue>(
    protocol: Protocol,
    message: &HubMessage<A, V>,
    naming: NamingPolicy,
) -> Result<Bytes, EncodeError> {
    match protocol {
        Protocol::Json => {
            let mut out = Vec::with_capacity(64);
            json::encode_into(message, naming, &mut out)?;
            Ok(Bytes::from(out))
        }
        Protocol::MessagePack => msgpack::encode(message),
    }
}

/// The framed Ping of each protocol, for keep-alives: `{"type":6}` + 0x1E and `01 91 06`.
pub fn ping(protocol: Protocol) -> Bytes {
    match protocol {
        Protocol::Json => Bytes::from_static(b"{\"type\":6}\x1e"),
        Protocol::MessagePack => Bytes::from_static(&[0x02, 0x91, 0x06]),
    }
}

trait EncodeMessage: Send + Sync {
    fn encode(&self, protocol: Protocol, naming: NamingPolicy) -> Result<Bytes, EncodeError>;
}

impl<A, V> EncodeMessage for HubMessage<A, V>
where
    A: EncodeValue + Send + Sync,
    V: EncodeValue + Send + Sync,
{
    fn encode(&self, protocol: Protocol, naming: NamingPolicy) -> Result<Bytes, EncodeError> {
        encode_message(protocol, self, naming)
    }
}

/// A message shared by every connection it is sent to, encoded at most once per protocol.
pub struct SerializedMessage {
    source: Option<Box<dyn EncodeMessage>>,
    naming: NamingPolicy,
    json: OnceLock<Result<Bytes, EncodeError>>,
    msgpack: OnceLock<Result<Bytes, EncodeError>>,
}

impl SerializedMessage {
    /// Wraps a typed message; `naming` is the JSON naming policy of the hub it is sent on.
    pub fn new<A, V>(message: HubMessage<A, V>, naming: NamingPolicy) -> Self
    where
        A: EncodeValue + Send + Sync + 'static,
        V: EncodeValue + Send + Sync + 'static,
    {
        Self {
            source: Some(Box::new(message)),
            naming,
            json: OnceLock::new(),
            msgpack: OnceLock::new(),
        }
    }

    /// Wraps bytes already framed for each protocol (a backplane payload). A protocol given as `None`
    /// cannot be sent to.
    pub fn from_encoded(json: Option<Bytes>, msgpack: Option<Bytes>) -> Self {
        let missing = |p: Protocol| Err(EncodeError(format!("no '{p}' encoding was provided")));
        Self {
            source: None,
            naming: NamingPolicy::default(),
            json: OnceLock::from(json.ok_or(()).or_else(|()| missing(Protocol::Json))),
            msgpack: OnceLock::from(
                msgpack
                    .ok_or(())
                    .or_else(|()| missing(Protocol::MessagePack)),
            ),
        }
    }

    /// The framed bytes for `protocol`, encoding them on first use.
    pub fn get(&self, protocol: Protocol) -> Result<&Bytes, &EncodeError> {
        let cell = match protocol {
            Protocol::Json => &self.json,
            Protocol::MessagePack => &self.msgpack,
        };
        cell.get_or_init(|| match &self.source {
            Some(source) => source.encode(protocol, self.naming),
            None => Err(EncodeError(format!(
                "no '{protocol}' encoding was provided"
            ))),
        })
        .as_ref()
    }

    /// Whether the bytes for `protocol` have been produced already.
    pub fn is_encoded(&self, protocol: Protocol) -> bool {
        match protocol {
            Protocol::Json => self.json.get().is_some(),
            Protocol::MessagePack => self.msgpack.get().is_some(),
        }
    }
}

impl std::fmt::Debug for SerializedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerializedMessage")
            .field("json", &self.json.get())
            .field("msgpack", &self.msgpack.get())
            .finish_non_exhaustive()
    }
}
