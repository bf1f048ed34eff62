//! `hubcast-client` against a live `hubcast serve --conformance` process: every transport × protocol,
//! invoke, send, handlers, streams both ways, client results, redirects, authentication, reconnect
//! after a server restart, stateful reconnect across a dropped TCP connection, and the server timeout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use hubcast_client::{
    Error, HubConnection, HubConnectionBuilder, HubConnectionState, Protocol, Transport,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts a node on `port` (0: any) and waits for its `listening on` line.
    async fn start(port: u16) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hubcast"))
            .args(["serve", "--conformance", "--admin-listen", "127.0.0.1:0"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--jwt-secret", "client-test-secret"])
            .env("HUBCAST_HISTORY", "none")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap();
                    return addr.parse::<SocketAddr>().unwrap();
                }
            }
            panic!("hubcast exited before listening");
        })
        .await
        .unwrap();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

fn combinations() -> Vec<(Transport, Protocol)> {
    let mut all = Vec::new();
    for transport in [
        Transport::WebSockets,
        Transport::ServerSentEvents,
        Transport::LongPolling,
    ] {
        for protocol in [Protocol::Json, Protocol::MessagePack] {
            // Server-Sent Events carry text only.
            if !(transport == Transport::ServerSentEvents && protocol == Protocol::MessagePack) {
                all.push((transport, protocol));
            }
        }
    }
    all
}

async fn connect(url: String, transport: Transport, protocol: Protocol) -> HubConnection {
    let connection = HubConnectionBuilder::new(url)
        .with_transports(&[transport])
        .with_protocol(protocol)
        .build()
        .unwrap();
    connection.start().await.unwrap();
    connection
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out")
        .expect("channel closed")
}

async fn wait_for_state(connection: &HubConnection, state: HubConnectionState) {
    let mut changes = connection.state_changes();
    tokio::time::timeout(WAIT, changes.wait_for(|s| *s == state))
        .await
        .expect("timed out waiting for state")
        .unwrap();
}

#[tokio::test]
async fn every_transport_and_protocol() {
    let server = Server::start(0).await;
    for (transport, protocol) in combinations() {
        let what = format!("{transport} {protocol}");
        let connection = connect(server.url("/testhub"), transport, protocol).await;
        assert!(connection.connection_id().is_some(), "{what}");

        let echoed: String = connection.invoke("Echo", ("hello",)).await.unwrap();
        assert_eq!(echoed, "hello", "{what}");
        let name: String = connection
            .invoke("GetActiveTransportName", ())
            .await
            .unwrap();
        assert_eq!(name, transport.name(), "{what}");

        // send + two handlers for one method (names are case-insensitive)
        let (tx, mut rx) = mpsc::unbounded_channel();
        let second = tx.clone();
        connection.on("Message", move |(text,): (String,)| tx.send(text).unwrap());
        connection.on("message", move |(text,): (String,)| {
            second.send(format!("2:{text}")).unwrap()
        });
        connection
            .send("InvokeWithString", ("ping",))
            .await
            .unwrap();
        assert_eq!(recv(&mut rx).await, "ping", "{what}");
        assert_eq!(recv(&mut rx).await, "2:ping", "{what}");

        // hub errors are typed
        let error = connection
            .invoke::<()>("ThrowException", ("boom",))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Hub(text) if text.contains("boom")),
            "{what}: {error}"
        );

        // server-to-client streams
        let items: Vec<String> = connection
            .stream::<String>("Stream", ())
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(items, ["a", "b", "c"], "{what}");
        assert_eq!(
            connection
                .stream::<i32>("EmptyStream", ())
                .await
                .unwrap()
                .count()
                .await,
            0
        );
        let mut failing = connection
            .stream::<String>("StreamThrowException", ("bad",))
            .await
            .unwrap();
        assert!(
            matches!(failing.next().await, Some(Err(Error::Hub(text))) if text.contains("bad"))
        );
        assert!(failing.next().await.is_none());

        // dropping a stream cancels it on the server
        let (canceled_tx, mut canceled) = mpsc::unbounded_channel();
        connection.on("StreamCanceled", move |()| canceled_tx.send(()).unwrap());
        let infinite = connection
            .stream::<String>("InfiniteStream", ())
            .await
            .unwrap();
        drop(infinite);
        recv(&mut canceled).await;

        // client-to-server streams
        let parts = futures_util::stream::iter(["a", "b", "c"].map(str::to_owned));
        let joined: String = connection
            .invoke_with_streams("StreamingConcat", (), vec![parts])
            .await
            .unwrap();
        assert_eq!(joined, "abc", "{what}");

        connection.stop().await;
        assert_eq!(connection.state(), HubConnectionState::Disconnected);
        assert!(matches!(
            connection.invoke::<String>("Echo", ("late",)).await,
            Err(Error::NotConnected)
        ));
    }
    server.kill().await;
}

