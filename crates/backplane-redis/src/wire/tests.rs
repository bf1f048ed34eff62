use super::*;

use hubcast_protocol::{HubMessage, Invocation, NamingPolicy};

fn hi() -> Arc<SerializedMessage> {
    let message: HubMessage<(&str,), ()> = HubMessage::Invocation(Invocation::new("Send", ("hi",)));
    Arc::new(SerializedMessage::new(message, NamingPolicy::CamelCase))
}

#[test]
fn channel_names_round_trip() {
    let channels = Channels::new("hc");
    assert_eq!(channels.all("chat"), "hc:chat:all");
    assert_eq!(channels.parse("hc:chat:all"), Some(Channel::All("chat")));
    let group = channels.group("chat", "room:1");
    assert_eq!(
        channels.parse(&group),
        Some(Channel::Group("chat", "room:1"))
    );
    let user = channels.user("chat", "ann");
    assert_eq!(channels.parse(&user), Some(Channel::User("chat", "ann")));
    assert_eq!(channels.parse(&channels.node("n1")), Some(Channel::Node));
    assert_eq!(channels.parse(&channels.control()), Some(Channel::Control));
    assert_eq!(channels.parse("other:chat:all"), None);
    assert_eq!(channels.parse("hc:chat:what:x"), None);
}

#[test]
fn sends_go_to_their_own_channel_or_the_all_channel() {
    let channels = Channels::new("hc");
    let one = Target::Groups(vec!["g".into()]);
    assert_eq!(
        channels.broadcast("chat", &Target::All),
        Some(("hc:chat:all".into(), false))
    );
    assert_eq!(
        channels.broadcast("chat", &one),
        Some(("hc:chat:group:g".into(), false))
    );
    let user = Target::Users(vec!["u".into()]);
    assert_eq!(
        channels.broadcast("chat", &user),
        Some(("hc:chat:user:u".into(), false))
    );
    let several = Target::Users(vec!["u".into(), "v".into()]);
    assert_eq!(
        channels.broadcast("chat", &several),
        Some(("hc:chat:all".into(), true))
    );
    assert_eq!(
        channels.broadcast("chat", &Target::Groups(Vec::new())),
        None
    );
    assert_eq!(
        channels.broadcast("chat", &Target::Connections(Vec::new())),
        None
    );
}

/// The layout of protocol.md §5.2: `[excluded, {json: bin, messagepack: bin}, ...]`, bytes framed.
#[test]
fn broadcasts_start_like_dotnet_redis_invocations() {
    let payload = encode_broadcast(&[], &hi(), "n1", None);
    let mut expected = vec![0x93, 0x90, 0x82, 0xa4];
    expected.extend_from_slice(b"json");
    expected.extend_from_slice(&[0xc4, 46]);
    expected.extend_from_slice(b"{\"type\":1,\"target\":\"Send\",\"arguments\":[\"hi\"]}\x1e");
    expected.push(0xab);
    expected.extend_from_slice(b"messagepack");
    expected.extend_from_slice(&[0xc4, 15, 0x0e, 0x96, 0x01, 0x80, 0xc0, 0xa4]);
    expected.extend_from_slice(b"Send");
    expected.extend_from_slice(&[0x91, 0xa2, b'h', b'i', 0x90]);
    expected.extend_from_slice(&[0xa2, b'n', b'1']);
    assert_eq!(payload, expected);
}

#[test]
fn broadcasts_round_trip() {
    let targets = Target::Groups(vec!["a".into(), "b".into()]);
    let excluded = vec![ConnectionId::from("x.1")];
    let payload = encode_broadcast(&excluded, &hi(), "n1", Some(&targets));
    let broadcast = decode_broadcast(Bytes::from(payload)).unwrap();
    assert_eq!(broadcast.excluded, excluded);
    assert_eq!(broadcast.origin, "n1");
    assert_eq!(broadcast.targets, Some(targets));
    assert_eq!(
        broadcast.message.get(Protocol::Json).unwrap(),
        hi().get(Protocol::Json).unwrap()
    );
    assert_eq!(
        broadcast.message.get(Protocol::MessagePack).unwrap(),
        hi().get(Protocol::MessagePack).unwrap()
    );
}

