//! Byte-exact vectors: what the official clients write (read back into the expected messages) and what
//! the .NET server writes (produced by our encoder byte for byte). Sources: HubProtocol.md, the
//! `@microsoft/signalr` 10.x JSON writer (`JSON.stringify` of objects whose keys are in alphabetical
//! order) and `@microsoft/signalr-protocol-msgpack` (5-element Invocation without stream ids, 2-element
//! Close).

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use bytes::Bytes;
use hubcast_protocol::{
    CancelInvocation, Close, Completion, Headers, HubMessage, Invocation, NamingPolicy, Outcome,
    Protocol, RawValue, StreamItem, decode_all, encode_message,
};

fn json(text: &str) -> RawValue {
    RawValue::new(Protocol::Json, Bytes::copy_from_slice(text.as_bytes()))
}

fn pack(bytes: &[u8]) -> RawValue {
    RawValue::new(Protocol::MessagePack, Bytes::copy_from_slice(bytes))
}

fn framed(body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    let mut out = vec![body.len() as u8];
    out.extend_from_slice(body);
    out
}

fn one(protocol: Protocol, bytes: &[u8]) -> HubMessage {
    let mut messages = decode_all(protocol, bytes, Some(32 * 1024)).unwrap();
    assert_eq!(messages.len(), 1, "{bytes:02x?}");
    messages.remove(0)
}

fn invocation(id: Option<&str>, target: &str, args: Vec<RawValue>, streams: &[&str]) -> Invocation {
    Invocation {
        headers: Headers::new(),
        invocation_id: id.map(str::to_owned),
        target: target.to_owned(),
        arguments: hubcast_protocol::Arguments(args),
        stream_ids: streams.iter().map(|s| s.to_string()).collect(),
    }
}

fn completion(id: &str, outcome: Outcome) -> HubMessage {
    HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id: id.to_owned(),
        outcome,
    })
}

#[test]
fn json_as_the_js_client_writes_it() {
    let cases: Vec<(&str, HubMessage)> = vec![
        (
            "{\"arguments\":[\"hi\",42],\"invocationId\":\"0\",\"target\":\"Echo\",\"type\":1}\x1e",
            HubMessage::Invocation(invocation(
                Some("0"),
                "Echo",
                vec![json("\"hi\""), json("42")],
                &[],
            )),
        ),
        (
            "{\"arguments\":[],\"target\":\"Send\",\"type\":1}\x1e",
            HubMessage::Invocation(invocation(None, "Send", vec![], &[])),
        ),
        (
            "{\"arguments\":[],\"invocationId\":\"3\",\"streamIds\":[\"4\"],\"target\":\"StreamingConcat\",\"type\":1}\x1e",
            HubMessage::Invocation(invocation(Some("3"), "StreamingConcat", vec![], &["4"])),
        ),
        (
            "{\"arguments\":[],\"invocationId\":\"1\",\"target\":\"Stream\",\"type\":4}\x1e",
            HubMessage::StreamInvocation(invocation(Some("1"), "Stream", vec![], &[])),
        ),
        (
            "{\"invocationId\":\"4\",\"item\":{\"a\":[1,2]},\"type\":2}\x1e",
            HubMessage::StreamItem(StreamItem {
                headers: Headers::new(),
                invocation_id: "4".into(),
                item: json("{\"a\":[1,2]}"),
            }),
        ),
        (
            "{\"invocationId\":\"4\",\"type\":3}\x1e",
            completion("4", Outcome::Void),
        ),
        (
            "{\"invocationId\":\"s1\",\"result\":42,\"type\":3}\x1e",
            completion("s1", Outcome::Result(json("42"))),
        ),
        (
            "{\"invocationId\":\"s2\",\"result\":null,\"type\":3}\x1e",
            completion("s2", Outcome::Result(json("null"))),
        ),
        (
            "{\"error\":\"Client didn't provide a result.\",\"invocationId\":\"s3\",\"type\":3}\x1e",
            completion(
                "s3",
                Outcome::Error("Client didn't provide a result.".into()),
            ),
        ),
        (
            "{\"invocationId\":\"1\",\"type\":5}\x1e",
            HubMessage::CancelInvocation(CancelInvocation {
                headers: Headers::new(),
                invocation_id: "1".into(),
            }),
        ),
        ("{\"type\":6}\x1e", HubMessage::Ping),
        ("{\"type\":7}\x1e", HubMessage::Close(Close::default())),
        ("{\"sequenceId\":5,\"type\":8}\x1e", HubMessage::Ack(5)),
        ("{\"sequenceId\":1,\"type\":9}\x1e", HubMessage::Sequence(1)),
    ];
    for (wire, expected) in cases {
        assert_eq!(one(Protocol::Json, wire.as_bytes()), expected, "{wire}");
    }
}

