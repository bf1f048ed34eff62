//! The MessagePack hub protocol: each message is a VarInt length prefix followed by one MessagePack
//! array whose element positions are fixed per type (protocol notes §2.5).
//!
//! The reader is liberal where the official clients differ (5- or 6-element Invocation, 2- or 3-element
//! Close, any integer width, extra trailing elements ignored) and the writer always emits the forms the
//! .NET server emits (6-element Invocation with `[]` stream ids, 3-element Close, Ping `91 06`).
//! Arguments, items and results are located by skipping over them and kept as raw byte ranges.

use bytes::Bytes;
use rmp::Marker;

use crate::error::{EncodeError, ProtocolError};
use crate::message::{
    CancelInvocation, Close, Completion, Headers, HubMessage, Invocation, Outcome, StreamItem,
};
use crate::value::{Arguments, EncodeValue, Protocol, RawValue};
use crate::varint;

const RESULT_KIND_ERROR: i64 = 1;
const RESULT_KIND_VOID: i64 = 2;
const RESULT_KIND_NON_VOID: i64 = 3;

/// Decodes one message body (the MessagePack array, without its length prefix). Returns `Ok(None)` for
/// an unknown message type, which the protocol says to ignore.
pub fn decode(body: &Bytes) -> Result<Option<HubMessage>, ProtocolError> {
    let mut r = Reader { buf: body, pos: 0 };
    let len = r.array_len("message")?;
    let need = |min: u32, property: &'static str| {
        if len < min {
            Err(ProtocolError::MissingProperty(property))
        } else {
            Ok(())
        }
    };
    need(1, "type")?;
    let kind = r.int("type")?;
    let message = match kind {
        1 | 4 => {
            need(5, "arguments")?;
            let headers = r.headers()?;
            let invocation_id = r.invocation_id()?;
            let target = r.str("target")?.to_owned();
            let count = r.array_len("arguments")?;
            let mut arguments = Vec::with_capacity(count.min(64) as usize);
            for _ in 0..count {
                arguments.push(r.raw(body)?);
            }
            let mut stream_ids = Vec::new();
            if len >= 6 {
                for _ in 0..r.array_len("streamIds")? {
                    stream_ids.push(r.str("streamIds")?.to_owned());
                }
            }
            let invocation = Invocation {
                headers,
                invocation_id,
                target,
                arguments: Arguments(arguments),
                stream_ids,
            };
            if kind == 1 {
                HubMessage::Invocation(invocation)
            } else {
                if invocation.invocation_id.is_none() {
                    return Err(ProtocolError::MissingProperty("invocationId"));
                }
                HubMessage::StreamInvocation(invocation)
            }
        }
        2 => {
            need(4, "item")?;
            HubMessage::StreamItem(StreamItem {
                headers: r.headers()?,
                invocation_id: r.required_invocation_id()?,
                item: r.raw(body)?,
            })
        }
        3 => {
            need(4, "resultKind")?;
            let headers = r.headers()?;
            let invocation_id = r.required_invocation_id()?;
            let outcome = match r.int("resultKind")? {
                RESULT_KIND_ERROR => {
                    need(5, "error")?;
                    Outcome::Error(r.str("error")?.to_owned())
                }
                RESULT_KIND_VOID => Outcome::Void,
                RESULT_KIND_NON_VOID => {
                    need(5, "result")?;
                    Outcome::Result(r.raw(body)?)
                }
                _ => return Err(ProtocolError::InvalidResultKind),
            };
            HubMessage::Completion(Completion {
                headers,
                invocation_id,
                outcome,
            })
        }
        5 => {
            need(3, "invocationId")?;
            HubMessage::CancelInvocation(CancelInvocation {
                headers: r.headers()?,
                invocation_id: r.required_invocation_id()?,
            })
        }
        6 => HubMessage::Ping,
        7 => {
            need(2, "error")?;
            let error = r.str_or_nil("error")?.map(str::to_owned);
            let allow_reconnect = if len >= 3 {
                r.bool("allowReconnect")?
            } else {
                false
            };
            HubMessage::Close(Close {
                error,
                allow_reconnect,
            })
        }
        8 => {
            need(2, "sequenceId")?;
            HubMessage::Ack(r.int("sequenceId")?)
        }
        9 => {
            need(2, "sequenceId")?;
            HubMessage::Sequence(r.int("sequenceId")?)
        }
        _ => return Ok(None),
    };
    Ok(Some(message))
}

