//! Hub protocols and the values they carry.
//!
//! Arguments, stream items and results arrive as [`RawValue`]s: a slice of the received bytes (JSON text
//! or one MessagePack value) that is deserialized lazily, straight into the type a hub method asks for, so
//! no dynamic value tree is built on the hot path. Outgoing values are anything implementing
//! [`EncodeValue`]: every `serde::Serialize` type (encoded directly into either protocol) and raw values
//! (copied as they are when the protocol matches, transcoded otherwise).

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{EncodeError, ValueError};
use crate::naming::{self, NamingPolicy};

/// A hub protocol, as named in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// `json`: UTF-8 JSON records terminated by 0x1E.
    Json,
    /// `messagepack`: VarInt length-prefixed MessagePack arrays.
    MessagePack,
}

impl Protocol {
    /// Every protocol hubcast speaks, in the order they are preferred.
    pub const ALL: [Protocol; 2] = [Protocol::Json, Protocol::MessagePack];

    /// The name used in the handshake (`json`, `messagepack`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::MessagePack => "messagepack",
        }
    }

    /// Looks a protocol up by its handshake name (case-insensitive, as .NET compares it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// The transfer format the protocol needs from the transport.
    pub fn transfer_format(self) -> TransferFormat {
        match self {
            Protocol::Json => TransferFormat::Text,
            Protocol::MessagePack => TransferFormat::Binary,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Transfer formats, as listed in the negotiate response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferFormat {
    /// UTF-8 text (WebSocket Text frames, SSE).
    Text,
    /// Arbitrary bytes (WebSocket Binary frames).
    Binary,
}

impl TransferFormat {
    /// The name used in negotiate responses.
    pub fn name(self) -> &'static str {
        match self {
            TransferFormat::Text => "Text",
            TransferFormat::Binary => "Binary",
        }
    }
}

/// One argument, stream item or result exactly as it arrived: JSON text or one MessagePack value.
#[derive(Clone, PartialEq, Eq)]
pub struct RawValue {
    protocol: Protocol,
    bytes: Bytes,
}

impl RawValue {
    /// Wraps already encoded bytes. The caller vouches that `bytes` hold exactly one value of `protocol`.
    pub fn new(protocol: Protocol, bytes: Bytes) -> Self {
        Self { protocol, bytes }
    }

    /// Encodes a typed value in `protocol`.
    pub fn encode<T: EncodeValue + ?Sized>(
        protocol: Protocol,
        value: &T,
        naming: NamingPolicy,
    ) -> Result<Self, EncodeError> {
        let mut out = Vec::new();
        match protocol {
            Protocol::Json => value.encode_json(&mut out, naming)?,
            Protocol::MessagePack => value.encode_msgpack(&mut out)?,
        }
        Ok(Self::new(protocol, Bytes::from(out)))
    }

    /// The protocol the bytes are in.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Whether the value is JSON `null` or MessagePack nil.
    pub fn is_null(&self) -> bool {
        match self.protocol {
            Protocol::Json => self.bytes.as_ref() == b"null",
            Protocol::MessagePack => self.bytes.as_ref() == [0xc0],
        }
    }

    /// Deserializes the value. JSON object keys match struct fields ignoring case and underscores, as
    /// .NET reads them; MessagePack maps and arrays both fill structs.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ValueError> {
        match self.protocol {
            Protocol::Json => {
                let text = std::str::from_utf8(&self.bytes)
                    .map_err(|_| ValueError("Invalid UTF-8 in JSON value.".into()))?;
                naming::from_json_str(text).map_err(|e| ValueError(e.to_string()))
            }
            Protocol::MessagePack => T::deserialize(&mut msgpack_deserializer(&self.bytes))
                .map_err(|e| ValueError(e.to_string())),
        }
    }
}

impl std::fmt::Debug for RawValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.protocol {
            Protocol::Json => write!(f, "Json({})", String::from_utf8_lossy(&self.bytes)),
            Protocol::MessagePack => write!(f, "MessagePack({:02x?})", self.bytes.as_ref()),
        }
    }
}

/// Nesting deeper than this is refused when reading MessagePack values (serde_json's own limit is the
/// same), so hostile input cannot exhaust the stack of the thread that reads it.
pub const MAX_NESTING: usize = 128;

fn msgpack_deserializer(
    bytes: &[u8],
) -> rmp_serde::Deserializer<rmp_serde::decode::ReadRefReader<'_, [u8]>> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(MAX_NESTING);
    de
}

/// The arguments of an Invocation or StreamInvocation as received: one [`RawValue`] each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arguments(pub Vec<RawValue>);

impl Arguments {
    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw argument at `index`.
    pub fn get(&self, index: usize) -> Option<&RawValue> {
        self.0.get(index)
    }

    /// Iterates over the raw arguments.
    pub fn iter(&self) -> std::slice::Iter<'_, RawValue> {
        self.0.iter()
    }
}