#[tokio::test]
async fn client_results_over_every_transport_and_protocol() {
    let server = Server::start(0).await;
    let asker = connect(
        server.url("/cluster"),
        Transport::WebSockets,
        Protocol::Json,
    )
    .await;
    for (transport, protocol) in combinations() {
        let answerer = connect(server.url("/cluster"), transport, protocol).await;
        answerer.on_invoke("Ask", |(question,): (String,)| async move {
            if question == "fail" {
                Err("no answer".to_owned())
            } else {
                Ok(question.to_uppercase())
            }
        });
        let id = answerer.connection_id().unwrap();
        let answer: String = asker.invoke("Ask", (&id, "why")).await.unwrap();
        assert_eq!(answer, "WHY", "{transport} {protocol}");
        let error = asker
            .invoke::<String>("Ask", (&id, "fail"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Hub(text) if text.contains("no answer")),
            "{error}"
        );
        answerer.off("Ask");
        let error = asker.invoke::<String>("Ask", (&id, "x")).await.unwrap_err();
        assert!(
            matches!(&error, Error::Hub(text) if text.contains("didn't provide a result")),
            "{error}"
        );
        answerer.stop().await;
    }
    asker.stop().await;
    server.kill().await;
}

#[tokio::test]
async fn skip_negotiation_redirects_and_authentication() {
    let server = Server::start(0).await;
    let direct = HubConnectionBuilder::new(server.url("/testhub"))
        .with_transports(&[Transport::WebSockets])
        .skip_negotiation(true)
        .with_protocol(Protocol::MessagePack)
        .build()
        .unwrap();
    direct.start().await.unwrap();
    assert_eq!(direct.connection_id(), None);
    let echoed: String = direct.invoke("Echo", ("direct",)).await.unwrap();
    assert_eq!(echoed, "direct");
    direct.stop().await;

    let redirected =
        HubConnectionBuilder::new(server.url(&format!("/redirect?baseUrl=http://{}", server.addr)))
            .build()
            .unwrap();
    redirected.start().await.unwrap();
    let redirects: i64 = redirected.invoke("GetNumRedirects", ()).await.unwrap();
    assert!(redirects >= 1);
    redirected.stop().await;

    let anonymous = HubConnectionBuilder::new(server.url("/authorizedhub"))
        .build()
        .unwrap();
    let refused = anonymous.start().await.unwrap_err();
    assert!(
        matches!(&refused, Error::Http { status, .. } if status.as_u16() == 401),
        "{refused}"
    );
    assert_eq!(anonymous.state(), HubConnectionState::Disconnected);

    let token_url = server.url("/generatejwttoken");
    let authorized = HubConnectionBuilder::new(server.url("/authorizedhub"))
        .with_access_token_factory(move || {
            let token_url = token_url.clone();
            async move { fetch_text(&token_url).await }
        })
        .build()
        .unwrap();
    authorized.start().await.unwrap();
    let echoed: String = authorized.invoke("Echo", ("secret",)).await.unwrap();
    assert_eq!(echoed, "secret");
    authorized.stop().await;

    let nowhere = HubConnectionBuilder::new(server.url("/nohub"))
        .build()
        .unwrap();
    assert!(matches!(nowhere.start().await, Err(Error::Http { .. })));
    server.kill().await;
}

/// A plain HTTP GET of a text body (the test token endpoint).
async fn fetch_text(url: &str) -> hubcast_client::Result<String> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = TcpStream::connect(host).await.unwrap();
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
        .await
        .unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok(body.trim().to_owned())
}