/// Encodes `message` with its VarInt length prefix, appending to `out`.
pub fn encode_into<A: EncodeValue, V: EncodeValue>(
    message: &HubMessage<A, V>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    // Reserve room for the longest prefix, write the body, then close the gap the shorter prefix leaves.
    let start = out.len();
    out.extend_from_slice(&[0; varint::MAX_LEN]);
    encode_body(message, out)?;
    let (prefix, used) = varint::encode(out.len() - start - varint::MAX_LEN);
    out.copy_within(start + varint::MAX_LEN.., start + used);
    out.truncate(out.len() - (varint::MAX_LEN - used));
    for (slot, byte) in out.iter_mut().skip(start).zip(prefix.iter().take(used)) {
        *slot = *byte;
    }
    Ok(())
}

/// Encodes `message` into a fresh buffer and returns the framed bytes without copying them again.
pub fn encode(
    message: &HubMessage<impl EncodeValue, impl EncodeValue>,
) -> Result<Bytes, EncodeError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0; varint::MAX_LEN]);
    encode_body(message, &mut out)?;
    let body_len = out.len() - varint::MAX_LEN;
    let (prefix, used) = varint::encode(body_len);
    let start = varint::MAX_LEN - used;
    for (slot, byte) in out.iter_mut().skip(start).zip(prefix.iter().take(used)) {
        *slot = *byte;
    }
    Ok(Bytes::from(out).slice(start..))
}

fn encode_body<A: EncodeValue, V: EncodeValue>(
    message: &HubMessage<A, V>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    use rmp::encode as w;
    let kind = message.type_id();
    match message {
        HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
            w::write_array_len(out, 6).map_err(enc)?;
            w::write_uint(out, u64::from(kind)).map_err(enc)?;
            write_headers(out, &inv.headers)?;
            match inv.invocation_id.as_deref().filter(|id| !id.is_empty()) {
                Some(id) => w::write_str(out, id).map_err(enc)?,
                None => w::write_nil(out).map_err(enc)?,
            }
            w::write_str(out, &inv.target).map_err(enc)?;
            inv.arguments.encode_msgpack(out)?;
            let count = u32::try_from(inv.stream_ids.len()).map_err(enc)?;
            w::write_array_len(out, count).map_err(enc)?;
            for id in &inv.stream_ids {
                w::write_str(out, id).map_err(enc)?;
            }
        }
        HubMessage::StreamItem(item) => {
            w::write_array_len(out, 4).map_err(enc)?;
            w::write_uint(out, u64::from(kind)).map_err(enc)?;
            write_headers(out, &item.headers)?;
            w::write_str(out, &item.invocation_id).map_err(enc)?;
            item.item.encode_msgpack(out)?;
        }
        HubMessage::Completion(completion) => {
            let len = if matches!(completion.outcome, Outcome::Void) {
                4
            } else {
                5
            };
            w::write_array_len(out, len).map_err(enc)?;
            w::write_uint(out, u64::from(kind)).map_err(enc)?;
            write_headers(out, &completion.headers)?;
            w::write_str(out, &completion.invocation_id).map_err(enc)?;
            match &completion.outcome {
                Outcome::Void => w::write_uint(out, RESULT_KIND_VOID as u64)
                    .map(drop)
                    .map_err(enc)?,
                Outcome::Error(error) => {
                    w::write_uint(out, RESULT_KIND_ERROR as u64).map_err(enc)?;
                    w::write_str(out, error).map_err(enc)?;
                }
                Outcome::Result(value) => {
                    w::write_uint(out, RESULT_KIND_NON_VOID as u64).map_err(enc)?;
                    value.encode_msgpack(out)?;
                }
            }
        }
        HubMessage::CancelInvocation(cancel) => {
            w::write_array_len(out, 3).map_err(enc)?;
            w::write_uint(out, u64::from(kind)).map_err(enc)?;
            write_headers(out, &cancel.headers)?;
            w::write_str(out, &cancel.invocation_id).map_err(enc)?;
        }
        HubMessage::Ping => {
            w::write_array_len(out, 1).map_err(enc)?;
            w::write_uint(out, u64::from(kind)).map_err(enc)?;
        }
        HubMessage::Close(close) => {
            w::write_array_len(out, 3).map_err(enc)?;
            w::write_uint(out, u64::from(kind)).map_err(enc)?;
            match &close.error {
                Some(error) => w::write_str(out, error).map_err(enc)?,
                None => w::write_nil(out).map_err(enc)?,
            }
            w::write_bool(out, close.allow_reconnect).map_err(enc)?;
        }
        HubMessage::Ack(id) | HubMessage::Sequence(id) => {
            w::write_array_len(out, 2).map_err(enc)?;
            w::write_uint(out, u64::from(kind)).map_err(enc)?;
            w::write_sint(out, *id).map_err(enc)?;
        }
    }
    Ok(())
}