/// A value that can be written into either hub protocol.
///
/// Implemented for every `serde::Serialize` type (MessagePack structs are written as maps keyed by the
/// declared names, as MessagePack-CSharp's contractless resolver does; JSON field names follow the hub's
/// [`NamingPolicy`]), for [`RawValue`] and for [`Arguments`] (written as an array).
pub trait EncodeValue {
    /// Appends the JSON text of the value to `out`.
    fn encode_json(&self, out: &mut Vec<u8>, naming: NamingPolicy) -> Result<(), EncodeError>;
    /// Appends the MessagePack encoding of the value to `out`.
    fn encode_msgpack(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

impl<T: Serialize + ?Sized> EncodeValue for T {
    fn encode_json(&self, out: &mut Vec<u8>, naming: NamingPolicy) -> Result<(), EncodeError> {
        naming::to_json_writer(out, self, naming).map_err(EncodeError::from_display)
    }

    fn encode_msgpack(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
        self.serialize(&mut ser).map_err(EncodeError::from_display)
    }
}

impl EncodeValue for RawValue {
    fn encode_json(&self, out: &mut Vec<u8>, _naming: NamingPolicy) -> Result<(), EncodeError> {
        match self.protocol {
            Protocol::Json => {
                out.extend_from_slice(&self.bytes);
                Ok(())
            }
            Protocol::MessagePack => {
                let mut de = msgpack_deserializer(&self.bytes);
                let mut ser = serde_json::Serializer::new(out);
                serde_transcode::transcode(&mut de, &mut ser).map_err(EncodeError::from_display)
            }
        }
    }

    fn encode_msgpack(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self.protocol {
            Protocol::MessagePack => {
                out.extend_from_slice(&self.bytes);
                Ok(())
            }
            Protocol::Json => {
                let mut de = serde_json::Deserializer::from_slice(&self.bytes);
                let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
                serde_transcode::transcode(&mut de, &mut ser).map_err(EncodeError::from_display)
            }
        }
    }
}

impl EncodeValue for Arguments {
    fn encode_json(&self, out: &mut Vec<u8>, naming: NamingPolicy) -> Result<(), EncodeError> {
        out.push(b'[');
        for (i, value) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            value.encode_json(out, naming)?;
        }
        out.push(b']');
        Ok(())
    }

    fn encode_msgpack(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = u32::try_from(self.0.len()).map_err(EncodeError::from_display)?;
        rmp::encode::write_array_len(out, len).map_err(EncodeError::from_display)?;
        self.0
            .iter()
            .try_for_each(|value| value.encode_msgpack(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names() {
        assert_eq!(Protocol::from_name("json"), Some(Protocol::Json));
        assert_eq!(
            Protocol::from_name("MessagePack"),
            Some(Protocol::MessagePack)
        );
        assert_eq!(Protocol::from_name("blazorpack"), None);
        assert_eq!(
            Protocol::MessagePack.transfer_format(),
            TransferFormat::Binary
        );
    }

    #[test]
    fn raw_values_transcode_between_protocols() {
        let json = RawValue::new(Protocol::Json, Bytes::from_static(br#"{"a":[1,"x",null]}"#));
        let mut packed = Vec::new();
        json.encode_msgpack(&mut packed).unwrap();
        let back = RawValue::new(Protocol::MessagePack, Bytes::from(packed));
        let mut text = Vec::new();
        back.encode_json(&mut text, NamingPolicy::CamelCase)
            .unwrap();
        assert_eq!(text, br#"{"a":[1,"x",null]}"#);
        assert!(RawValue::new(Protocol::Json, Bytes::from_static(b"null")).is_null());
        assert!(RawValue::new(Protocol::MessagePack, Bytes::from_static(&[0xc0])).is_null());
    }
}

/// The argument list of an invocation: a tuple (one element per argument), `()`, or an array, `Vec` or
/// slice of one type. Only list-shaped values qualify, so a single argument cannot be sent by mistake as
/// the whole list (`&text` where `&(text,)` was meant): that does not compile.
///
/// ```
/// fn send<A: hubcast_protocol::ArgumentList + ?Sized>(_: &A) {}
/// send(&("ann", "hello"));
/// send(&("just one",));
/// send(&());
/// send(&["a", "b"]);
/// ```
///
/// ```compile_fail
/// fn send<A: hubcast_protocol::ArgumentList + ?Sized>(_: &A) {}
/// send(&"just one"); // a string is one argument, not a list of them
/// ```
pub trait ArgumentList: serde::Serialize {}

impl ArgumentList for () {}
impl<T: serde::Serialize> ArgumentList for [T] {}
impl<T, const N: usize> ArgumentList for [T; N] where [T; N]: serde::Serialize {}
impl<T: serde::Serialize> ArgumentList for Vec<T> {}
impl<A: ArgumentList + ?Sized> ArgumentList for &A {}

macro_rules! argument_tuples {
    ($(($($name:ident),+)),+) => {
        $(impl<$($name: serde::Serialize),+> ArgumentList for ($($name,)+) {})+
    };
}

argument_tuples!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F),
    (A, B, C, D, E, F, G),
    (A, B, C, D, E, F, G, H),
    (A, B, C, D, E, F, G, H, I),
    (A, B, C, D, E, F, G, H, I, J)
);
