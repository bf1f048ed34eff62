//! `hubcast-ceiling`: the least a WebSocket fan-out server can do, as the yardstick of the benchmark
//! matrix (`hubcast-loadgen matrix`). Receivers connect to `/`; every text frame a client sends to
//! `/publish` is written, as it is, to every receiver: one shared payload, one `write_frame` per socket,
//! no protocol, no routing, no per-connection state beyond the socket and its task.
//!
//! Usage: `hubcast-ceiling [ADDR]` (default `127.0.0.1:0`); prints `listening on ADDR`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use fastwebsockets::upgrade::{is_upgrade_request, upgrade};
use fastwebsockets::{Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// Payloads kept for slow receivers; one that falls further behind skips messages.
const BACKLOG: usize = 4096;

fn main() -> anyhow::Result<()> {
    let address: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
        .parse()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(address))
}

async fn serve(address: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address).await?;
    println!("listening on {}", listener.local_addr()?);
    let (payloads, _) = broadcast::channel::<Bytes>(BACKLOG);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let payloads = payloads.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, payloads.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn handle(
    mut request: Request<Incoming>,
    payloads: broadcast::Sender<Bytes>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    if !is_upgrade_request(&request) {
        let mut response = Response::new(Empty::new());
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    }
    let publisher = request.uri().path() == "/publish";
    let Ok((response, socket)) = upgrade(&mut request) else {
        let mut response = Response::new(Empty::new());
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    };
    tokio::spawn(async move {
        let Ok(mut ws) = socket.await else { return };
        if publisher {
            // Every text frame is handed to all receivers as one shared buffer.
            while let Ok(frame) = ws.read_frame().await {
                match frame.opcode {
                    OpCode::Close => break,
                    OpCode::Text | OpCode::Binary => {
                        let _ = payloads.send(Bytes::copy_from_slice(&frame.payload));
                    }
                    _ => {}
                }
            }
        } else {
            let mut receiver = payloads.subscribe();
            loop {
                match receiver.recv().await {
                    Ok(payload) => {
                        let frame = Frame::text(Payload::Borrowed(&payload));
                        if ws.write_frame(frame).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }
    });
    Ok(response)
}
