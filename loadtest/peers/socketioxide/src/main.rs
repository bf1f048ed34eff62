//! `socketioxide-peer`: the socketioxide server of hubcast's benchmark matrix.
//!
//! Workload: every socket of the main namespace joins room `bench` when it connects; an event
//! `publish` whose first argument is a string is emitted as `msg` (that string as the only argument)
//! to every socket in `bench`, the publisher included. Engine.IO over WebSocket only (no polling),
//! served straight by hyper's HTTP/1 connection with upgrades, as socketioxide's hyper example does.
//!
//! Settings (environment; see ../README.md and ../PROTOCOL.md):
//! - `PORT` (or the first argument; default 3000), `HOST` (default 127.0.0.1)
//! - `REDIS_URL`: run as one node of several sharing rooms through socketioxide-redis (RESP3);
//!   `REDIS_PREFIX` names its channels (default `socketioxide-bench`)
//! - `PING_INTERVAL_MS` (25000), `PING_TIMEOUT_MS` (20000): the Engine.IO heartbeat
//! - `MAX_PAYLOAD` (1000000 bytes): largest message accepted from a client
//! - `MAX_BUFFER_SIZE` (512 packets): packets queued for one socket before emits to it fail
//!
//! Prints `listening PORT` once the namespace (and the Redis adapter) is ready.

use std::convert::Infallible;
use std::error::Error;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide::{SocketIo, SocketIoBuilder, TransportType};
use socketioxide_redis::drivers::redis::redis_client as redis;
use socketioxide_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use tokio::net::TcpListener;

type BoxError = Box<dyn Error + Send + Sync>;

const ROOM: &str = "bench";

/// A setting from the environment, or `default` when unset.
fn setting<T: FromStr>(name: &str, default: T) -> Result<T, BoxError> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{name}: cannot parse {text:?}").into()),
        Err(_) => Ok(default),
    }
}

/// The port: `PORT`, else the first argument, else 3000.
fn port() -> Result<u16, BoxError> {
    let text = std::env::var("PORT")
        .ok()
        .or_else(|| std::env::args().nth(1))
        .unwrap_or_else(|| "3000".to_owned());
    text.trim()
        .parse()
        .map_err(|_| format!("bad port {text:?}").into())
}

/// The redis crate needs RESP3 for socketioxide-redis: add `protocol=resp3` unless the URL says.
fn resp3_url(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

/// The builder shared by both modes, with the engine settings from the environment.
fn configure(builder: SocketIoBuilder) -> Result<SocketIoBuilder, BoxError> {
    let max_payload: u64 = setting("MAX_PAYLOAD", 1_000_000)?;
    let max_message = usize::try_from(max_payload)?;
    Ok(builder
        .transports([TransportType::Websocket])
        .ping_interval(Duration::from_millis(setting("PING_INTERVAL_MS", 25_000)?))
        .ping_timeout(Duration::from_millis(setting("PING_TIMEOUT_MS", 20_000)?))
        .max_payload(max_payload)
        .ws_max_message_size(max_message)
        .ws_max_frame_size(max_message)
        .max_buffer_size(setting("MAX_BUFFER_SIZE", 512)?))
}

/// Joins `bench` and installs the `publish` handler. This runs as a connect middleware, which
/// socketioxide awaits before it answers `40{"sid":…}`; the connect handler itself is spawned after
/// that answer, so a client could otherwise publish, or be published to, before it was set up.
async fn set_up<A: Adapter>(socket: SocketRef<A>) -> Result<(), Infallible> {
    socket.join(ROOM);
    socket.on("publish", on_publish);
    Ok(())
}

async fn on_connect<A: Adapter>(_socket: SocketRef<A>) {}

async fn on_publish<A: Adapter>(socket: SocketRef<A>, Data(payload): Data<String>) {
    // `within` includes the sender (`to` would leave it out). A socket whose queue is full misses
    // this one message; the error lists such sockets and is not worth acting on here.
    let _ = socket.within(ROOM).emit("msg", payload.as_str()).await;
}

/// Serves every accepted connection with hyper's HTTP/1 (upgrades on) and `svc`.
async fn serve<S, B>(listener: TcpListener, svc: S) -> Result<(), BoxError>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: keep serving the sockets already open.
            Err(error) => {
                eprintln!("accept: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let port = port()?;
    let host: IpAddr = setting("HOST", IpAddr::from([127, 0, 0, 1]))?;
    let builder = configure(SocketIo::builder())?;
    let listener = TcpListener::bind(SocketAddr::new(host, port)).await?;
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            let client = redis::Client::open(resp3_url(&url))?;
            let config = RedisAdapterConfig::default().with_prefix(setting(
                "REDIS_PREFIX",
                "socketioxide-bench".to_owned(),
            )?);
            let adapter = RedisAdapterCtr::new_with_redis_config(&client, config).await?;
            let (svc, io) = builder
                .with_adapter::<RedisAdapter<_>>(adapter)
                .build_svc();
            io.ns("/", on_connect.with(set_up)).await?;
            println!("listening {port}");
            serve(listener, svc).await
        }
        _ => {
            let (svc, io) = builder.build_svc();
            io.ns("/", on_connect.with(set_up));
            println!("listening {port}");
            serve(listener, svc).await
        }
    }
}
