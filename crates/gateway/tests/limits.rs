//! Abuse limits: invocation rates per connection and per method (refused, then closed when it goes on),
//! groups per connection and group-name length, connections per client address.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use hubcast_gateway::HubOptions;
use hubcast_protocol::{HubMessage, Outcome, Protocol};

async fn call(client: &mut HubClient, id: &str, target: &str, args: &str) -> Outcome {
    client
        .send_json(&format!(
            r#"{{"type":1,"invocationId":"{id}","target":"{target}","arguments":[{args}]}}"#
        ))
        .await;
    loop {
        match client.next_non_ping(SECOND * 5).await {
            Some(HubMessage::Completion(c)) if c.invocation_id == id => return c.outcome,
            Some(_) => continue,
            None => panic!("no completion for {id}"),
        }
    }
}

#[tokio::test]
async fn rate_limits_refuse_then_recover() {
    let options = HubOptions {
        invocation_rate: 2.0,
        invocation_burst: 2.0,
        ..HubOptions::default()
    };
    let server = start(options).await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    assert!(matches!(
        call(&mut client, "1", "Echo", "\"a\"").await,
        Outcome::Result(_)
    ));
    assert!(matches!(
        call(&mut client, "2", "Echo", "\"a\"").await,
        Outcome::Result(_)
    ));
    assert_eq!(
        error_text(call(&mut client, "3", "Echo", "\"a\"").await),
        "Failed to invoke 'Echo' because the rate limit was exceeded."
    );
    // Refilled at two calls a second, up to the burst of two.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        call(&mut client, "4", "Echo", "\"a\"").await,
        Outcome::Result(_)
    ));
    // A per-method limit applies on top: Limited allows one call a second.
    assert!(matches!(
        call(&mut client, "5", "Limited", "").await,
        Outcome::Result(_)
    ));
    assert_eq!(
        error_text(call(&mut client, "6", "limited", "").await),
        "Failed to invoke 'limited' because the rate limit was exceeded."
    );
}

#[tokio::test]
async fn a_client_that_keeps_going_over_the_limit_is_closed() {
    let options = HubOptions {
        invocation_rate: 1.0,
        invocation_burst: 1.0,
        close_after_rate_limited: 5,
        ..HubOptions::default()
    };
    let server = start(options).await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    let mut batch = String::new();
    for i in 0..20 {
        batch.push_str(&format!(
            "{{\"type\":1,\"invocationId\":\"{i}\",\"target\":\"Echo\",\"arguments\":[\"x\"]}}\x1e"
        ));
    }
    client.send_raw(batch.as_bytes()).await;
    let close = loop {
        match client.next_non_ping(SECOND * 5).await.unwrap() {
            HubMessage::Close(close) => break close,
            _ => continue,
        }
    };
    assert_eq!(
        close.error.as_deref(),
        Some("Connection closed with an error.")
    );
    assert!(!close.allow_reconnect);
}

#[tokio::test]
async fn group_limits() {
    let options = HubOptions {
        max_groups_per_connection: 2,
        enable_detailed_errors: true,
        ..HubOptions::default()
    };
    let server = start(options).await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    assert!(matches!(
        call(&mut client, "1", "Join", "\"a\"").await,
        Outcome::Result(_)
    ));
    assert!(matches!(
        call(&mut client, "2", "Join", "\"b\"").await,
        Outcome::Result(_)
    ));
    assert!(
        matches!(
            call(&mut client, "3", "Join", "\"a\"").await,
            Outcome::Result(_)
        ),
        "joining again is fine"
    );
    assert!(
        error_text(call(&mut client, "4", "Join", "\"c\"").await)
            .ends_with("the connection is in too many groups")
    );
    let long = format!("\"{}\"", "g".repeat(1025));
    assert!(
        error_text(call(&mut client, "6", "Join", &long).await)
            .ends_with("group names must be 1 to 1024 characters long")
    );
    assert!(
        error_text(call(&mut client, "7", "Join", "\"\"").await)
            .ends_with("group names must be 1 to 1024 characters long")
    );
}

