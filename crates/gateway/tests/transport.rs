//! Every bad input of the transport protocol gets the status code and body ASP.NET Core gives it
//! (protocol notes §1), and long polling follows its timing rules.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use hubcast_gateway::HubOptions;
use hubcast_protocol::Transport;

#[tokio::test]
async fn negotiate_versions_methods_and_paths() {
    let server = start(HubOptions::default()).await;
    let addr = server.addr;
    // Version 0 when absent: no token; the route matches case-insensitively and with a trailing slash.
    let v0 = http(addr, "POST", "/HUB/negotiate", &[], b"").await;
    assert_eq!(v0.status, 200);
    assert_eq!(v0.headers["content-type"], "application/json");
    let json = v0.json();
    assert_eq!(json["negotiateVersion"], 0);
    assert!(json.get("connectionToken").is_none());
    assert_eq!(json["connectionId"].as_str().unwrap().len(), 22);
    assert_eq!(json["availableTransports"][0]["transport"], "WebSockets");
    let v1 = http(
        addr,
        "POST",
        "/hub/negotiate?negotiateVersion=5&useStatefulReconnect=true",
        &[],
        b"",
    )
    .await
    .json();
    assert_eq!(v1["negotiateVersion"], 1);
    assert_ne!(v1["connectionId"], v1["connectionToken"]);
    assert!(
        v1.get("useStatefulReconnect").is_none(),
        "not allowed by default"
    );
    let bad = http(addr, "POST", "/hub/negotiate?negotiateVersion=x", &[], b"").await;
    assert_eq!(bad.status, 200);
    assert_eq!(
        bad.json()["error"],
        "The client requested a non-integer protocol version."
    );
    assert_eq!(
        http(addr, "GET", "/hub/negotiate", &[], b"").await.status,
        405
    );
    assert_eq!(
        http(addr, "POST", "/nowhere/negotiate", &[], b"")
            .await
            .status,
        404
    );
    assert_eq!(http(addr, "PUT", "/hub?id=x", &[], b"").await.status, 405);
}

