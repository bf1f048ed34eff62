//! Every message type round-trips in both protocols, and any sequence of messages, concatenated and cut
//! into chunks at arbitrary points, parses back to the same sequence.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use bytes::Bytes;
use hubcast_protocol::{
    CancelInvocation, Close, Completion, HubMessage, Invocation, MessageReader, NamingPolicy,
    Outcome, Protocol, StreamItem, encode_message,
};
use proptest::prelude::*;
use serde_json::Value;

type Typed = HubMessage<Vec<Value>, Value>;

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn id() -> impl Strategy<Value = String> {
    "[0-9a-zA-Z+/]{1,8}"
}

fn headers() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(".{1,6}", ".{0,6}", 0..2)
}

fn invocation() -> impl Strategy<Value = Invocation<Vec<Value>>> {
    (
        headers(),
        prop::option::of(id()),
        "[A-Za-z][A-Za-z0-9]{0,10}",
        prop::collection::vec(value(), 0..4),
        prop::collection::vec(id(), 0..3),
    )
        .prop_map(
            |(headers, invocation_id, target, arguments, stream_ids)| Invocation {
                headers,
                invocation_id,
                target,
                arguments,
                stream_ids,
            },
        )
}

fn message() -> impl Strategy<Value = Typed> {
    prop_oneof![
        invocation().prop_map(HubMessage::Invocation),
        (invocation(), id()).prop_map(|(mut inv, id)| {
            inv.invocation_id = Some(id);
            HubMessage::StreamInvocation(inv)
        }),
        (headers(), id(), value()).prop_map(|(headers, invocation_id, item)| {
            HubMessage::StreamItem(StreamItem {
                headers,
                invocation_id,
                item,
            })
        }),
        (
            headers(),
            id(),
            prop_oneof![
                Just(Outcome::Void),
                value().prop_map(Outcome::Result),
                ".{0,20}".prop_map(Outcome::Error)
            ]
        )
            .prop_map(|(headers, invocation_id, outcome)| {
                HubMessage::Completion(Completion {
                    headers,
                    invocation_id,
                    outcome,
                })
            }),
        (headers(), id()).prop_map(|(headers, invocation_id)| {
            HubMessage::CancelInvocation(CancelInvocation {
                headers,
                invocation_id,
            })
        }),
        Just(HubMessage::Ping),
        (prop::option::of(".{0,20}"), any::<bool>()).prop_map(|(error, allow_reconnect)| {
            HubMessage::Close(Close {
                error,
                allow_reconnect,
            })
        }),
        any::<i64>().prop_map(HubMessage::Ack),
        any::<i64>().prop_map(HubMessage::Sequence),
    ]
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(Protocol::Json), Just(Protocol::MessagePack)]
}