#[tokio::test]
async fn connections_per_address() {
    let server = start(HubOptions {
        max_connections_per_ip: 2,
        ..HubOptions::default()
    })
    .await;
    let negotiate = || {
        http(
            server.addr,
            "POST",
            "/hub/negotiate?negotiateVersion=1",
            &[],
            b"",
        )
    };
    assert_eq!(negotiate().await.status, 200);
    let second = negotiate().await;
    assert_eq!(second.status, 200);
    let third = negotiate().await;
    assert_eq!(
        (third.status, third.text().as_str()),
        (429, "Too many connections")
    );
    // Ending a connection frees its place.
    let token = second.json()["connectionToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        http(server.addr, "GET", &format!("/hub?id={token}"), &[], b"")
            .await
            .status,
        200
    );
    assert_eq!(
        http(server.addr, "DELETE", &format!("/hub?id={token}"), &[], b"")
            .await
            .status,
        202
    );
    assert_eq!(negotiate().await.status, 200);
}

#[tokio::test]
async fn a_user_rate_spans_all_of_its_connections() {
    let options = HubOptions {
        user_invocation_rate: 1.0,
        user_invocation_burst: 2.0,
        ..HubOptions::default()
    };
    let server = start_with(options, Some(hubcast_gateway::auth::JwtAuth::hmac(SECRET))).await;
    let path = format!("/hub?access_token={}", token(SECRET, "ann", &[], 60));
    let mut first = HubClient::connect_to(server.addr, &path, Protocol::Json, 1).await;
    let mut second = HubClient::connect_to(server.addr, &path, Protocol::Json, 1).await;
    let mut other = HubClient::connect_to(
        server.addr,
        &format!("/hub?access_token={}", token(SECRET, "bob", &[], 60)),
        Protocol::Json,
        1,
    )
    .await;
    assert!(matches!(
        call(&mut first, "1", "Echo", "\"a\"").await,
        Outcome::Result(_)
    ));
    assert!(matches!(
        call(&mut second, "2", "Echo", "\"a\"").await,
        Outcome::Result(_)
    ));
    assert_eq!(
        error_text(call(&mut first, "3", "Echo", "\"a\"").await),
        "Failed to invoke 'Echo' because the rate limit was exceeded."
    );
    // Another user has a bucket of their own.
    assert!(matches!(
        call(&mut other, "4", "Echo", "\"a\"").await,
        Outcome::Result(_)
    ));
}

/// Regression (issue 17, item 3): replies to the caller counted against the outbound bound like fan-out
/// sends, so a client that pipelined large or many invocations in one frame, and read normally, was
/// closed as a slow consumer and lost its queued replies. Replies now wait for room instead.
#[tokio::test]
async fn pipelined_replies_slow_the_caller_down_instead_of_closing_it() {
    let options = HubOptions {
        transport_max_buffer_size: 64 * 1024,
        ..HubOptions::default()
    };
    let server = start(options).await;
    let mut client = HubClient::connect(server.addr, Protocol::Json).await;
    // Forty replies of 512 KB (20 MB, more than the sockets buffer), asked for in one frame; the client
    // reads them after a pause, as a busy client does.
    let frame: String = (0..40)
        .map(|i| {
            format!(r#"{{"type":1,"invocationId":"big{i}","target":"Big","arguments":[524288]}}"#)
                + "\x1e"
        })
        .collect();
    client.send_raw(frame.as_bytes()).await;
    // Then 2,000 small invocations in one frame.
    let frame: String = (0..2000)
        .map(|i| {
            format!(r#"{{"type":1,"invocationId":"e{i}","target":"Echo","arguments":["{i}"]}}"#)
                + "\x1e"
        })
        .collect();
    client.send_raw(frame.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut completions = 0;
    while completions < 2040 {
        match client.next_non_ping(SECOND * 10).await {
            Some(HubMessage::Completion(c)) => {
                assert!(
                    matches!(c.outcome, Outcome::Result(_)),
                    "{}: {:?}",
                    c.invocation_id,
                    c.outcome
                );
                completions += 1;
            }
            Some(HubMessage::Close(close)) => panic!("closed after {completions}: {close:?}"),
            Some(_) => {}
            None => panic!("only {completions} completions"),
        }
    }
}
