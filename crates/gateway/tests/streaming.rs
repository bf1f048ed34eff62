//! Streaming and client results at the protocol level: server streams (items, completion, cancellation,
//! backpressure, no invocation slot), upload streams (items, completion, reused ids), client results
//! (slot released while waiting, only the invoked connection may answer), streams ended by a disconnect.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use hubcast_gateway::HubOptions;
use hubcast_protocol::{HubMessage, Outcome, Protocol};

#[tokio::test]
async fn server_stream_items_then_completion() {
    let server = start(HubOptions::default()).await;
    let mut client = HubClient::connect(server.addr, Protocol::MessagePack).await;
    let call: HubMessage<(usize, usize), ()> =
        HubMessage::StreamInvocation(hubcast_protocol::Invocation {
            invocation_id: Some("7".into()),
            ..hubcast_protocol::Invocation::new("counter", (3, 2))
        });
    client
        .send_raw(
            &hubcast_protocol::encode_message(Protocol::MessagePack, &call, Default::default())
                .unwrap(),
        )
        .await;
    for expected in 0..3usize {
        let Some(HubMessage::StreamItem(item)) = client.next_non_ping(SECOND * 5).await else {
            panic!()
        };
        assert_eq!(item.invocation_id, "7");
        assert_eq!(
            item.item.deserialize::<(usize, String)>().unwrap(),
            (expected, "xx".to_owned())
        );
    }
    let (id, outcome) = completion(client.next_non_ping(SECOND * 5).await);
    assert_eq!((id.as_str(), outcome), ("7", Outcome::Void));
}

