//! The JSON hub protocol: one UTF-8 JSON object per message, each followed by the record separator 0x1E.
//!
//! Decoding reads properties in any order and skips unknown ones (the .NET rules, protocol notes §2.4);
//! arguments, items and results are kept as raw slices of the received record. Encoding writes properties
//! in the order the .NET server does: `type`, `headers` (when any), `invocationId` (when any), then the
//! type-specific ones.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Deserializer};

use crate::error::{EncodeError, ProtocolError};
use crate::message::{
    CancelInvocation, Close, Completion, Headers, HubMessage, Invocation, Outcome, StreamItem,
};
use crate::naming::NamingPolicy;
use crate::value::{Arguments, EncodeValue, Protocol, RawValue};

/// The record separator that ends every JSON message (and the handshake).
pub const RECORD_SEPARATOR: u8 = 0x1e;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields<'a> {
    #[serde(rename = "type")]
    kind: Option<i64>,
    #[serde(default)]
    headers: Option<Headers>,
    #[serde(borrow, default)]
    invocation_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    target: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Vec<&'a serde_json::value::RawValue>>,
    #[serde(default)]
    stream_ids: Option<Vec<String>>,
    #[serde(borrow, default, deserialize_with = "present")]
    item: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    allow_reconnect: Option<bool>,
    #[serde(default)]
    sequence_id: Option<i64>,
}

/// Reads a raw value that is present in the object, keeping `null` as `Some("null")`.
fn present<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de serde_json::value::RawValue>, D::Error> {
    <&serde_json::value::RawValue>::deserialize(d).map(Some)
}

/// Decodes one message from `record` (the JSON object, without its 0x1E). Returns `Ok(None)` for an
/// unknown message type, which the protocol says to ignore.
pub fn decode(record: &Bytes) -> Result<Option<HubMessage>, ProtocolError> {
    let text = std::str::from_utf8(record).map_err(|_| ProtocolError::InvalidUtf8)?;
    let fields: Fields<'_> =
        serde_json::from_str(text).map_err(|e| ProtocolError::Json(e.to_string()))?;
    let raw = |value: &serde_json::value::RawValue| -> RawValue {
        let slice = value.get();
        let start = slice.as_ptr() as usize - text.as_ptr() as usize;
        RawValue::new(Protocol::Json, record.slice(start..start + slice.len()))
    };
    let kind = fields.kind.ok_or(ProtocolError::MissingProperty("type"))?;
    let headers = fields.headers.unwrap_or_default();
    let invocation_id = fields
        .invocation_id
        .filter(|id| !id.is_empty())
        .map(Cow::into_owned);
    let required_id = || {
        invocation_id
            .clone()
            .ok_or(ProtocolError::MissingProperty("invocationId"))
    };
    let message = match kind {
        1 | 4 => {
            let invocation = Invocation {
                headers,
                invocation_id: invocation_id.clone(),
                target: fields
                    .target
                    .ok_or(ProtocolError::MissingProperty("target"))?
                    .into_owned(),
                arguments: Arguments(
                    fields
                        .arguments
                        .ok_or(ProtocolError::MissingProperty("arguments"))?
                        .into_iter()
                        .map(raw)
                        .collect(),
                ),
                stream_ids: fields.stream_ids.unwrap_or_default(),
            };
            if kind == 1 {
                HubMessage::Invocation(invocation)
            } else {
                required_id()?;
                HubMessage::StreamInvocation(invocation)
            }
        }
        2 => HubMessage::StreamItem(StreamItem {
            invocation_id: required_id()?,
            headers,
            item: raw(fields.item.ok_or(ProtocolError::MissingProperty("item"))?),
        }),
        3 => {
            let outcome = match (fields.error, fields.result) {
                (Some(_), Some(_)) => return Err(ProtocolError::ErrorAndResult),
                (Some(error), None) => Outcome::Error(error),
                (None, Some(result)) => Outcome::Result(raw(result)),
                (None, None) => Outcome::Void,
            };
            HubMessage::Completion(Completion {
                invocation_id: required_id()?,
                headers,
                outcome,
            })
        }
        5 => HubMessage::CancelInvocation(CancelInvocation {
            invocation_id: required_id()?,
            headers,
        }),
        6 => HubMessage::Ping,
        7 => HubMessage::Close(Close {
            error: fields.error,
            allow_reconnect: fields.allow_reconnect.unwrap_or(false),
        }),
        8 => HubMessage::Ack(
            fields
                .sequence_id
                .ok_or(ProtocolError::MissingProperty("sequenceId"))?,
        ),
        9 => HubMessage::Sequence(
            fields
                .sequence_id
                .ok_or(ProtocolError::MissingProperty("sequenceId"))?,
        ),
        _ => return Ok(None),
    };
    Ok(Some(message))
}

/// Encodes `message` followed by 0x1E, appending to `out`.
pub fn encode_into<A: EncodeValue, V: EncodeValue>(
    message: &HubMessage<A, V>,
    naming: NamingPolicy,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.extend_from_slice(b"{\"type\":");
    out.push(b'0' + message.type_id());
    match message {
        HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
            write_common(out, &inv.headers, inv.invocation_id.as_deref());
            out.extend_from_slice(b",\"target\":");
            write_str(out, &inv.target);
            out.extend_from_slice(b",\"arguments\":");
            inv.arguments.encode_json(out, naming)?;
            if !inv.stream_ids.is_empty() {
                out.extend_from_slice(b",\"streamIds\":[");
                for (i, id) in inv.stream_ids.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, id);
                }
                out.push(b']');
            }
        }
        HubMessage::StreamItem(item) => {
            write_common(out, &item.headers, Some(&item.invocation_id));
            out.extend_from_slice(b",\"item\":");
            item.item.encode_json(out, naming)?;
        }
        HubMessage::Completion(completion) => {
            write_common(out, &completion.headers, Some(&completion.invocation_id));
            match &completion.outcome {
                Outcome::Void => {}
                Outcome::Result(value) => {
                    out.extend_from_slice(b",\"result\":");
                    value.encode_json(out, naming)?;
                }
                Outcome::Error(error) => {
                    out.extend_from_slice(b",\"error\":");
                    write_str(out, error);
                }
            }
        }
        HubMessage::CancelInvocation(cancel) => {
            write_common(out, &cancel.headers, Some(&cancel.invocation_id));
        }
        HubMessage::Ping => {}
        HubMessage::Close(close) => {
            if let Some(error) = &close.error {
                out.extend_from_slice(b",\"error\":");
                write_str(out, error);
            }
            if close.allow_reconnect {
                out.extend_from_slice(b",\"allowReconnect\":true");
            }
        }
        HubMessage::Ack(id) | HubMessage::Sequence(id) => {
            out.extend_from_slice(b",\"sequenceId\":");
            out.extend_from_slice(id.to_string().as_bytes());
        }
    }
    out.push(b'}');
    out.push(RECORD_SEPARATOR);
    Ok(())
}

fn write_common(out: &mut Vec<u8>, headers: &Headers, invocation_id: Option<&str>) {
    if !headers.is_empty() {
        out.extend_from_slice(b",\"headers\":{");
        for (i, (key, value)) in headers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, key);
            out.push(b':');
            write_str(out, value);
        }
        out.push(b'}');
    }
    if let Some(id) = invocation_id.filter(|id| !id.is_empty()) {
        out.extend_from_slice(b",\"invocationId\":");
        write_str(out, id);
    }
}

/// Writes a JSON string literal. Writing a `&str` into a `Vec` cannot fail.
fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}