#[tokio::test]
async fn automatic_reconnect_after_a_server_restart() {
    let server = Server::start(0).await;
    let port = server.addr.port();
    let connection = HubConnectionBuilder::new(server.url("/testhub"))
        .with_retry_policy(vec![Duration::from_millis(100); 100])
        .build()
        .unwrap();
    let (events, mut seen) = mpsc::unbounded_channel();
    let on_reconnecting = events.clone();
    connection.on_reconnecting(move |error| {
        on_reconnecting
            .send(format!("reconnecting: {error}"))
            .unwrap()
    });
    let on_reconnected = events.clone();
    connection.on_reconnected(move |id| {
        on_reconnected
            .send(format!("reconnected: {}", id.is_some()))
            .unwrap()
    });
    connection.start().await.unwrap();
    let first_id = connection.connection_id().unwrap();

    let pending = {
        let connection = connection.clone();
        tokio::spawn(async move {
            connection
                .stream::<String>("InfiniteStream", ())
                .await
                .unwrap()
                .next()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.kill().await;
    assert!(recv(&mut seen).await.starts_with("reconnecting"));
    // The pending stream fails with the connection.
    assert!(matches!(
        pending.await.unwrap(),
        Some(Err(Error::ConnectionClosed))
    ));
    assert!(matches!(
        connection.invoke::<String>("Echo", ("x",)).await,
        Err(Error::NotConnected)
    ));

    let server = Server::start(port).await;
    assert_eq!(recv(&mut seen).await, "reconnected: true");
    assert_eq!(connection.state(), HubConnectionState::Connected);
    assert_ne!(connection.connection_id().unwrap(), first_id);
    let echoed: String = connection.invoke("Echo", ("again",)).await.unwrap();
    assert_eq!(echoed, "again");

    // A policy that gives up closes the connection with the reason.
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    connection.on_closed(move |error| closed_tx.send(error).unwrap());
    server.kill().await;
    assert!(recv(&mut seen).await.starts_with("reconnecting"));
    let reason = tokio::time::timeout(Duration::from_secs(30), closed.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(reason.is_some());
    assert_eq!(connection.state(), HubConnectionState::Disconnected);
}

/// A TCP proxy whose live connections can be cut (both sockets dropped, no close frame).
struct Proxy {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted = links.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    let mut server = TcpStream::connect(upstream).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                accepted.lock().unwrap().push(link);
            }
        });
        Proxy { addr, links }
    }

    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

#[tokio::test]
async fn stateful_reconnect_resumes_across_a_dropped_tcp_connection() {
    let server = Server::start(0).await;
    let proxy = Proxy::start(server.addr).await;
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        let connection = HubConnectionBuilder::new(format!("http://{}/testhub", proxy.addr))
            .with_transports(&[Transport::WebSockets])
            .with_protocol(protocol)
            .with_stateful_reconnect()
            .build()
            .unwrap();
        let (events, mut seen) = mpsc::unbounded_channel::<String>();
        let reconnecting = events.clone();
        connection
            .on_reconnecting(move |e| reconnecting.send(format!("reconnecting {e}")).unwrap());
        let (tx, mut messages) = mpsc::unbounded_channel();
        connection.on("Message", move |(text,): (String,)| tx.send(text).unwrap());
        connection.start().await.unwrap();
        let id = connection.connection_id().unwrap();

        let mut expected = Vec::new();
        for round in 0..3 {
            for i in 0..10 {
                if i == 5 {
                    // Cut while messages are in flight both ways.
                    proxy.cut();
                }
                let text = format!("{round}.{i}");
                connection
                    .send("InvokeWithString", (text.as_str(),))
                    .await
                    .unwrap();
                expected.push(text);
            }
            let echoed: String = connection
                .invoke("Echo", (format!("after {round}"),))
                .await
                .unwrap();
            assert_eq!(echoed, format!("after {round}"));
        }
        let mut received = Vec::new();
        while received.len() < expected.len() {
            received.push(recv(&mut messages).await);
        }
        assert_eq!(
            received, expected,
            "{protocol}: every message once, in order"
        );
        assert_eq!(
            connection.connection_id().unwrap(),
            id,
            "the same connection"
        );
        assert!(seen.try_recv().is_err(), "no automatic reconnect ran");
        assert_eq!(connection.state(), HubConnectionState::Connected);
        connection.stop().await;
    }

    // Without stateful reconnect the same cut loses the connection.
    let plain = HubConnectionBuilder::new(format!("http://{}/testhub", proxy.addr))
        .with_transports(&[Transport::WebSockets])
        .build()
        .unwrap();
    plain.start().await.unwrap();
    proxy.cut();
    wait_for_state(&plain, HubConnectionState::Disconnected).await;
    server.kill().await;
}

#[tokio::test]
async fn server_timeout_closes_a_silent_connection() {
    let server = Server::start(0).await;
    for transport in [Transport::WebSockets, Transport::ServerSentEvents] {
        let connection = HubConnectionBuilder::new(server.url("/testhub"))
            .with_transports(&[transport])
            .with_server_timeout(Duration::from_millis(400))
            .build()
            .unwrap();
        let (closed_tx, mut closed) = mpsc::unbounded_channel();
        connection.on_closed(move |error| closed_tx.send(error).unwrap());
        connection.start().await.unwrap();
        assert_eq!(
            recv(&mut closed).await,
            Some(Error::ServerTimeout),
            "{transport}"
        );
        assert_eq!(connection.state(), HubConnectionState::Disconnected);
    }
    // Keep-alive pings from the client keep a busy server timeout away: with the server's
    // keep-alive at 15 s, a 400 ms timeout fired above; a connection that hears regularly does not.
    let connection = HubConnectionBuilder::new(server.url("/testhub"))
        .with_server_timeout(Duration::from_millis(600))
        .build()
        .unwrap();
    connection.start().await.unwrap();
    for _ in 0..6 {
        let _: String = connection.invoke("Echo", ("tick",)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(connection.state(), HubConnectionState::Connected);
    connection.stop().await;
    server.kill().await;
}