#[tokio::test]
async fn cancel_stops_a_stream_and_streams_take_no_slot() {
    let server = start(HubOptions::default()).await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    client
        .send_json(r#"{"type":4,"invocationId":"s","target":"Forever","arguments":[]}"#)
        .await;
    // While the stream runs, a plain invocation still gets its (only) slot.
    client
        .send_json(r#"{"type":1,"invocationId":"e","target":"Echo","arguments":["x"]}"#)
        .await;
    let mut echoed = false;
    while !echoed {
        match client.next_non_ping(SECOND * 5).await.unwrap() {
            HubMessage::StreamItem(_) => {}
            HubMessage::Completion(c) if c.invocation_id == "e" => echoed = true,
            other => panic!("{other:?}"),
        }
    }
    client.send_json(r#"{"type":5,"invocationId":"s"}"#).await;
    loop {
        match client.next_non_ping(SECOND * 5).await.unwrap() {
            HubMessage::StreamItem(_) => continue,
            HubMessage::Completion(c) => {
                assert_eq!((c.invocation_id.as_str(), c.outcome), ("s", Outcome::Void));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    // Nothing follows the completion, and the producer was dropped.
    assert!(
        client
            .next_non_ping(Duration::from_millis(200))
            .await
            .is_none()
    );
    client
        .send_json(r#"{"type":1,"invocationId":"n","target":"ForeverCount","arguments":[]}"#)
        .await;
    assert_eq!(
        result::<usize>(completion(client.next_non_ping(SECOND * 5).await).1),
        0
    );
}

#[tokio::test]
async fn a_stream_waits_for_a_slow_reader_instead_of_closing_it() {
    let server = start(HubOptions {
        transport_max_buffer_size: 8 * 1024,
        ..HubOptions::default()
    })
    .await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    let count = 3000;
    client
        .send_json(&format!(
            r#"{{"type":4,"invocationId":"big","target":"Counter","arguments":[{count},1000]}}"#
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut items = 0;
    loop {
        match client.next_non_ping(SECOND * 10).await.unwrap() {
            HubMessage::StreamItem(_) => items += 1,
            HubMessage::Completion(c) => {
                assert_eq!(c.outcome, Outcome::Void);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(items, count);
}

#[tokio::test]
async fn upload_streams() {
    let server = start(HubOptions {
        stream_buffer_capacity: 2,
        ..HubOptions::default()
    })
    .await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    client
        .send_json(
            r#"{"type":1,"invocationId":"1","target":"Sum","arguments":[5],"streamIds":["up"]}"#,
        )
        .await;
    // The same stream id again while it is open.
    client
        .send_json(
            r#"{"type":1,"invocationId":"2","target":"Sum","arguments":[0],"streamIds":["up"]}"#,
        )
        .await;
    let (id, outcome) = completion(client.next_non_ping(SECOND * 5).await);
    assert_eq!(
        (id.as_str(), outcome),
        (
            "2",
            Outcome::Error("Invocation ID 'up' is already in use.".into())
        )
    );
    let mut batch = String::new();
    for i in 1..=20 {
        batch.push_str(&format!(
            "{{\"type\":2,\"invocationId\":\"up\",\"item\":{i}}}\x1e"
        ));
    }
    batch.push_str("{\"type\":2,\"invocationId\":\"nobody\",\"item\":1}\x1e{\"type\":3,\"invocationId\":\"up\"}\x1e");
    client.send_raw(batch.as_bytes()).await;
    let (id, outcome) = completion(client.next_non_ping(SECOND * 10).await);
    assert_eq!((id.as_str(), result::<i64>(outcome)), ("1", 210));
    // A stream completed with an error fails the method with that error as a HubException.
    client
        .send_json(
            r#"{"type":1,"invocationId":"3","target":"Sum","arguments":[0],"streamIds":["e"]}"#,
        )
        .await;
    client
        .send_json(r#"{"type":3,"invocationId":"e","error":"Something bad"}"#)
        .await;
    let (_, outcome) = completion(client.next_non_ping(SECOND * 5).await);
    assert_eq!(
        outcome,
        Outcome::Error("An unexpected error occurred invoking 'Sum' on the server. HubException: Something bad".into())
    );
    // Stream counts must match.
    client
        .send_json(
            r#"{"type":1,"invocationId":"4","target":"Sum","arguments":[0],"streamIds":["a","b"]}"#,
        )
        .await;
    let (_, outcome) = completion(client.next_non_ping(SECOND * 5).await);
    assert_eq!(
        outcome,
        Outcome::Error("An unexpected error occurred invoking 'Sum' on the server. HubException: Client sent 2 stream(s), Hub method expects 1.".into())
    );
}

#[tokio::test]
async fn client_results_release_the_slot_and_only_the_caller_may_answer() {
    let server = start(HubOptions::default()).await;
    let mut caller = HubClient::connect(server.addr, Protocol::Json).await;
    let mut other = HubClient::connect(server.addr, Protocol::Json).await;
    caller
        .send_json(r#"{"type":1,"invocationId":"1","target":"AskCaller","arguments":[]}"#)
        .await;
    let Some(HubMessage::Invocation(ask)) = caller.next_non_ping(SECOND * 5).await else {
        panic!()
    };
    assert_eq!(ask.target, "GetNumber");
    let id = ask.invocation_id.unwrap();
    assert!(id.starts_with('s'), "{id}");
    // With one invocation slot, another call still runs while the hub method waits for the answer.
    caller
        .send_json(r#"{"type":1,"invocationId":"2","target":"Echo","arguments":["meanwhile"]}"#)
        .await;
    let (done, _) = completion(caller.next_non_ping(SECOND * 5).await);
    assert_eq!(done, "2");
    // Another connection cannot answer for the caller.
    other
        .send_json(&format!(
            r#"{{"type":3,"invocationId":"{id}","result":1000}}"#
        ))
        .await;
    caller
        .send_json(&format!(
            r#"{{"type":3,"invocationId":"{id}","result":21}}"#
        ))
        .await;
    let (done, outcome) = completion(caller.next_non_ping(SECOND * 5).await);
    assert_eq!((done.as_str(), result::<i64>(outcome)), ("1", 42));
}

#[tokio::test]
async fn a_client_error_reaches_the_hub_method() {
    let server = start(HubOptions::default()).await;
    let mut caller = HubClient::connect(server.addr, Protocol::Json).await;
    caller
        .send_json(r#"{"type":1,"invocationId":"1","target":"AskCaller","arguments":[]}"#)
        .await;
    let Some(HubMessage::Invocation(ask)) = caller.next_non_ping(SECOND * 5).await else {
        panic!()
    };
    let id = ask.invocation_id.unwrap();
    caller
        .send_json(&format!(
            r#"{{"type":3,"invocationId":"{id}","error":"Client didn't provide a result."}}"#
        ))
        .await;
    let (_, outcome) = completion(caller.next_non_ping(SECOND * 5).await);
    assert_eq!(
        outcome,
        Outcome::Error("An unexpected error occurred invoking 'AskCaller' on the server. HubException: Client didn't provide a result.".into())
    );
}

#[tokio::test]
async fn disconnecting_ends_open_streams() {
    let server = start(HubOptions::default()).await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    client
        .send_json(r#"{"type":4,"invocationId":"a","target":"Forever","arguments":[]}"#)
        .await;
    client
        .send_json(r#"{"type":4,"invocationId":"b","target":"Forever","arguments":[]}"#)
        .await;
    let Some(HubMessage::StreamItem(_)) = client.next_non_ping(SECOND * 5).await else {
        panic!()
    };
    let mut observer = HubClient::connect(server.addr, Protocol::Json).await;
    observer
        .send_json(r#"{"type":1,"invocationId":"c","target":"ForeverCount","arguments":[]}"#)
        .await;
    assert_eq!(
        result::<usize>(completion(observer.next_non_ping(SECOND * 5).await).1),
        2
    );
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    observer
        .send_json(r#"{"type":1,"invocationId":"d","target":"ForeverCount","arguments":[]}"#)
        .await;
    assert_eq!(
        result::<usize>(completion(observer.next_non_ping(SECOND * 5).await).1),
        0
    );
}

#[tokio::test]
async fn a_full_upload_buffer_pauses_the_receive_loop() {
    let server = start(HubOptions {
        stream_buffer_capacity: 2,
        ..HubOptions::default()
    })
    .await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    // Sum takes 200 ms per item; with room for 2 buffered items, 6 items keep the loop busy for ~600 ms
    // before it reads the Echo behind them.
    let mut batch = String::from(
        "{\"type\":1,\"invocationId\":\"sum\",\"target\":\"Sum\",\"arguments\":[200],\"streamIds\":[\"u\"]}\x1e",
    );
    for i in 1..=6 {
        batch.push_str(&format!(
            "{{\"type\":2,\"invocationId\":\"u\",\"item\":{i}}}\x1e"
        ));
    }
    batch.push_str(
        "{\"type\":1,\"invocationId\":\"echo\",\"target\":\"Echo\",\"arguments\":[\"x\"]}\x1e",
    );
    let started = std::time::Instant::now();
    client.send_raw(batch.as_bytes()).await;
    let (id, _) = completion(client.next_non_ping(SECOND * 5).await);
    assert_eq!(id, "echo");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    client.send_json(r#"{"type":3,"invocationId":"u"}"#).await;
    let (id, outcome) = completion(client.next_non_ping(SECOND * 5).await);
    assert_eq!((id.as_str(), result::<i64>(outcome)), ("sum", 21));
}