#[test]
fn json_headers_unknown_properties_and_whitespace() {
    let wire = "{ \"type\" : 1, \"headers\": {\"traceparent\":\"00-ab\"}, \"x\": {\"deep\":[1]},\n \
                \"target\": \"M\", \"arguments\": [ 1 , \"two\" ] }\x1e";
    let HubMessage::Invocation(inv) = one(Protocol::Json, wire.as_bytes()) else {
        panic!()
    };
    assert_eq!(
        inv.headers.get("traceparent").map(String::as_str),
        Some("00-ab")
    );
    assert_eq!(
        inv.arguments.get(1).unwrap().as_bytes().as_ref(),
        b"\"two\""
    );
    assert_eq!(inv.invocation_id, None);
    // An empty invocation id means non-blocking.
    let HubMessage::Invocation(inv) = one(
        Protocol::Json,
        b"{\"type\":1,\"invocationId\":\"\",\"target\":\"M\",\"arguments\":[]}\x1e",
    ) else {
        panic!()
    };
    assert_eq!(inv.invocation_id, None);
    // Unknown message types are skipped; the next message is still read.
    let messages = decode_all(
        Protocol::Json,
        b"{\"type\":99,\"foo\":1}\x1e{\"type\":6}\x1e",
        None,
    )
    .unwrap();
    assert_eq!(messages, vec![HubMessage::Ping]);
}

#[test]
fn json_as_the_dotnet_server_writes_it() {
    let naming = NamingPolicy::CamelCase;
    let enc = |m: &HubMessage<(&str, i32), Option<()>>| {
        encode_message(Protocol::Json, m, naming).unwrap()
    };
    let call = HubMessage::Invocation(Invocation::new("ReceiveMessage", ("ann", 7)));
    assert_eq!(
        &enc(&call)[..],
        b"{\"type\":1,\"target\":\"ReceiveMessage\",\"arguments\":[\"ann\",7]}\x1e"
    );
    let void = HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id: "1".into(),
        outcome: Outcome::Result(None),
    });
    assert_eq!(
        &enc(&void)[..],
        b"{\"type\":3,\"invocationId\":\"1\",\"result\":null}\x1e"
    );
    let error = HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id: "2".into(),
        outcome: Outcome::Error("Unknown hub method 'x'".into()),
    });
    assert_eq!(
        &enc(&error)[..],
        b"{\"type\":3,\"invocationId\":\"2\",\"error\":\"Unknown hub method 'x'\"}\x1e"
    );
    let end = HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id: "3".into(),
        outcome: Outcome::Void,
    });
    assert_eq!(&enc(&end)[..], b"{\"type\":3,\"invocationId\":\"3\"}\x1e");
    let item = HubMessage::StreamItem(StreamItem {
        headers: Headers::new(),
        invocation_id: "4".into(),
        item: None,
    });
    assert_eq!(
        &enc(&item)[..],
        b"{\"type\":2,\"invocationId\":\"4\",\"item\":null}\x1e"
    );
    assert_eq!(&enc(&HubMessage::Ping)[..], b"{\"type\":6}\x1e");
    let close = HubMessage::Close(Close {
        error: Some("Connection closed with an error.".into()),
        allow_reconnect: true,
    });
    assert_eq!(
        &enc(&close)[..],
        b"{\"type\":7,\"error\":\"Connection closed with an error.\",\"allowReconnect\":true}\x1e"
    );
    assert_eq!(
        &enc(&HubMessage::Close(Close::default()))[..],
        b"{\"type\":7}\x1e"
    );
    assert_eq!(
        &enc(&HubMessage::Ack(12))[..],
        b"{\"type\":8,\"sequenceId\":12}\x1e"
    );
    assert_eq!(
        &enc(&HubMessage::Sequence(3))[..],
        b"{\"type\":9,\"sequenceId\":3}\x1e"
    );
    let mut headers = Headers::new();
    headers.insert("a".into(), "b\"c".into());
    let with_headers = HubMessage::Invocation(Invocation {
        headers,
        invocation_id: Some("s1".into()),
        target: "Result".into(),
        arguments: ("x", 1),
        stream_ids: vec!["9".into()],
    });
    assert_eq!(
        &enc(&with_headers)[..],
        b"{\"type\":1,\"headers\":{\"a\":\"b\\\"c\"},\"invocationId\":\"s1\",\"target\":\"Result\",\"arguments\":[\"x\",1],\"streamIds\":[\"9\"]}\x1e"
    );
}