/// Checks that `decoded` carries the same values as `original` (beyond byte equality of re-encoding).
fn assert_same_values(original: &Typed, decoded: &HubMessage) {
    match (original, decoded) {
        (HubMessage::Invocation(a), HubMessage::Invocation(b))
        | (HubMessage::StreamInvocation(a), HubMessage::StreamInvocation(b)) => {
            assert_eq!(a.target, b.target);
            assert_eq!(a.invocation_id, b.invocation_id);
            assert_eq!(a.stream_ids, b.stream_ids);
            assert_eq!(a.headers, b.headers);
            let args: Vec<Value> = b
                .arguments
                .iter()
                .map(|raw| raw.deserialize().unwrap())
                .collect();
            assert_eq!(a.arguments, args);
        }
        (HubMessage::StreamItem(a), HubMessage::StreamItem(b)) => {
            assert_eq!(a.item, b.item.deserialize::<Value>().unwrap());
        }
        (HubMessage::Completion(a), HubMessage::Completion(b)) => match (&a.outcome, &b.outcome) {
            (Outcome::Void, Outcome::Void) => {}
            (Outcome::Error(x), Outcome::Error(y)) => assert_eq!(x, y),
            (Outcome::Result(x), Outcome::Result(y)) => {
                assert_eq!(x, &y.deserialize::<Value>().unwrap())
            }
            other => panic!("outcome changed: {other:?}"),
        },
        (a, b) => assert_eq!(a.type_id(), b.type_id()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn split_anywhere_parses_back(
        protocol in protocol(),
        messages in prop::collection::vec(message(), 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let encoded: Vec<Bytes> = messages
            .iter()
            .map(|m| encode_message(protocol, m, NamingPolicy::AsDeclared).unwrap())
            .collect();
        let stream: Vec<u8> = encoded.iter().flat_map(|b| b.iter().copied()).collect();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();

        let mut reader = MessageReader::new(protocol, None);
        let mut decoded = Vec::new();
        for pair in points.windows(2) {
            reader.push(&stream[pair[0]..pair[1]]);
            while let Some(message) = reader.next_message().unwrap() {
                decoded.push(message);
            }
        }
        prop_assert_eq!(reader.buffered(), 0);
        prop_assert_eq!(decoded.len(), messages.len());
        for ((original, bytes), message) in messages.iter().zip(&encoded).zip(&decoded) {
            let again = encode_message(protocol, message, NamingPolicy::AsDeclared).unwrap();
            prop_assert_eq!(bytes, &again);
            assert_same_values(original, message);
        }
    }

    #[test]
    fn raw_values_cross_protocols(value in value()) {
        // A value received in one protocol and forwarded in the other keeps its meaning.
        for (from, to) in [(Protocol::Json, Protocol::MessagePack), (Protocol::MessagePack, Protocol::Json)] {
            let raw = hubcast_protocol::RawValue::encode(from, &value, NamingPolicy::AsDeclared).unwrap();
            let other = hubcast_protocol::RawValue::encode(to, &raw, NamingPolicy::AsDeclared).unwrap();
            prop_assert_eq!(other.deserialize::<Value>().unwrap(), value.clone());
        }
    }
}

#[test]
fn every_type_round_trips_in_both_protocols() {
    let samples: Vec<Typed> = vec![
        HubMessage::Invocation(Invocation {
            headers: BTreeMap::from([("traceparent".into(), "00-1".into())]),
            invocation_id: Some("7".into()),
            target: "Send".into(),
            arguments: vec![
                Value::from("x"),
                Value::from(1),
                serde_json::json!({"a": [true, null]}),
            ],
            stream_ids: vec!["8".into()],
        }),
        HubMessage::StreamInvocation(Invocation {
            invocation_id: Some("9".into()),
            ..Invocation::new("Counter", vec![Value::from(10)])
        }),
        HubMessage::StreamItem(StreamItem {
            headers: BTreeMap::new(),
            invocation_id: "9".into(),
            item: Value::from(3),
        }),
        HubMessage::Completion(Completion {
            headers: BTreeMap::new(),
            invocation_id: "7".into(),
            outcome: Outcome::Result(Value::Null),
        }),
        HubMessage::Completion(Completion {
            headers: BTreeMap::new(),
            invocation_id: "7".into(),
            outcome: Outcome::Void,
        }),
        HubMessage::Completion(Completion {
            headers: BTreeMap::new(),
            invocation_id: "7".into(),
            outcome: Outcome::Error("boom".into()),
        }),
        HubMessage::CancelInvocation(CancelInvocation {
            headers: BTreeMap::new(),
            invocation_id: "9".into(),
        }),
        HubMessage::Ping,
        HubMessage::Close(Close {
            error: Some("bye".into()),
            allow_reconnect: true,
        }),
        HubMessage::Ack(41),
        HubMessage::Sequence(42),
    ];
    for protocol in Protocol::ALL {
        for sample in &samples {
            let bytes = encode_message(protocol, sample, NamingPolicy::AsDeclared).unwrap();
            let decoded = hubcast_protocol::decode_all(protocol, &bytes, Some(32 * 1024)).unwrap();
            assert_eq!(decoded.len(), 1);
            assert_same_values(sample, &decoded[0]);
            assert_eq!(
                encode_message(protocol, &decoded[0], NamingPolicy::AsDeclared).unwrap(),
                bytes
            );
        }
    }
}
