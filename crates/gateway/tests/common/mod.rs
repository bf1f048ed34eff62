//! Test harness: a gateway on 127.0.0.1:0 with a test hub, a small HTTP client and a WebSocket client
//! that speaks the hub protocol.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use http_body_util::{BodyExt, Empty, Full};
use hubcast_backplane::MemoryBackplane;
use hubcast_gateway::hub::ClientStream;
use hubcast_gateway::{Context, EchoHandler, Gateway, GatewayBuilder, Hub, HubError, HubOptions};
use hubcast_protocol::{HubMessage, MessageReader, Protocol};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub struct TestServer {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    shutdown: CancellationToken,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Default)]
pub struct State {
    /// Server streams of `Forever` currently running (decremented when one is dropped).
    pub forever: Arc<std::sync::atomic::AtomicUsize>,
}
type Ctx = Context<State>;

/// Decrements the `Forever` counter when its stream is dropped.
struct Running(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The test hub: echo, add, a slow method, broadcasts and groups.
pub fn test_hub() -> Hub<State> {
    Hub::builder("test", State::default())
        .method("Echo", |_: Ctx, s: String| async move { Ok(s) })
        .method("Add", |_: Ctx, a: i64, b: i64| async move { Ok(a + b) })
        .method(
            "Big",
            |_: Ctx, size: usize| async move { Ok("z".repeat(size)) },
        )
        .method("Void", |_: Ctx| async move { Ok(()) })
        .method("Sleep", |_: Ctx, ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(ms)
        })
        .method("Fail", |_: Ctx, s: String| async move {
            Err::<(), _>(HubError::new(s))
        })
        .method("Crash", |_: Ctx| async move {
            Err::<(), _>(HubError::internal(
                "InvalidOperationException",
                "secret detail",
            ))
        })
        .method("Broadcast", |ctx: Ctx, s: String| async move {
            ctx.clients().all().send("Broadcast", &(s,)).await?;
            Ok(())
        })
        .method("Others", |ctx: Ctx, s: String| async move {
            ctx.clients().others().send("Others", &(s,)).await?;
            Ok(())
        })
        .method("Join", |ctx: Ctx, g: String| async move {
            ctx.groups().add(ctx.connection_id(), g).await?;
            Ok(())
        })
        .method("Leave", |ctx: Ctx, g: String| async move {
            ctx.groups().remove(ctx.connection_id(), g).await?;
            Ok(())
        })
        .method("ToGroup", |ctx: Ctx, g: String, s: String| async move {
            ctx.clients().group(g).send("Group", &(s,)).await?;
            Ok(())
        })
        .method("Flood", |ctx: Ctx, n: usize, size: usize| async move {
            let payload = "x".repeat(size);
            for i in 0..n {
                ctx.clients().all().send("Flood", &(&payload,)).await?;
                // Paced, so that a client that reads keeps up.
                if i % 10 == 9 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Ok(())
        })
        .stream("Counter", |_: Ctx, n: usize, size: usize| async move {
            let payload = "x".repeat(size);
            Ok(futures_util::stream::iter(
                (0..n).map(move |i| Ok::<_, HubError>((i, payload.clone()))),
            ))
        })
        .stream("Forever", |ctx: Ctx| async move {
            let running = ctx.state().forever.clone();
            running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let guard = Running(running);
            Ok(futures_util::stream::unfold(guard, |guard| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((Ok::<_, HubError>(1), guard))
            }))
        })
        .method("ForeverCount", |ctx: Ctx| async move {
            Ok(ctx
                .state()
                .forever
                .load(std::sync::atomic::Ordering::SeqCst))
        })
        .method(
            "Sum",
            |_: Ctx, mut values: ClientStream<i64>, delay_ms: u64| async move {
                let mut sum = 0;
                while let Some(value) = values.recv().await {
                    sum += value?;
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                }
                Ok(sum)
            },
        )
        .method("Limited", |_: Ctx| async move { Ok(()) })
        .rate_limit("Limited", 1.0, 1.0)
        .method("WhoAmI", |ctx: Ctx| async move {
            Ok(ctx.user_id().map(|u| u.to_string()))
        })
        .method("Admin", |_: Ctx| async move { Ok("admin things") })
        .require_roles("Admin", &["admin"])
        .method(
            "ToUser",
            |ctx: Ctx, user: String, text: String| async move {
                ctx.clients().user(user).send("ForUser", &(text,)).await?;
                Ok(())
            },
        )
        .method("AskCaller", |ctx: Ctx| async move {
            let n: i64 = ctx
                .clients()
                .caller()
                .invoke("GetNumber", &[(); 0])
                .await
                .map_err(|e| HubError::new(e.to_string()))?;
            Ok(n * 2)
        })
        .build()
}