#[test]
fn msgpack_as_the_js_client_writes_it() {
    let cases: Vec<(Vec<u8>, HubMessage)> = vec![
        // [1, {}, "0", "Echo", ["hi"]]: five elements, no stream ids.
        (
            framed(&[
                0x95, 0x01, 0x80, 0xa1, 0x30, 0xa4, b'E', b'c', b'h', b'o', 0x91, 0xa2, b'h', b'i',
            ]),
            HubMessage::Invocation(invocation(
                Some("0"),
                "Echo",
                vec![pack(&[0xa2, b'h', b'i'])],
                &[],
            )),
        ),
        // [1, {}, nil, "Send", []]
        (
            framed(&[0x95, 0x01, 0x80, 0xc0, 0xa4, b'S', b'e', b'n', b'd', 0x90]),
            HubMessage::Invocation(invocation(None, "Send", vec![], &[])),
        ),
        // [1, {}, "3", "C", [], ["4"]]: six elements with a stream id.
        (
            framed(&[
                0x96, 0x01, 0x80, 0xa1, b'3', 0xa1, b'C', 0x90, 0x91, 0xa1, b'4',
            ]),
            HubMessage::Invocation(invocation(Some("3"), "C", vec![], &["4"])),
        ),
        // [4, {}, "1", "S", [1]]
        (
            framed(&[0x95, 0x04, 0x80, 0xa1, b'1', 0xa1, b'S', 0x91, 0x01]),
            HubMessage::StreamInvocation(invocation(Some("1"), "S", vec![pack(&[0x01])], &[])),
        ),
        // [2, {}, "2", "x"]
        (
            framed(&[0x94, 0x02, 0x80, 0xa1, b'2', 0xa1, b'x']),
            HubMessage::StreamItem(StreamItem {
                headers: Headers::new(),
                invocation_id: "2".into(),
                item: pack(&[0xa1, b'x']),
            }),
        ),
        // [3, {}, "2", 2]: void completion (upload stream end).
        (
            framed(&[0x94, 0x03, 0x80, 0xa1, b'2', 0x02]),
            completion("2", Outcome::Void),
        ),
        // The spec's non-void example [3, {}, "xyz", 3, 42].
        (
            framed(&[0x95, 0x03, 0x80, 0xa3, b'x', b'y', b'z', 0x03, 0x2a]),
            completion("xyz", Outcome::Result(pack(&[0x2a]))),
        ),
        // [3, {}, "s1", 1, "e"]
        (
            framed(&[0x95, 0x03, 0x80, 0xa2, b's', b'1', 0x01, 0xa1, b'e']),
            completion("s1", Outcome::Error("e".into())),
        ),
        // [5, {}, "1"]
        (
            framed(&[0x93, 0x05, 0x80, 0xa1, b'1']),
            HubMessage::CancelInvocation(CancelInvocation {
                headers: Headers::new(),
                invocation_id: "1".into(),
            }),
        ),
        (framed(&[0x91, 0x06]), HubMessage::Ping),
        // [7, nil]: the JS client's two-element Close.
        (
            framed(&[0x92, 0x07, 0xc0]),
            HubMessage::Close(Close::default()),
        ),
        // [7, "bye", true]
        (
            framed(&[0x93, 0x07, 0xa3, b'b', b'y', b'e', 0xc3]),
            HubMessage::Close(Close {
                error: Some("bye".into()),
                allow_reconnect: true,
            }),
        ),
        (framed(&[0x92, 0x08, 0x05]), HubMessage::Ack(5)),
        // Sequence id written as uint32.
        (
            framed(&[0x92, 0x09, 0xce, 0x00, 0x01, 0x00, 0x00]),
            HubMessage::Sequence(65_536),
        ),
        // Type written as uint8, int16 and uint64: any integer width is accepted.
        (framed(&[0x91, 0xcc, 0x06]), HubMessage::Ping),
        (framed(&[0x91, 0xd1, 0x00, 0x06]), HubMessage::Ping),
        (
            framed(&[0x91, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x06]),
            HubMessage::Ping,
        ),
    ];
    for (wire, expected) in cases {
        assert_eq!(one(Protocol::MessagePack, &wire), expected, "{wire:02x?}");
    }
}

