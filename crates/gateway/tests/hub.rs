//! Hub protocol behaviour the official clients do not show: no replies to non-blocking calls, the
//! parallel-invocation limit, size limits, handshake and client timeouts, keep-alives, slow consumers,
//! error texts, groups.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use hubcast_gateway::HubOptions;
use hubcast_protocol::{Close, HubMessage, Invocation, Outcome, Protocol};

fn result_json(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Result(raw) => String::from_utf8(raw.as_bytes().to_vec()).unwrap(),
        other => panic!("expected a result, got {other:?}"),
    }
}

#[tokio::test]
async fn non_blocking_invocations_never_get_a_reply() {
    let server = start(HubOptions::default()).await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    client
        .send_json(r#"{"type":1,"target":"Echo","arguments":["a"]}"#)
        .await;
    client
        .send_json(r#"{"type":1,"target":"Nope","arguments":[]}"#)
        .await;
    client
        .send_json(r#"{"type":1,"target":"Echo","arguments":[1,2]}"#)
        .await;
    client
        .send_json(r#"{"type":1,"invocationId":"","target":"Fail","arguments":["x"]}"#)
        .await;
    client
        .send_json(r#"{"type":1,"invocationId":"last","target":"Echo","arguments":["b"]}"#)
        .await;
    let (id, outcome) = completion(client.next_non_ping(SECOND * 5).await);
    assert_eq!(
        (id.as_str(), result_json(&outcome).as_str()),
        ("last", "\"b\"")
    );
}

#[tokio::test]
async fn error_texts() {
    let server = start(HubOptions::default()).await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    let mut call = async |json: &str| {
        client.send_json(json).await;
        error_text(completion(client.next_non_ping(SECOND * 5).await).1)
    };
    assert_eq!(
        call(r#"{"type":1,"invocationId":"1","target":"Nope","arguments":[]}"#).await,
        "Unknown hub method 'Nope'"
    );
    assert_eq!(
        call(r#"{"type":1,"invocationId":"2","target":"echo","arguments":[1,2]}"#).await,
        "Failed to invoke 'echo' due to an error on the server."
    );
    assert_eq!(
        call(r#"{"type":1,"invocationId":"3","target":"Add","arguments":["x",1]}"#).await,
        "Failed to invoke 'Add' due to an error on the server."
    );
    assert_eq!(
        call(r#"{"type":1,"invocationId":"4","target":"Fail","arguments":["for you"]}"#).await,
        "An unexpected error occurred invoking 'Fail' on the server. HubException: for you"
    );
    assert_eq!(
        call(r#"{"type":1,"invocationId":"5","target":"Crash","arguments":[]}"#).await,
        "An unexpected error occurred invoking 'Crash' on the server."
    );
    assert_eq!(
        call(r#"{"type":4,"invocationId":"6","target":"Echo","arguments":["x"]}"#).await,
        "The client attempted to invoke the non-streaming 'Echo' method with a streaming invocation."
    );
    assert_eq!(
        call(r#"{"type":1,"invocationId":"7","target":"Echo","arguments":[],"streamIds":["1"]}"#)
            .await,
        "An unexpected error occurred invoking 'Echo' on the server. HubException: Client sent 1 stream(s), Hub method expects 0."
    );
    // Void methods complete with result null.
    client
        .send_json(r#"{"type":1,"invocationId":"8","target":"VOID","arguments":[]}"#)
        .await;
    let (_, outcome) = completion(client.next_non_ping(SECOND * 5).await);
    assert_eq!(result_json(&outcome), "null");
}

#[tokio::test]
async fn detailed_errors_show_details() {
    let server = start(HubOptions {
        enable_detailed_errors: true,
        ..HubOptions::default()
    })
    .await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    client
        .send_json(r#"{"type":1,"invocationId":"1","target":"Crash","arguments":[]}"#)
        .await;
    assert_eq!(
        error_text(completion(client.next_non_ping(SECOND * 5).await).1),
        "An unexpected error occurred invoking 'Crash' on the server. InvalidOperationException: secret detail"
    );
    client
        .send_json(r#"{"type":1,"invocationId":"2","target":"Echo","arguments":[1,2]}"#)
        .await;
    assert_eq!(
        error_text(completion(client.next_non_ping(SECOND * 5).await).1),
        "Failed to invoke 'Echo' due to an error on the server. InvalidDataException: Invocation provides 2 argument(s) but target expects 1."
    );
}

#[tokio::test]
async fn one_invocation_at_a_time_by_default() {
    let server = start(HubOptions::default()).await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    let started = Instant::now();
    client
        .send_raw(
            b"{\"type\":1,\"invocationId\":\"slow\",\"target\":\"Sleep\",\"arguments\":[300]}\x1e\
              {\"type\":1,\"invocationId\":\"fast\",\"target\":\"Echo\",\"arguments\":[\"x\"]}\x1e",
        )
        .await;
    assert_eq!(completion(client.next_non_ping(SECOND * 5).await).0, "slow");
    assert_eq!(completion(client.next_non_ping(SECOND * 5).await).0, "fast");
    assert!(started.elapsed() >= Duration::from_millis(300));

    let parallel = start(HubOptions {
        maximum_parallel_invocations_per_client: 2,
        ..HubOptions::default()
    })
    .await;
    let mut client = HubClient::connect(parallel.addr, Protocol::Json).await;
    client
        .send_raw(
            b"{\"type\":1,\"invocationId\":\"slow\",\"target\":\"Sleep\",\"arguments\":[300]}\x1e\
              {\"type\":1,\"invocationId\":\"fast\",\"target\":\"Echo\",\"arguments\":[\"x\"]}\x1e",
        )
        .await;
    assert_eq!(completion(client.next_non_ping(SECOND * 5).await).0, "fast");
    assert_eq!(completion(client.next_non_ping(SECOND * 5).await).0, "slow");
}

#[tokio::test]
async fn oversize_message_closes_with_the_documented_error() {
    let server = start(HubOptions {
        maximum_receive_message_size: 1024,
        ..HubOptions::default()
    })
    .await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    let big = format!(
        r#"{{"type":1,"target":"Echo","arguments":["{}"]}}"#,
        "x".repeat(2000)
    );
    client.send_json(&big).await;
    assert_eq!(
        client.next_non_ping(SECOND * 5).await,
        Some(HubMessage::Close(Close {
            error: Some("Connection closed with an error.".into()),
            allow_reconnect: true
        }))
    );
    assert_eq!(client.next(SECOND * 5).await, None);
    assert_eq!(client.close_code, Some(1000));
}

#[tokio::test]
async fn handshake_timeout_and_errors() {
    let server = start(HubOptions {
        handshake_timeout: Duration::from_millis(200),
        ..HubOptions::default()
    })
    .await;
    let mut ws = ws_open(server.addr, "/hub").await.unwrap();
    let frame = ws.read_frame().await.unwrap();
    assert_eq!(
        &frame.payload[..],
        b"{\"error\":\"Handshake was canceled.\"}\x1e"
    );
    let close = ws.read_frame().await.unwrap();
    assert_eq!(close.opcode, fastwebsockets::OpCode::Close);

    for (request, reply) in [
        (
            &b"{\"protocol\":\"json\",\"version\":3}\x1e"[..],
            &b"{\"error\":\"The server does not support version 3 of the 'json' protocol.\"}\x1e"[..],
        ),
        (
            b"{\"protocol\":\"xml\",\"version\":1}\x1e",
            b"{\"error\":\"The protocol 'xml' is not supported.\"}\x1e",
        ),
        (
            b"{\"protocol\":\"json\"}\x1e",
            b"{\"error\":\"An unexpected error occurred during connection handshake.\"}\x1e",
        ),
    ] {
        let mut ws = ws_open(server.addr, "/hub").await.unwrap();
        ws.write_frame(fastwebsockets::Frame::text(fastwebsockets::Payload::Owned(
            request.to_vec(),
        )))
        .await
        .unwrap();
        let frame = ws.read_frame().await.unwrap();
        assert_eq!(&frame.payload[..], reply);
    }
}

#[tokio::test]
async fn keep_alive_and_client_timeout() {
    let options = HubOptions {
        keep_alive_interval: Duration::from_millis(150),
        client_timeout_interval: Duration::from_millis(600),
        ..HubOptions::default()
    };
    let server = start(options).await;
    let mut client = HubClient::connect(server.addr, Protocol::MessagePack).await;
    // Pings arrive while idle.
    assert_eq!(client.next(SECOND).await, Some(HubMessage::Ping));
    // Before the client's first ping there is no client timeout.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let ping = hubcast_protocol::encode_message::<(), ()>(
        Protocol::MessagePack,
        &HubMessage::Ping,
        Default::default(),
    )
    .unwrap();
    client.send_raw(&ping).await;
    // After it, silence closes the connection with the documented error.
    let started = Instant::now();
    let close = client.next_non_ping(SECOND * 5).await;
    assert_eq!(
        close,
        Some(HubMessage::Close(Close {
            error: Some("Connection closed with an error.".into()),
            allow_reconnect: true
        }))
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn pings_come_one_keep_alive_interval_after_the_last_message() {
    let options = HubOptions {
        keep_alive_interval: Duration::from_millis(200),
        ..HubOptions::default()
    };
    let server = start(options).await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    assert_eq!(client.next(SECOND).await, Some(HubMessage::Ping));
    // The heartbeat ticks every 50 ms here: each ping comes 200-250 ms after the last one (with
    // room for a busy machine).
    for _ in 0..3 {
        let last = Instant::now();
        assert_eq!(client.next(SECOND).await, Some(HubMessage::Ping));
        let gap = last.elapsed();
        assert!(
            gap >= Duration::from_millis(180) && gap < Duration::from_millis(600),
            "{gap:?}"
        );
    }
    // A message sent resets the count: no ping while something goes out every 100 ms.
    let call: HubMessage<(i64, i64), ()> = HubMessage::Invocation(Invocation {
        invocation_id: Some("1".into()),
        ..Invocation::new("add", (1, 2))
    });
    let call = hubcast_protocol::encode_message(Protocol::Json, &call, Default::default()).unwrap();
    assert_eq!(client.next(SECOND).await, Some(HubMessage::Ping));
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.send_raw(&call).await;
        let reply = client.next(SECOND).await;
        assert!(
            matches!(reply, Some(HubMessage::Completion(_))),
            "{reply:?}"
        );
    }
}

#[tokio::test]
async fn several_messages_per_frame_and_messagepack_frames() {
    let server = start(HubOptions::default()).await;
    let mut client = HubClient::connect(server.addr, Protocol::MessagePack).await;
    let mut batch = Vec::new();
    for (id, a) in [("1", 1), ("2", 2), ("3", 3)] {
        let call: HubMessage<(i64, i64), ()> = HubMessage::Invocation(Invocation {
            invocation_id: Some(id.to_owned()),
            ..Invocation::new("add", (a, 10))
        });
        batch.extend_from_slice(
            &hubcast_protocol::encode_message(Protocol::MessagePack, &call, Default::default())
                .unwrap(),
        );
    }
    client.send_raw(&batch).await;
    for expected in ["1", "2", "3"] {
        let (id, outcome) = completion(client.next_non_ping(SECOND * 5).await);
        assert_eq!(id, expected);
        let Outcome::Result(raw) = outcome else {
            panic!()
        };
        assert_eq!(
            raw.deserialize::<i64>().unwrap(),
            10 + expected.parse::<i64>().unwrap()
        );
    }
}

#[tokio::test]
async fn client_close_is_answered_and_the_socket_closes_cleanly() {
    let server = start(HubOptions::default()).await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    client.send_json(r#"{"type":7}"#).await;
    assert_eq!(
        client.next_non_ping(SECOND * 5).await,
        Some(HubMessage::Close(Close::default()))
    );
    assert_eq!(client.next(SECOND * 5).await, None);
    assert_eq!(client.close_code, Some(1000));
}

#[tokio::test]
async fn groups_others_and_all() {
    let server = start(HubOptions::default()).await;
    let mut a = HubClient::connect(server.addr, Protocol::Json).await;
    let mut b = HubClient::connect(server.addr, Protocol::MessagePack).await;
    a.send_json(r#"{"type":1,"invocationId":"1","target":"Join","arguments":["g"]}"#)
        .await;
    completion(a.next_non_ping(SECOND * 5).await);
    a.send_json(r#"{"type":1,"invocationId":"2","target":"ToGroup","arguments":["g","hello"]}"#)
        .await;
    let mut seen = vec![
        a.next_non_ping(SECOND * 5).await.unwrap(),
        a.next_non_ping(SECOND * 5).await.unwrap(),
    ];
    seen.sort_by_key(|m| m.type_id());
    let HubMessage::Invocation(call) = &seen[0] else {
        panic!("{seen:?}")
    };
    assert_eq!(call.target, "Group");
    assert_eq!(
        call.arguments
            .get(0)
            .unwrap()
            .deserialize::<String>()
            .unwrap(),
        "hello"
    );
    // b is not in the group; it gets only the Others message that follows.
    a.send_json(r#"{"type":1,"target":"Others","arguments":["hi b"]}"#)
        .await;
    let HubMessage::Invocation(call) = b.next_non_ping(SECOND * 5).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        (
            call.target.as_str(),
            call.arguments
                .get(0)
                .unwrap()
                .deserialize::<String>()
                .unwrap()
                .as_str()
        ),
        ("Others", "hi b")
    );
    // After leaving, a no longer receives group sends; a broadcast reaches both protocols.
    a.send_json(r#"{"type":1,"invocationId":"3","target":"Leave","arguments":["g"]}"#)
        .await;
    completion(a.next_non_ping(SECOND * 5).await);
    a.send_json(r#"{"type":1,"target":"ToGroup","arguments":["g","nobody"]}"#)
        .await;
    a.send_json(r#"{"type":1,"target":"Broadcast","arguments":["all"]}"#)
        .await;
    for client in [&mut a, &mut b] {
        let HubMessage::Invocation(call) = client.next_non_ping(SECOND * 5).await.unwrap() else {
            panic!()
        };
        assert_eq!(call.target, "Broadcast");
    }
}

#[tokio::test]
async fn a_stalled_reader_is_closed_while_others_keep_receiving() {
    let options = HubOptions {
        transport_max_buffer_size: 16 * 1024,
        transport_send_timeout: Duration::from_millis(500),
        websocket_close_timeout: Duration::from_millis(500),
        ..HubOptions::default()
    };
    let server = start(options).await;
    let mut stalled = HubClient::connect(server.addr, Protocol::Json).await;
    let mut reader = HubClient::connect(server.addr, Protocol::Json).await;
    assert_eq!(server.gateway.connection_count(), 2);
    // Flood everyone until the stalled client is dropped (after the kernel's socket buffers fill up);
    // the reading client must get every message all along.
    let mut rounds = 0;
    while server.gateway.connection_count() == 2 {
        rounds += 1;
        assert!(rounds <= 400, "the stalled client was never closed");
        reader
            .send_json(r#"{"type":1,"invocationId":"f","target":"Flood","arguments":[100,1000]}"#)
            .await;
        let mut floods = 0;
        let mut done = false;
        while floods < 100 || !done {
            match reader.next_non_ping(SECOND * 10).await.unwrap() {
                HubMessage::Invocation(call) if call.target == "Flood" => floods += 1,
                HubMessage::Completion(_) => done = true,
                other => panic!("{other:?}"),
            }
        }
    }
    // The stalled client's socket ends once it reads what the kernel had buffered.
    let mut received = 0usize;
    while stalled.next(SECOND * 5).await.is_some() {
        received += 1;
    }
    assert!(
        received < rounds * 100,
        "the stalled client cannot have received everything"
    );
    // The reader is still served.
    reader
        .send_json(r#"{"type":1,"invocationId":"e","target":"Echo","arguments":["still here"]}"#)
        .await;
    let (id, _) = completion(reader.next_non_ping(SECOND * 5).await);
    assert_eq!(id, "e");
}

/// A setting for a method the hub does not declare (a typo) stops the gateway from building, naming the
/// method; a hub with a fallback may name undeclared methods (the fallback serves them).
#[tokio::test]
async fn settings_for_undeclared_methods_refuse_the_build() {
    use hubcast_gateway::hub::{Context, Hub};
    use hubcast_gateway::{BuildError, GatewayBuilder};
    let backplane = || std::sync::Arc::new(hubcast_backplane::MemoryBackplane::new());
    let typo = Hub::builder("typo", ())
        .method("KickUser", |_: Context<()>, _: String| async { Ok(()) })
        .require_roles("KikUser", &["admin"])
        .rate_limit("KickUser", 1.0, 1.0)
        .build();
    let error = GatewayBuilder::new(backplane())
        .hub("/typo", typo, HubOptions::default())
        .build()
        .await
        .err()
        .expect("a typo refuses the build");
    assert!(matches!(&error, BuildError::Hub { path, .. } if path == "/typo"));
    assert!(error.to_string().contains("'kikuser'"), "{error}");
    let rate = Hub::builder("rate", ())
        .rate_limit("Nothing", 1.0, 1.0)
        .build();
    let error = GatewayBuilder::new(backplane())
        .hub("/rate", rate, HubOptions::default())
        .build()
        .await
        .err()
        .expect("an undeclared rate limit refuses the build");
    assert!(
        error.to_string().contains("rate_limit names 'nothing'"),
        "{error}"
    );
    let served = Hub::builder("served", ())
        .fallback(|_: Context<()>, _, _| async { Ok(serde_json::Value::Null) })
        .require_roles("Anything", &["admin"])
        .build();
    assert!(
        GatewayBuilder::new(backplane())
            .hub("/served", served, HubOptions::default())
            .build()
            .await
            .is_ok()
    );
}