pub async fn start(options: HubOptions) -> TestServer {
    start_with(options, None).await
}

/// The secret of [`token`].
pub const SECRET: &[u8] = b"test secret";

/// A token for `user` with `roles`, signed with `secret`, expiring `ttl` seconds from now.
pub fn token(secret: &[u8], user: &str, roles: &[&str], ttl: i64) -> String {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let claims = serde_json::json!({ "sub": user, "role": roles, "exp": now + ttl });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// A server that validates tokens signed with [`SECRET`] when `auth` is given.
pub async fn start_with(
    options: HubOptions,
    auth: Option<hubcast_gateway::auth::JwtAuth>,
) -> TestServer {
    start_with_sessions(options, auth, None).await
}

/// As [`start_with`], also accepting session cookies.
pub async fn start_with_sessions(
    options: HubOptions,
    auth: Option<hubcast_gateway::auth::JwtAuth>,
    sessions: Option<hubcast_sessions::SessionCookies>,
) -> TestServer {
    let backplane = Arc::new(MemoryBackplane::new());
    let mut builder = GatewayBuilder::new(backplane)
        .hub("/hub", test_hub(), options.clone())
        .connection_handler("/echo", EchoHandler, options);
    let auth = auth.map(Arc::new);
    if let Some(auth) = &auth {
        builder = builder.authentication(auth.clone());
    }
    if let Some(sessions) = sessions {
        let sessions = std::sync::Arc::new(sessions);
        builder = builder
            .sessions(sessions.clone())
            .route("/auth/", sessions.routes(auth));
    }
    serve_built(builder).await
}

/// Builds `builder` and serves it on a free loopback port.
pub async fn serve_built(builder: GatewayBuilder) -> TestServer {
    let gateway = builder.build().await.unwrap();
    let gateway = Arc::new(gateway);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let serving = gateway.clone();
    let token = shutdown.clone();
    tokio::spawn(async move {
        serving
            .serve(listener, token, Duration::from_millis(100))
            .await
    });
    TestServer {
        addr,
        gateway,
        shutdown,
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Negotiates (version 1) and returns (connectionId, connectionToken).
pub async fn negotiate(addr: SocketAddr, path: &str) -> (String, String) {
    let response = http(
        addr,
        "POST",
        &format!("{path}/negotiate?negotiateVersion=1"),
        &[],
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    let json = response.json();
    (
        json["connectionId"].as_str().unwrap().to_owned(),
        json["connectionToken"].as_str().unwrap().to_owned(),
    )
}

/// Opens a WebSocket; `Err(status)` when the server refuses the upgrade.
pub async fn ws_open(
    addr: SocketAddr,
    path_and_query: &str,
) -> Result<FragmentCollector<TokioIo<Upgraded>>, u16> {
    ws_open_with(addr, path_and_query, &[]).await
}

/// [`ws_open`] with extra request headers.
pub async fn ws_open_with(
    addr: SocketAddr,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> Result<FragmentCollector<TokioIo<Upgraded>>, u16> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let request = http::Request::builder()
        .method("GET")
        .uri(format!("http://{addr}{path_and_query}"))
        .header("host", addr.to_string())
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header(
            "sec-websocket-key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("sec-websocket-version", "13");
    let request = headers
        .iter()
        .fold(request, |request, (k, v)| request.header(*k, *v))
        .body(Empty::<Bytes>::new())
        .unwrap();
    match fastwebsockets::handshake::client(&TokioExecutor::new(), request, stream).await {
        Ok((ws, _)) => Ok(FragmentCollector::new(ws)),
        Err(fastwebsockets::WebSocketError::InvalidStatusCode(status)) => Err(status),
        Err(e) => panic!("{e}"),
    }
}

/// A hub client over a WebSocket.
pub struct HubClient {
    pub ws: FragmentCollector<TokioIo<Upgraded>>,
    reader: MessageReader,
    pub protocol: Protocol,
    pub pending: std::collections::VecDeque<HubMessage>,
    pub close_code: Option<u16>,
}

impl HubClient {
    /// Connects without negotiate and completes the handshake.
    pub async fn connect(addr: SocketAddr, protocol: Protocol) -> Self {
        Self::connect_to(addr, "/hub", protocol, 1).await
    }

    /// Opens a WebSocket on `path_and_query` without a handshake (a stateful reconnect).
    pub async fn reopen(addr: SocketAddr, path_and_query: &str, protocol: Protocol) -> Self {
        Self {
            ws: ws_open(addr, path_and_query).await.unwrap(),
            reader: MessageReader::new(protocol, None),
            protocol,
            pending: Default::default(),
            close_code: None,
        }
    }

    /// Connects to `path_and_query` and completes a handshake of `version`.
    pub async fn connect_to(
        addr: SocketAddr,
        path_and_query: &str,
        protocol: Protocol,
        version: i32,
    ) -> Self {
        let mut client = Self::reopen(addr, path_and_query, protocol).await;
        let handshake = format!(
            "{{\"protocol\":\"{}\",\"version\":{version}}}\x1e",
            protocol.name()
        );
        client.send_raw(handshake.as_bytes()).await;
        let frame = client.ws.read_frame().await.unwrap();
        assert!(
            frame.payload.starts_with(b"{}\x1e"),
            "handshake reply: {:?}",
            String::from_utf8_lossy(&frame.payload)
        );
        client.reader.push(&frame.payload[3..]);
        client
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let opcode =
            if self.protocol == Protocol::MessagePack && !bytes.starts_with(b"{\"protocol\"") {
                OpCode::Binary
            } else {
                OpCode::Text
            };
        self.ws
            .write_frame(Frame::new(
                true,
                opcode,
                None,
                Payload::Owned(bytes.to_vec()),
            ))
            .await
            .unwrap();
    }

    /// Sends a JSON hub message (given without its 0x1E).
    pub async fn send_json(&mut self, json: &str) {
        assert_eq!(self.protocol, Protocol::Json);
        self.send_raw(format!("{json}\x1e").as_bytes()).await;
    }

    /// The next hub message, or `None` when the socket closed or nothing came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<HubMessage> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Some(message);
            }
            if let Some(message) = self.reader.next_message().unwrap() {
                return Some(message);
            }
            let frame = tokio::time::timeout(wait, self.ws.read_frame())
                .await
                .ok()?
                .ok()?;
            match frame.opcode {
                OpCode::Close => {
                    self.close_code = frame
                        .payload
                        .get(..2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]));
                    return None;
                }
                _ => self.reader.push(&frame.payload),
            }
        }
    }

    /// The next message that is not a Ping.
    pub async fn next_non_ping(&mut self, wait: Duration) -> Option<HubMessage> {
        loop {
            match self.next(wait).await? {
                HubMessage::Ping => continue,
                other => return Some(other),
            }
        }
    }
}

pub const SECOND: Duration = Duration::from_secs(1);

/// The id and outcome of a Completion (panics on anything else).
pub fn completion(message: Option<HubMessage>) -> (String, hubcast_protocol::Outcome) {
    match message {
        Some(HubMessage::Completion(c)) => (c.invocation_id, c.outcome),
        other => panic!("expected a completion, got {other:?}"),
    }
}

/// A Completion's result, deserialized.
pub fn result<T: serde::de::DeserializeOwned>(outcome: hubcast_protocol::Outcome) -> T {
    match outcome {
        hubcast_protocol::Outcome::Result(raw) => raw.deserialize().unwrap(),
        other => panic!("expected a result, got {other:?}"),
    }
}

/// A Completion's error text.
pub fn error_text(outcome: hubcast_protocol::Outcome) -> String {
    match outcome {
        hubcast_protocol::Outcome::Error(text) => text,
        other => panic!("expected an error, got {other:?}"),
    }
}