#[test]
fn msgpack_as_the_dotnet_server_writes_it() {
    let enc = |m: &HubMessage<Vec<i32>, Option<i32>>| {
        encode_message(Protocol::MessagePack, m, NamingPolicy::CamelCase)
            .unwrap()
            .to_vec()
    };
    let void = HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id: "1".into(),
        outcome: Outcome::Result(None),
    });
    // The protocol notes' example, literally: VarInt 7, then [3, {}, "1", 3, nil].
    assert_eq!(enc(&void), [0x07, 0x95, 0x03, 0x80, 0xa1, 0x31, 0x03, 0xc0]);
    let result = HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id: "xyz".into(),
        outcome: Outcome::Result(Some(42)),
    });
    assert_eq!(
        enc(&result),
        framed(&[0x95, 0x03, 0x80, 0xa3, b'x', b'y', b'z', 0x03, 0x2a])
    );
    let stream_end = HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id: "1".into(),
        outcome: Outcome::Void,
    });
    assert_eq!(
        enc(&stream_end),
        framed(&[0x94, 0x03, 0x80, 0xa1, 0x31, 0x02])
    );
    let error = HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id: "1".into(),
        outcome: Outcome::Error("e".into()),
    });
    assert_eq!(
        enc(&error),
        framed(&[0x95, 0x03, 0x80, 0xa1, 0x31, 0x01, 0xa1, b'e'])
    );
    // Invocations always carry six elements, stream ids `[]` when none.
    let call = HubMessage::Invocation(Invocation::new("M", vec![1, 2]));
    assert_eq!(
        enc(&call),
        framed(&[0x96, 0x01, 0x80, 0xc0, 0xa1, b'M', 0x92, 0x01, 0x02, 0x90])
    );
    assert_eq!(enc(&HubMessage::Ping), [0x02, 0x91, 0x06]);
    assert_eq!(
        enc(&HubMessage::Close(Close::default())),
        framed(&[0x93, 0x07, 0xc0, 0xc2])
    );
    assert_eq!(
        enc(&HubMessage::Close(Close {
            error: Some("x".into()),
            allow_reconnect: true
        })),
        framed(&[0x93, 0x07, 0xa1, b'x', 0xc3])
    );
    assert_eq!(enc(&HubMessage::Ack(1)), framed(&[0x92, 0x08, 0x01]));
    assert_eq!(
        enc(&HubMessage::Sequence(300)),
        framed(&[0x92, 0x09, 0xcd, 0x01, 0x2c])
    );
    let item = HubMessage::StreamItem(StreamItem {
        headers: Headers::new(),
        invocation_id: "1".into(),
        item: Some(7),
    });
    assert_eq!(enc(&item), framed(&[0x94, 0x02, 0x80, 0xa1, 0x31, 0x07]));
    let cancel: HubMessage<Vec<i32>, Option<i32>> =
        HubMessage::CancelInvocation(CancelInvocation {
            headers: Headers::new(),
            invocation_id: "1".into(),
        });
    assert_eq!(enc(&cancel), framed(&[0x93, 0x05, 0x80, 0xa1, 0x31]));
}

#[test]
fn msgpack_structs_are_maps_with_declared_names() {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Custom {
        name: &'static str,
        value: u8,
    }
    let call = HubMessage::<_, ()>::Invocation(Invocation::new(
        "CustomObject",
        (Custom {
            name: "a",
            value: 1,
        },),
    ));
    let bytes = encode_message(Protocol::MessagePack, &call, NamingPolicy::CamelCase).unwrap();
    // ... "CustomObject", [ {"Name": "a", "Value": 1} ], []
    let tail = [
        0x91, 0x82, 0xa4, b'N', b'a', b'm', b'e', 0xa1, b'a', 0xa5, b'V', b'a', b'l', b'u', b'e',
        0x01, 0x90,
    ];
    assert!(bytes.ends_with(&tail), "{:02x?}", &bytes[..]);
}

#[test]
fn json_naming_policy_applies_to_declared_names() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    #[serde(rename_all = "PascalCase")]
    struct Complex {
        string: String,
        int_array: Vec<i32>,
    }
    let value = Complex {
        string: "s".into(),
        int_array: vec![1],
    };
    let call = |naming| {
        let message = HubMessage::<_, ()>::Invocation(Invocation::new("M", (&value,)));
        String::from_utf8(
            encode_message(Protocol::Json, &message, naming)
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    };
    assert!(call(NamingPolicy::CamelCase).contains(r#"[{"string":"s","intArray":[1]}]"#));
    assert!(call(NamingPolicy::AsDeclared).contains(r#"[{"String":"s","IntArray":[1]}]"#));
    // Reading matches names ignoring case, as .NET does.
    let raw = json(r#"{"string":"s","intarray":[1]}"#);
    assert_eq!(raw.deserialize::<Complex>().unwrap(), value);
}
