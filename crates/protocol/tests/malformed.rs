//! A catalogue of malformed input: each yields a typed error (never a panic, never a hang).

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use bytes::BytesMut;
use hubcast_protocol::handshake::{self, HandshakeError};
use hubcast_protocol::{HubMessage, MessageReader, Protocol, ProtocolError, decode_all};

const MAX: Option<usize> = Some(32 * 1024);

fn json_err(text: &[u8]) -> ProtocolError {
    let mut input = text.to_vec();
    input.push(0x1e);
    decode_all(Protocol::Json, &input, MAX).unwrap_err()
}

fn pack_err(body: &[u8]) -> ProtocolError {
    let mut input = vec![body.len() as u8];
    input.extend_from_slice(body);
    decode_all(Protocol::MessagePack, &input, MAX).unwrap_err()
}

#[test]
fn json_missing_and_mistyped_fields() {
    use ProtocolError::*;
    assert_eq!(
        json_err(br#"{"target":"x","arguments":[]}"#),
        MissingProperty("type")
    );
    assert_eq!(
        json_err(br#"{"type":1,"target":"x"}"#),
        MissingProperty("arguments")
    );
    assert_eq!(
        json_err(br#"{"type":1,"arguments":[]}"#),
        MissingProperty("target")
    );
    assert_eq!(
        json_err(br#"{"type":4,"target":"x","arguments":[]}"#),
        MissingProperty("invocationId")
    );
    assert_eq!(
        json_err(br#"{"type":2,"item":1}"#),
        MissingProperty("invocationId")
    );
    assert_eq!(
        json_err(br#"{"type":2,"invocationId":"1"}"#),
        MissingProperty("item")
    );
    assert_eq!(json_err(br#"{"type":3}"#), MissingProperty("invocationId"));
    assert_eq!(
        json_err(br#"{"type":5,"invocationId":""}"#),
        MissingProperty("invocationId")
    );
    assert_eq!(json_err(br#"{"type":8}"#), MissingProperty("sequenceId"));
    assert_eq!(
        json_err(br#"{"type":9,"sequenceId":null}"#),
        MissingProperty("sequenceId")
    );
    assert_eq!(
        json_err(br#"{"type":3,"invocationId":"1","result":1,"error":"x"}"#),
        ErrorAndResult
    );
    for bad in [
        &br#"{"type":"1","target":"x","arguments":[]}"#[..],
        br#"{"type":1.5}"#,
        br#"{"type":1,"target":5,"arguments":[]}"#,
        br#"{"type":1,"target":"x","arguments":{}}"#,
        br#"{"type":1,"target":"x","arguments":[],"streamIds":[1]}"#,
        br#"{"type":1,"target":"x","arguments":[],"headers":{"a":1}}"#,
        br#"{"type":7,"allowReconnect":"yes"}"#,
        br#"{"type":8,"sequenceId":"1"}"#,
        br#"[1,2]"#,
        br#"{"type":6"#,
        br#"{"type":6}}"#,
        br#""#,
        br#"{"type":6,"type":6}"#,
    ] {
        assert!(
            matches!(json_err(bad), Json(_)),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn json_invalid_utf8_and_framing() {
    assert_eq!(
        json_err(b"{\"type\":1,\"target\":\"\xff\",\"arguments\":[]}"),
        ProtocolError::InvalidUtf8
    );
    // No record separator at the end of a complete body.
    assert!(matches!(
        decode_all(Protocol::Json, br#"{"type":6}"#, MAX),
        Err(ProtocolError::Json(_))
    ));
    // A separator in the middle of a message cuts it in two invalid halves.
    assert!(matches!(
        decode_all(Protocol::Json, b"{\"type\":\x1e6}\x1e", MAX),
        Err(ProtocolError::Json(_))
    ));
    // Two separators in a row: the empty record is not JSON.
    assert!(matches!(
        decode_all(Protocol::Json, b"{\"type\":6}\x1e\x1e", MAX),
        Err(ProtocolError::Json(_))
    ));
}

#[test]
fn json_deep_nesting_is_kept_raw_and_refused_when_read() {
    let mut text = br#"{"type":1,"target":"x","arguments":["#.to_vec();
    text.extend(std::iter::repeat_n(b'[', 20_000));
    text.extend(std::iter::repeat_n(b']', 20_000));
    text.extend_from_slice(b"]}");
    text.push(0x1e);
    let messages = decode_all(Protocol::Json, &text, None).unwrap();
    let HubMessage::Invocation(inv) = &messages[0] else {
        panic!()
    };
    assert!(
        inv.arguments
            .get(0)
            .unwrap()
            .deserialize::<serde_json::Value>()
            .is_err()
    );
}

#[test]
fn json_oversize() {
    let max = 32 * 1024;
    // A message of exactly the maximum (separator included) is fine; one byte more is not.
    let fits = format!("{{\"type\":6,\"pad\":\"{}\"}}\x1e", "x".repeat(max - 20));
    assert_eq!(fits.len(), max);
    assert_eq!(
        decode_all(Protocol::Json, fits.as_bytes(), Some(max)).unwrap(),
        vec![HubMessage::Ping]
    );
    let over = format!("{{\"type\":6,\"pad\":\"{}\"}}\x1e", "x".repeat(max - 19));
    assert_eq!(
        decode_all(Protocol::Json, over.as_bytes(), Some(max)),
        Err(ProtocolError::MessageTooLarge { max })
    );
    // Refused as soon as `max` bytes are buffered without a separator, before the rest arrives.
    let mut reader = MessageReader::new(Protocol::Json, Some(max));
    reader.push(&vec![b' '; max]);
    assert_eq!(
        reader.next_message(),
        Err(ProtocolError::MessageTooLarge { max })
    );
    // Many small messages in one chunk are fine even when together they exceed the maximum.
    let many = "{\"type\":6}\x1e".repeat(10_000);
    assert_eq!(
        decode_all(Protocol::Json, many.as_bytes(), Some(max))
            .unwrap()
            .len(),
        10_000
    );
    assert_eq!(
        ProtocolError::MessageTooLarge { max }.to_string(),
        "The maximum message size of 32768B was exceeded. The message size can be configured in AddHubOptions."
    );
}

#[test]
fn msgpack_length_prefix() {
    let over = decode_all(Protocol::MessagePack, &[0xff, 0xff, 0xff, 0xff, 0x08], None);
    assert_eq!(over, Err(ProtocolError::LengthPrefixTooLarge));
    let six = decode_all(
        Protocol::MessagePack,
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
        None,
    );
    assert_eq!(six, Err(ProtocolError::LengthPrefixTooLarge));
    assert_eq!(
        ProtocolError::LengthPrefixTooLarge.to_string(),
        "Messages over 2GB in size are not supported."
    );
    // A prefix announcing more than the maximum is refused before the body arrives.
    let mut reader = MessageReader::new(Protocol::MessagePack, Some(1024));
    reader.push(&[0x80, 0x08]);
    assert_eq!(
        reader.next_message(),
        Err(ProtocolError::MessageTooLarge { max: 1024 })
    );
    // Prefix + body of exactly the maximum is accepted.
    let body_len = 1024 - 2;
    let mut exact = vec![
        (body_len & 0x7f) as u8 | 0x80,
        (body_len >> 7) as u8,
        0x92,
        0x06,
    ];
    exact.extend(std::iter::repeat_n(0xa0, 0)); // [6, "..."] padded below
    exact.push(0xda);
    exact.extend_from_slice(&((body_len - 5) as u16).to_be_bytes());
    exact.extend(std::iter::repeat_n(b'x', body_len - 5));
    assert_eq!(exact.len(), 1024);
    assert_eq!(
        decode_all(Protocol::MessagePack, &exact, Some(1024)).unwrap(),
        vec![HubMessage::Ping]
    );
    // Truncated body at end of input.
    assert!(matches!(
        decode_all(Protocol::MessagePack, &[0x05, 0x94, 0x03], None),
        Err(ProtocolError::MessagePack(_))
    ));
}

#[test]
fn msgpack_wrong_shapes() {
    use ProtocolError::*;
    assert_eq!(pack_err(&[0x90]), MissingProperty("type"));
    assert_eq!(
        pack_err(&[0xa1, b'x']),
        WrongType {
            property: "message",
            expected: "array"
        }
    );
    assert_eq!(
        pack_err(&[0x91, 0xa1, b'1']),
        WrongType {
            property: "type",
            expected: "integer"
        }
    );
    assert_eq!(
        pack_err(&[0x94, 0x01, 0x80, 0xc0, 0xa1, b'x']),
        MissingProperty("arguments")
    );
    assert_eq!(
        pack_err(&[0x95, 0x01, 0x80, 0xc0, 0xc0, 0x90]),
        MissingProperty("target")
    );
    assert_eq!(
        pack_err(&[0x95, 0x01, 0x80, 0xc0, 0x01, 0x90]),
        WrongType {
            property: "target",
            expected: "string"
        }
    );
    assert_eq!(
        pack_err(&[0x95, 0x01, 0x80, 0xc0, 0xa1, b'x', 0x80]),
        WrongType {
            property: "arguments",
            expected: "array"
        }
    );
    assert_eq!(
        pack_err(&[0x95, 0x01, 0x90, 0xc0, 0xa1, b'x', 0x90]),
        WrongType {
            property: "headers",
            expected: "map"
        }
    );
    assert_eq!(
        pack_err(&[0x95, 0x01, 0x81, 0xa1, b'k', 0x01, 0xc0, 0xa1, b'x', 0x90]),
        WrongType {
            property: "headers",
            expected: "string"
        }
    );
    assert_eq!(
        pack_err(&[0x95, 0x04, 0x80, 0xc0, 0xa1, b'x', 0x90]),
        MissingProperty("invocationId")
    );
    assert_eq!(
        pack_err(&[0x96, 0x01, 0x80, 0xc0, 0xa1, b'x', 0x90, 0x91, 0x01]),
        WrongType {
            property: "streamIds",
            expected: "string"
        }
    );
    assert_eq!(
        pack_err(&[0x94, 0x03, 0x80, 0xa1, b'1', 0x04]),
        InvalidResultKind
    );
    assert_eq!(
        pack_err(&[0x94, 0x03, 0x80, 0xa1, b'1', 0x03]),
        MissingProperty("result")
    );
    assert_eq!(
        pack_err(&[0x94, 0x03, 0x80, 0xa1, b'1', 0x01]),
        MissingProperty("error")
    );
    assert_eq!(
        pack_err(&[0x93, 0x02, 0x80, 0xa1, b'1']),
        MissingProperty("item")
    );
    assert_eq!(
        pack_err(&[0x93, 0x07, 0xc0, 0x01]),
        WrongType {
            property: "allowReconnect",
            expected: "boolean"
        }
    );
    assert_eq!(pack_err(&[0x91, 0x08]), MissingProperty("sequenceId"));
    assert_eq!(
        pack_err(&[0x92, 0x08, 0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0]),
        WrongType {
            property: "sequenceId",
            expected: "int64"
        }
    );
    assert_eq!(
        pack_err(&[0x95, 0x01, 0x80, 0xc0, 0xa1, 0xff, 0x90]),
        InvalidUtf8
    );
    // Arguments announcing more elements than the body holds, including a huge array32 count.
    assert!(matches!(
        pack_err(&[0x95, 0x01, 0x80, 0xc0, 0xa1, b'x', 0x93, 0x01]),
        MessagePack(_)
    ));
    assert!(matches!(
        pack_err(&[
            0x95, 0x01, 0x80, 0xc0, 0xa1, b'x', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01
        ]),
        MessagePack(_)
    ));
    // A string announcing more bytes than there are.
    assert!(matches!(
        pack_err(&[0x95, 0x01, 0x80, 0xc0, 0xdb, 0xff, 0xff, 0xff, 0xff]),
        MessagePack(_)
    ));
    // The reserved marker 0xc1 inside an argument.
    assert!(matches!(
        pack_err(&[0x95, 0x01, 0x80, 0xc0, 0xa1, b'x', 0x91, 0xc1]),
        MessagePack(_)
    ));
    // A map of maps announcing a huge count inside an argument.
    assert!(matches!(
        pack_err(&[
            0x95, 0x01, 0x80, 0xc0, 0xa1, b'x', 0x91, 0xdf, 0xff, 0xff, 0xff, 0xff
        ]),
        MessagePack(_)
    ));
}

#[test]
fn msgpack_deep_nesting_is_kept_raw_and_refused_when_read() {
    let depth = 100_000;
    let mut body = vec![0x95, 0x01, 0x80, 0xc0, 0xa1, b'x', 0x91];
    body.extend(std::iter::repeat_n(0x91, depth));
    body.push(0xc0);
    let mut input = Vec::new();
    let (prefix, used) = hubcast_protocol::varint::encode(body.len());
    input.extend_from_slice(&prefix[..used]);
    input.extend_from_slice(&body);
    let messages = decode_all(Protocol::MessagePack, &input, None).unwrap();
    let HubMessage::Invocation(inv) = &messages[0] else {
        panic!()
    };
    assert!(
        inv.arguments
            .get(0)
            .unwrap()
            .deserialize::<serde_json::Value>()
            .is_err()
    );
}

#[test]
fn handshake_errors() {
    let parse = |bytes: &[u8]| handshake::parse_request(&mut BytesMut::from(bytes), Some(1024));
    assert!(matches!(
        parse(b"{\"protocol\":\"json\"}\x1e"),
        Err(HandshakeError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"{\"version\":1}\x1e"),
        Err(HandshakeError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"{\"protocol\":1,\"version\":1}\x1e"),
        Err(HandshakeError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"not json\x1e"),
        Err(HandshakeError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"\xff\x1e"),
        Err(HandshakeError::Malformed(_))
    ));
    assert_eq!(parse(b"{\"protocol\":\"json\""), Ok(None));
    assert_eq!(parse(&[b' '; 1024]), Err(HandshakeError::Canceled));
    assert_eq!(
        HandshakeError::Canceled.to_string(),
        "Handshake was canceled."
    );
    assert_eq!(
        HandshakeError::Malformed("x".into()).to_string(),
        "An unexpected error occurred during connection handshake."
    );
}
