//! The HTTP listener under abuse (issue 17, items 2, 10 and 14): idle and slowloris sockets are closed,
//! connections over a cap are closed at accept, oversized heads get 431, HTTP/1.1 without `Host` gets
//! 400, and an error answered before a request body was read says `Connection: close`.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use hubcast_backplane::MemoryBackplane;
use hubcast_gateway::GatewayBuilder;
use hubcast_gateway::HubOptions;
use hubcast_gateway::ServerLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server(limits: ServerLimits) -> TestServer {
    let required = HubOptions {
        require_authentication: true,
        ..HubOptions::default()
    };
    let builder = GatewayBuilder::new(Arc::new(MemoryBackplane::new()))
        .hub("/hub", test_hub(), required)
        .authentication(hubcast_gateway::auth::JwtAuth::hmac(SECRET))
        .server_limits(limits);
    serve_built(builder).await
}

/// Reads until the peer closes (or `within` passes: then `None`).
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut out))
        .await
        .ok()
        .map(|_| String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn idle_and_slowloris_sockets_are_closed() {
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    };
    let server = server(limits).await;
    // A bare TCP connection that never sends a byte.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    // A request head sent a byte at a time, never finished.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let dribble = tokio::spawn(async move {
        for _ in 0..20 {
            if slow.write_all(b"X").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut rest = Vec::new();
        slow.read_to_end(&mut rest).await.is_ok()
    });
    assert!(
        read_to_close(&mut idle, Duration::from_secs(3))
            .await
            .is_some()
    );
    assert!(dribble.await.unwrap(), "the slow head was not cut off");
    // A kept-alive connection that goes quiet after a request is closed too.
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = read_to_close(&mut kept, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(answered.starts_with("HTTP/1.1 404"), "{answered}");
}

#[tokio::test]
async fn connections_over_a_cap_are_closed_at_accept() {
    let limits = ServerLimits {
        max_connections_per_ip: 3,
        ..ServerLimits::default()
    };
    let server = server(limits).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = TcpStream::connect(server.addr).await.unwrap();
    let _ = over.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        read_to_close(&mut over, Duration::from_secs(2))
            .await
            .as_deref(),
        Some(""),
        "the fourth connection got an answer"
    );
    // A place freed is a place taken again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = http(server.addr, "GET", "/nothing", &[], b"").await;
    assert_eq!(response.status, 404);
}

#[tokio::test]
async fn open_websockets_keep_their_places_under_the_caps() {
    let limits = ServerLimits {
        max_connections_per_ip: 2,
        header_read_timeout: Duration::from_secs(5),
        ..ServerLimits::default()
    };
    let server = server(limits).await;
    let token = format!("/hub?access_token={}", token(SECRET, "ann", &[], 60));
    let first =
        HubClient::connect_to(server.addr, &token, hubcast_protocol::Protocol::Json, 1).await;
    let second =
        HubClient::connect_to(server.addr, &token, hubcast_protocol::Protocol::Json, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let _ = third
        .write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(
        read_to_close(&mut third, Duration::from_secs(2))
            .await
            .as_deref(),
        Some(""),
        "a third connection was served while two WebSockets were open"
    );
    drop((first, second));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        http(server.addr, "GET", "/nothing", &[], b"").await.status,
        404
    );
}

#[tokio::test]
async fn oversized_heads_and_missing_host_are_refused() {
    let server = server(ServerLimits::default()).await;
    let big = "a".repeat(100 * 1024);
    let response = http(server.addr, "GET", "/nothing", &[("x-big", &big)], b"").await;
    assert_eq!(response.status, 431);

    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /nothing HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // HTTP/1.0 has no Host requirement.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /nothing HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 404") || answer.starts_with("HTTP/1.0 404"),
        "{answer}"
    );
}

#[tokio::test]
async fn an_early_error_to_a_request_with_a_body_closes_the_connection() {
    let server = server(ServerLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // No token: 401 before the body is read; the body follows later.
    stream
        .write_all(b"POST /hub?id=x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
}