fn write_headers(out: &mut Vec<u8>, headers: &Headers) -> Result<(), EncodeError> {
    let len = u32::try_from(headers.len()).map_err(enc)?;
    rmp::encode::write_map_len(out, len).map_err(enc)?;
    for (key, value) in headers {
        rmp::encode::write_str(out, key).map_err(enc)?;
        rmp::encode::write_str(out, value).map_err(enc)?;
    }
    Ok(())
}

/// A cursor over one message body with typed, bounds-checked reads.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn truncated() -> ProtocolError {
    ProtocolError::MessagePack("Unexpected end of message.".into())
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn be(&mut self, n: usize) -> Result<u64, ProtocolError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn marker(&mut self) -> Result<Marker, ProtocolError> {
        Ok(Marker::from_u8(self.be(1)? as u8))
    }

    fn len(&mut self, n: usize) -> Result<usize, ProtocolError> {
        usize::try_from(self.be(n)?).map_err(|_| truncated())
    }

    fn array_len(&mut self, property: &'static str) -> Result<u32, ProtocolError> {
        let len = match self.marker()? {
            Marker::FixArray(n) => usize::from(n),
            Marker::Array16 => self.len(2)?,
            Marker::Array32 => self.len(4)?,
            _ => return Err(wrong(property, "array")),
        };
        // Every element takes at least one byte: refuse lengths the remaining bytes cannot hold.
        if len > self.buf.len().saturating_sub(self.pos) {
            return Err(truncated());
        }
        u32::try_from(len).map_err(|_| truncated())
    }

    fn int(&mut self, property: &'static str) -> Result<i64, ProtocolError> {
        let value = match self.marker()? {
            Marker::FixPos(n) => i64::from(n),
            Marker::FixNeg(n) => i64::from(n),
            Marker::U8 => self.be(1)? as i64,
            Marker::U16 => self.be(2)? as i64,
            Marker::U32 => self.be(4)? as i64,
            Marker::U64 => i64::try_from(self.be(8)?).map_err(|_| wrong(property, "int64"))?,
            Marker::I8 => i64::from(self.be(1)? as u8 as i8),
            Marker::I16 => i64::from(self.be(2)? as u16 as i16),
            Marker::I32 => i64::from(self.be(4)? as u32 as i32),
            Marker::I64 => self.be(8)? as i64,
            _ => return Err(wrong(property, "integer")),
        };
        Ok(value)
    }

    fn bool(&mut self, property: &'static str) -> Result<bool, ProtocolError> {
        match self.marker()? {
            Marker::True => Ok(true),
            Marker::False => Ok(false),
            _ => Err(wrong(property, "boolean")),
        }
    }

    fn str_or_nil(&mut self, property: &'static str) -> Result<Option<&'a str>, ProtocolError> {
        let len = match self.marker()? {
            Marker::Null => return Ok(None),
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 => self.len(1)?,
            Marker::Str16 => self.len(2)?,
            Marker::Str32 => self.len(4)?,
            _ => return Err(wrong(property, "string")),
        };
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ProtocolError::InvalidUtf8)
    }

    fn str(&mut self, property: &'static str) -> Result<&'a str, ProtocolError> {
        self.str_or_nil(property)?
            .ok_or(ProtocolError::MissingProperty(property))
    }

    fn invocation_id(&mut self) -> Result<Option<String>, ProtocolError> {
        Ok(self
            .str_or_nil("invocationId")?
            .filter(|id| !id.is_empty())
            .map(str::to_owned))
    }

    fn required_invocation_id(&mut self) -> Result<String, ProtocolError> {
        self.invocation_id()?
            .ok_or(ProtocolError::MissingProperty("invocationId"))
    }

    fn headers(&mut self) -> Result<Headers, ProtocolError> {
        let len = match self.marker()? {
            Marker::FixMap(n) => usize::from(n),
            Marker::Map16 => self.len(2)?,
            Marker::Map32 => self.len(4)?,
            _ => return Err(wrong("headers", "map")),
        };
        let mut headers = Headers::new();
        for _ in 0..len {
            let key = self.str("headers")?.to_owned();
            let value = self.str("headers")?.to_owned();
            headers.insert(key, value);
        }
        Ok(headers)
    }

    /// Skips one value and returns it as a raw slice of `body`.
    fn raw(&mut self, body: &Bytes) -> Result<RawValue, ProtocolError> {
        let start = self.pos;
        self.skip_value()?;
        Ok(RawValue::new(
            Protocol::MessagePack,
            body.slice(start..self.pos),
        ))
    }

    /// Skips one complete value, iteratively (nesting depth cannot exhaust the stack).
    fn skip_value(&mut self) -> Result<(), ProtocolError> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let children: u64 = match self.marker()? {
                Marker::FixPos(_)
                | Marker::FixNeg(_)
                | Marker::Null
                | Marker::True
                | Marker::False => 0,
                Marker::U8 | Marker::I8 => self.skip(1)?,
                Marker::U16 | Marker::I16 => self.skip(2)?,
                Marker::U32 | Marker::I32 | Marker::F32 => self.skip(4)?,
                Marker::U64 | Marker::I64 | Marker::F64 => self.skip(8)?,
                Marker::FixStr(n) => self.skip(usize::from(n))?,
                Marker::Str8 | Marker::Bin8 => self.skip_sized(1, 0)?,
                Marker::Str16 | Marker::Bin16 => self.skip_sized(2, 0)?,
                Marker::Str32 | Marker::Bin32 => self.skip_sized(4, 0)?,
                Marker::FixArray(n) => u64::from(n),
                Marker::Array16 => self.be(2)?,
                Marker::Array32 => self.be(4)?,
                Marker::FixMap(n) => 2 * u64::from(n),
                Marker::Map16 => 2 * self.be(2)?,
                Marker::Map32 => 2 * self.be(4)?,
                Marker::FixExt1 => self.skip(2)?,
                Marker::FixExt2 => self.skip(3)?,
                Marker::FixExt4 => self.skip(5)?,
                Marker::FixExt8 => self.skip(9)?,
                Marker::FixExt16 => self.skip(17)?,
                Marker::Ext8 => self.skip_sized(1, 1)?,
                Marker::Ext16 => self.skip_sized(2, 1)?,
                Marker::Ext32 => self.skip_sized(4, 1)?,
                Marker::Reserved => {
                    return Err(ProtocolError::MessagePack(
                        "Invalid MessagePack marker 0xc1.".into(),
                    ));
                }
            };
            pending += children;
            // Every pending value takes at least one byte: a count the rest cannot hold is truncated.
            if pending > (self.buf.len() - self.pos) as u64 {
                return Err(truncated());
            }
        }
        Ok(())
    }

    /// Skips `n` bytes; returns 0 children.
    fn skip(&mut self, n: usize) -> Result<u64, ProtocolError> {
        self.take(n).map(|_| 0)
    }

    /// Skips a length-prefixed payload (`len_bytes` of length, then `extra` type bytes, then the data).
    fn skip_sized(&mut self, len_bytes: usize, extra: usize) -> Result<u64, ProtocolError> {
        let len = self.len(len_bytes)?;
        self.skip(len.checked_add(extra).ok_or_else(truncated)?)
    }
}

fn wrong(property: &'static str, expected: &'static str) -> ProtocolError {
    ProtocolError::WrongType { property, expected }
}

fn enc(e: impl std::fmt::Display) -> EncodeError {
    EncodeError::from_display(e)
}