#[test]
fn node_messages_round_trip() {
    let messages = vec![
        NodeMessage::Send {
            hub: "chat".into(),
            excluded: vec!["a.1".into()],
            message: hi(),
            connections: vec!["a.2".into(), "a.3".into()],
        },
        NodeMessage::Group {
            hub: "chat".into(),
            origin: "b".into(),
            id: 7,
            connection: "a.2".into(),
            group: "room".into(),
            action: GroupAction::Add,
        },
        NodeMessage::Ack {
            id: 7,
            result: Ok(()),
        },
        NodeMessage::Ack {
            id: 8,
            result: Err(RemoteError::UnknownConnection("a.9".into())),
        },
        NodeMessage::Ack {
            id: 9,
            result: Err(RemoteError::TooManyGroups),
        },
        NodeMessage::Invoke {
            hub: "chat".into(),
            origin: "b".into(),
            id: 10,
            connection: "a.2".into(),
            invocation_id: "sb.1".into(),
            message: hi(),
            timeout_ms: 30_000,
        },
        NodeMessage::Result {
            id: 10,
            result: Ok(Outcome::Result(RawValue::new(
                Protocol::Json,
                Bytes::from_static(b"42"),
            ))),
        },
        NodeMessage::Result {
            id: 11,
            result: Ok(Outcome::Error("nope".into())),
        },
        NodeMessage::Result {
            id: 12,
            result: Ok(Outcome::Void),
        },
        NodeMessage::Result {
            id: 13,
            result: Err(RemoteError::Disconnected("a.2".into())),
        },
        NodeMessage::Close {
            hub: "chat".into(),
            origin: "b".into(),
            target: Target::Users(vec!["ann".into()]),
            reason: "bye".into(),
        },
        NodeMessage::UserGroups {
            hub: "chat".into(),
            origin: "b".into(),
            user: "ann".into(),
            group: Some("room".into()),
            action: GroupAction::Add,
        },
        NodeMessage::UserGroups {
            hub: "chat".into(),
            origin: "b".into(),
            user: "ann".into(),
            group: None,
            action: GroupAction::Remove,
        },
        NodeMessage::Close {
            hub: "chat".into(),
            origin: "b".into(),
            target: Target::All,
            reason: String::new(),
        },
        NodeMessage::Close {
            hub: "chat".into(),
            origin: "b".into(),
            target: Target::Connections(vec!["a.1".into()]),
            reason: "x".into(),
        },
    ];
    for message in messages {
        let decoded = decode_node(Bytes::from(encode_node(&message))).unwrap();
        // SerializedMessage has no equality: compare the debug forms of the re-encodings.
        assert_eq!(encode_node(&decoded), encode_node(&message), "{message:?}");
    }
}

#[test]
fn malformed_payloads_are_errors() {
    let good = encode_node(&NodeMessage::Ack {
        id: 1,
        result: Ok(()),
    });
    for cut in 0..good.len() {
        assert!(decode_node(Bytes::copy_from_slice(&good[..cut])).is_err());
    }
    let broadcast = encode_broadcast(&[], &hi(), "n1", None);
    for cut in 0..broadcast.len() {
        assert!(decode_broadcast(Bytes::copy_from_slice(&broadcast[..cut])).is_err());
    }
    assert!(decode_node(Bytes::from_static(&[0x92, 0x63, 0x01])).is_err());
    // A huge declared array length does not allocate or panic.
    assert!(decode_broadcast(Bytes::from_static(&[0x93, 0xdd, 0xff, 0xff, 0xff, 0xff])).is_err());
}