#[tokio::test]
async fn minimum_version_and_stateful_reconnect_flag() {
    let options = HubOptions {
        minimum_protocol_version: 1,
        allow_stateful_reconnects: true,
        transports: vec![Transport::LongPolling, Transport::WebSockets],
        ..HubOptions::default()
    };
    let server = start(options).await;
    let refused = http(server.addr, "POST", "/hub/negotiate", &[], b"")
        .await
        .json();
    assert_eq!(
        refused["error"],
        "The client requested version '0', but the server does not support this version."
    );
    let ok = http(
        server.addr,
        "POST",
        "/hub/negotiate?negotiateVersion=1&useStatefulReconnect=true",
        &[],
        b"",
    )
    .await
    .json();
    assert_eq!(ok["useStatefulReconnect"], true);
    let order: Vec<_> = ok["availableTransports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["transport"].clone())
        .collect();
    assert_eq!(order, vec!["LongPolling", "WebSockets"]);
    // SSE is not offered: refused with 404 and the .NET text.
    let (_, token) = negotiate(server.addr, "/hub").await;
    let sse = http(
        server.addr,
        "GET",
        &format!("/hub?id={token}"),
        &[("accept", "text/event-stream")],
        b"",
    )
    .await;
    assert_eq!(
        (sse.status, sse.text().as_str()),
        (
            404,
            "ServerSentEvents transport not supported by this end point type"
        )
    );
}

#[tokio::test]
async fn unknown_and_missing_ids() {
    let server = start(HubOptions::default()).await;
    let addr = server.addr;
    let r = http(addr, "GET", "/hub?id=nope", &[], b"").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "No Connection with that ID")
    );
    let r = http(addr, "POST", "/hub", &[], b"x").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "Connection ID required")
    );
    let r = http(addr, "DELETE", "/hub?id=nope", &[], b"").await;
    assert_eq!(r.status, 404);
    assert_eq!(ws_open(addr, "/hub?id=nope").await.err(), Some(404));
    // A token of one endpoint is unknown on another.
    let (_, token) = negotiate(addr, "/hub").await;
    assert_eq!(
        http(addr, "GET", &format!("/echo?id={token}"), &[], b"")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn websocket_conflicts_and_wrong_methods() {
    let server = start(HubOptions::default()).await;
    let addr = server.addr;
    let (_, token) = negotiate(addr, "/hub").await;
    let _first = ws_open(addr, &format!("/hub?id={token}")).await.unwrap();
    assert_eq!(
        ws_open(addr, &format!("/hub?id={token}")).await.err(),
        Some(409)
    );
    let poll = http(addr, "GET", &format!("/hub?id={token}"), &[], b"").await;
    assert_eq!(
        (poll.status, poll.text().as_str()),
        (400, "Cannot change transports mid-connection")
    );
    let post = http(addr, "POST", &format!("/hub?id={token}"), &[], b"x").await;
    assert_eq!(
        (post.status, post.text().as_str()),
        (
            405,
            "POST requests are not allowed for WebSocket connections."
        )
    );
    let delete = http(addr, "DELETE", &format!("/hub?id={token}"), &[], b"").await;
    assert_eq!(
        (delete.status, delete.text().as_str()),
        (
            400,
            "Cannot terminate this connection using the DELETE endpoint."
        )
    );
}

#[tokio::test]
async fn long_polling_lifecycle() {
    let options = HubOptions {
        long_polling_poll_timeout: Duration::from_millis(300),
        ..HubOptions::default()
    };
    let server = start(options).await;
    let addr = server.addr;
    let (_, token) = negotiate(addr, "/hub").await;
    let path = format!("/hub?id={token}");
    // The first poll answers at once, empty, octet-stream.
    let first = http(addr, "GET", &path, &[], b"").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["content-type"], "application/octet-stream");
    assert_eq!(first.headers["cache-control"], "no-cache, no-store");
    assert!(first.body.is_empty());
    // Handshake and an invocation in one POST; the next poll returns both replies.
    let post = http(
        addr,
        "POST",
        &path,
        &[],
        b"{\"protocol\":\"json\",\"version\":1}\x1e{\"type\":1,\"invocationId\":\"1\",\"target\":\"Echo\",\"arguments\":[\"hi\"]}\x1e",
    )
    .await;
    assert_eq!(post.status, 200);
    let mut received = Vec::new();
    while !received.ends_with(b"\"result\":\"hi\"}\x1e") {
        let poll = http(addr, "GET", &path, &[], b"").await;
        assert_eq!(poll.status, 200);
        received.extend_from_slice(&poll.body);
    }
    assert_eq!(
        received,
        b"{}\x1e{\"type\":3,\"invocationId\":\"1\",\"result\":\"hi\"}\x1e"
    );
    // No data: 200 empty after the poll timeout; never a Ping on long polling.
    let idle = http(addr, "GET", &path, &[], b"").await;
    assert_eq!((idle.status, idle.body.len()), (200, 0));
    // A newer poll makes the waiting one answer 204.
    let waiting = tokio::spawn(async move {
        http(addr, "GET", &format!("/hub?id={token}"), &[], b"")
            .await
            .status
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let newer = tokio::spawn({
        let path = path.clone();
        async move { http(addr, "GET", &path, &[], b"").await.status }
    });
    assert_eq!(waiting.await.unwrap(), 204);
    // DELETE ends the connection: 202, the waiting poll gets 204, the id is gone.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(http(addr, "DELETE", &path, &[], b"").await.status, 202);
    assert_eq!(newer.await.unwrap(), 204);
    assert_eq!(http(addr, "GET", &path, &[], b"").await.status, 404);
}

#[tokio::test]
async fn inactive_connections_are_dropped() {
    let options = HubOptions {
        disconnect_timeout: Duration::from_millis(200),
        ..HubOptions::default()
    };
    let server = start(options).await;
    let (_, unused) = negotiate(server.addr, "/hub").await;
    let (_, polling) = negotiate(server.addr, "/hub").await;
    assert_eq!(
        http(server.addr, "GET", &format!("/hub?id={polling}"), &[], b"")
            .await
            .status,
        200
    );
    assert_eq!(server.gateway.connection_count(), 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.gateway.connection_count(), 0);
    assert_eq!(
        http(server.addr, "GET", &format!("/hub?id={unused}"), &[], b"")
            .await
            .status,
        404
    );
    assert_eq!(
        http(server.addr, "GET", &format!("/hub?id={polling}"), &[], b"")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn server_sent_events_framing() {
    let server = start(HubOptions::default()).await;
    let addr = server.addr;
    let (_, token) = negotiate(addr, "/hub").await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::builder()
        .uri(format!("/hub?id={token}"))
        .header("host", "x")
        .header("accept", "text/event-stream")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache,no-store");
    let mut body = response.into_body();
    use http_body_util::BodyExt;
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b":\r\n");
    // A second SSE request for the same connection conflicts.
    let again = http(
        addr,
        "GET",
        &format!("/hub?id={token}"),
        &[("accept", "text/event-stream")],
        b"",
    )
    .await;
    assert_eq!(again.status, 409);
    // MessagePack is refused at the handshake over SSE.
    http(
        addr,
        "POST",
        &format!("/hub?id={token}"),
        &[],
        b"{\"protocol\":\"messagepack\",\"version\":1}\x1e",
    )
    .await;
    let mut text = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            text.extend_from_slice(&data);
        }
    }
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "data: {\"error\":\"Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format.\"}\u{1e}\r\n\r\n"
    );
}

#[tokio::test]
async fn server_sent_events_carry_keep_alive_pings() {
    let server = start(HubOptions {
        keep_alive_interval: Duration::from_millis(200),
        ..HubOptions::default()
    })
    .await;
    let addr = server.addr;
    let (_, token) = negotiate(addr, "/hub").await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::builder()
        .uri(format!("/hub?id={token}"))
        .header("host", "x")
        .header("accept", "text/event-stream")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let mut body = sender.send_request(request).await.unwrap().into_body();
    http(
        addr,
        "POST",
        &format!("/hub?id={token}"),
        &[],
        b"{\"protocol\":\"json\",\"version\":1}\x1e",
    )
    .await;
    use http_body_util::BodyExt;
    let mut text = String::new();
    let started = std::time::Instant::now();
    // The handshake reply, then a ping a keep-alive interval later, and another one after that.
    while text.matches("{\"type\":6}").count() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(3), body.frame())
            .await
            .expect("no keep-alive ping over SSE")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    assert!(text.starts_with(":\r\ndata: {}\u{1e}\r\n\r\n"), "{text:?}");
    assert!(
        text.contains("data: {\"type\":6}\u{1e}\r\n\r\n"),
        "{text:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
}
