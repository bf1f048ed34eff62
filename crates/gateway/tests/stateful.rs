//! Stateful reconnect: after an ungraceful WebSocket drop the client comes back with the same token (no
//! negotiate, no handshake), gets a `Sequence` and every message it had not acknowledged, including
//! those sent while it was away; duplicates it resends are dropped; Acks flow both ways.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use hubcast_gateway::HubOptions;
use hubcast_protocol::{HubMessage, Protocol};

async fn stateful_token(addr: std::net::SocketAddr) -> String {
    let response = http(
        addr,
        "POST",
        "/hub/negotiate?negotiateVersion=1&useStatefulReconnect=true",
        &[],
        b"",
    )
    .await;
    let json = response.json();
    assert_eq!(json["useStatefulReconnect"], true);
    json["connectionToken"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_dropped_socket_resumes_with_replay() {
    let server = start(HubOptions {
        allow_stateful_reconnects: true,
        ..HubOptions::default()
    })
    .await;
    let addr = server.addr;
    let token = stateful_token(addr).await;
    let path = format!("/hub?id={token}");
    let mut client = HubClient::connect_to(addr, &path, Protocol::Json, 2).await;
    client
        .send_json(r#"{"type":1,"invocationId":"1","target":"Echo","arguments":["one"]}"#)
        .await;
    let (id, outcome) = completion(client.next_non_ping(SECOND * 5).await);
    assert_eq!(
        (id.as_str(), result::<String>(outcome).as_str()),
        ("1", "one")
    );
    // The server acknowledges what it received (every second).
    let ack = loop {
        match client.next(SECOND * 3).await.unwrap() {
            HubMessage::Ack(id) => break id,
            HubMessage::Ping => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(ack, 1);

    // Drop the TCP connection without a close frame; meanwhile another client broadcasts.
    drop(client);
    let mut other = HubClient::connect(addr, Protocol::Json).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    other
        .send_json(
            r#"{"type":1,"invocationId":"b","target":"Broadcast","arguments":["while away"]}"#,
        )
        .await;
    // The broadcaster gets the broadcast itself, then its completion.
    assert!(matches!(
        other.next_non_ping(SECOND * 5).await,
        Some(HubMessage::Invocation(_))
    ));
    completion(other.next_non_ping(SECOND * 5).await);

    // Back on a new socket: Sequence(1) (nothing was acknowledged), the old completion, the broadcast.
    let mut back = HubClient::reopen(addr, &path, Protocol::Json).await;
    assert_eq!(
        back.next_non_ping(SECOND * 5).await,
        Some(HubMessage::Sequence(1))
    );
    let (id, _) = completion(back.next_non_ping(SECOND * 5).await);
    assert_eq!(id, "1");
    let Some(HubMessage::Invocation(call)) = back.next_non_ping(SECOND * 5).await else {
        panic!()
    };
    assert_eq!(
        call.arguments
            .get(0)
            .unwrap()
            .deserialize::<String>()
            .unwrap(),
        "while away"
    );

    // The client resends from its own first unacknowledged message: the duplicate is dropped.
    back.send_json(r#"{"type":8,"sequenceId":2}"#).await;
    back.send_json(r#"{"type":9,"sequenceId":1}"#).await;
    back.send_json(r#"{"type":1,"invocationId":"1","target":"Echo","arguments":["one"]}"#)
        .await;
    back.send_json(r#"{"type":1,"invocationId":"2","target":"Echo","arguments":["two"]}"#)
        .await;
    let (id, outcome) = completion(back.next_non_ping(SECOND * 5).await);
    assert_eq!(
        (id.as_str(), result::<String>(outcome).as_str()),
        ("2", "two")
    );

    // A Sequence beyond what was received is a protocol error.
    back.send_json(r#"{"type":9,"sequenceId":10}"#).await;
    let close = loop {
        match back.next_non_ping(SECOND * 5).await.unwrap() {
            HubMessage::Close(close) => break close,
            HubMessage::Ack(_) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        close.error.as_deref(),
        Some("Connection closed with an error.")
    );
}

#[tokio::test]
async fn without_stateful_reconnect_a_second_socket_conflicts_and_a_drop_ends_the_connection() {
    let options = HubOptions {
        allow_stateful_reconnects: true,
        disconnect_timeout: Duration::from_millis(300),
        ..HubOptions::default()
    };
    let server = start(options).await;
    let addr = server.addr;
    // Negotiated, but the handshake is version 1: no stateful reconnect.
    let token = stateful_token(addr).await;
    let path = format!("/hub?id={token}");
    let client = HubClient::connect_to(addr, &path, Protocol::Json, 1).await;
    assert_eq!(ws_open(addr, &path).await.err(), Some(409));
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ws_open(addr, &path).await.err(), Some(404));

    // Stateful, but the client never comes back: the connection ends after the disconnect timeout.
    let token = stateful_token(addr).await;
    let path = format!("/hub?id={token}");
    let client = HubClient::connect_to(addr, &path, Protocol::Json, 2).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(ws_open(addr, &path).await.err(), Some(404));
}

#[tokio::test]
async fn the_replay_buffer_is_bounded_and_an_overflowed_connection_is_not_resumed() {
    let options = HubOptions {
        allow_stateful_reconnects: true,
        stateful_reconnect_buffer_size: 2_000,
        ..HubOptions::default()
    };
    let server = start(options).await;
    let addr = server.addr;
    let token = stateful_token(addr).await;
    let path = format!("/hub?id={token}");
    let client = HubClient::connect_to(addr, &path, Protocol::Json, 2).await;
    drop(client);
    // 50 broadcasts of ~100 bytes while away: more than the 2,000-byte replay buffer holds.
    let mut other = HubClient::connect(addr, Protocol::Json).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    other
        .send_json(r#"{"type":1,"invocationId":"f","target":"Flood","arguments":[50,100]}"#)
        .await;
    loop {
        if let Some(HubMessage::Completion(_)) = other.next_non_ping(SECOND * 5).await {
            break;
        }
    }
    // The client comes back but cannot be resumed: its socket ends without a Sequence, and the
    // connection is gone.
    let mut back = HubClient::reopen(addr, &path, Protocol::Json).await;
    assert_eq!(back.next_non_ping(SECOND * 5).await, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ws_open(addr, &path).await.err(), Some(404));
}
