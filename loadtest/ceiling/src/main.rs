//! `hubcast-ceiling`: the least a WebSocket fan-out server can do, as the yardstick of the benchmark
//! matrix (`hubcast-loadgen matrix`). Receivers connect to `/`; every text frame a client sends to
//! `/publish` is written, as it is, to every receiver. No protocol, no routing, no per-connection
//! state beyond the socket. Two ways to do it:
//!
//! - default (**tasks**): one task per receiver fed by a broadcast channel, one `write_frame` per
//!   message and socket;
//! - `--sequential`: the publisher's task frames the payload once and writes those bytes to every
//!   socket in turn, waiting on each (no wake-ups, no queues); a socket whose write fails is dropped.
//!
//! Usage: `hubcast-ceiling [ADDR] [--sequential] [--backlog N]` (default `127.0.0.1:0`; the listen
//! backlog defaults to tokio's 128, as a bare server has it; hubcast's is 4096); prints
//! `listening on ADDR`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fastwebsockets::upgrade::{is_upgrade_request, upgrade};
use fastwebsockets::{Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;

/// Payloads kept for slow receivers; one that falls further behind skips messages.
const BACKLOG: usize = 4096;

/// How receivers get the payloads.
#[derive(Clone)]
enum Fanout {
    Tasks(broadcast::Sender<Bytes>),
    /// The receivers' sockets, written in turn by the publisher.
    Sequential(Arc<Mutex<Vec<TokioIo<Upgraded>>>>),
}

fn main() -> anyhow::Result<()> {
    let mut address: SocketAddr = "127.0.0.1:0".parse()?;
    let mut sequential = false;
    let mut backlog = 128;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sequential" => sequential = true,
            "--backlog" => backlog = args.next().unwrap_or_default().parse()?,
            other => address = other.parse()?,
        }
    }
    let fanout = if sequential {
        Fanout::Sequential(Arc::default())
    } else {
        Fanout::Tasks(broadcast::channel::<Bytes>(BACKLOG).0)
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(address, backlog, fanout))
}

async fn serve(address: SocketAddr, backlog: u32, fanout: Fanout) -> anyhow::Result<()> {
    let listener = hubcast_http::bind(address, backlog).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let fanout = fanout.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, fanout.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn handle(
    mut request: Request<Incoming>,
    fanout: Fanout,
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
            while let Ok(frame) = ws.read_frame().await {
                match frame.opcode {
                    OpCode::Close => break,
                    OpCode::Text | OpCode::Binary => match &fanout {
                        // Every text frame is handed to all receivers as one shared buffer.
                        Fanout::Tasks(payloads) => {
                            let _ = payloads.send(Bytes::copy_from_slice(&frame.payload));
                        }
                        Fanout::Sequential(sockets) => {
                            write_to_all(sockets, &text_frame(&frame.payload)).await;
                        }
                    },
                    _ => {}
                }
            }
        } else if let Fanout::Sequential(sockets) = &fanout {
            // Receivers send nothing the benchmark needs: keep only the socket.
            let io = ws.into_inner();
            sockets.lock().unwrap_or_else(|p| p.into_inner()).push(io);
        } else if let Fanout::Tasks(payloads) = &fanout {
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

/// An unmasked, final text frame holding `payload`.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x81);
    match payload.len() {
        len @ 0..=125 => frame.push(len as u8),
        len @ 126..=0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// Writes `frame` to every receiver in turn; receivers whose write fails are dropped.
async fn write_to_all(sockets: &Mutex<Vec<TokioIo<Upgraded>>>, frame: &[u8]) {
    // Taken out of the lock for the writes (new receivers wait in a fresh list meanwhile).
    let mut taken = std::mem::take(&mut *sockets.lock().unwrap_or_else(|p| p.into_inner()));
    let mut alive = Vec::with_capacity(taken.len());
    for mut io in taken.drain(..) {
        if io.write_all(frame).await.is_ok() {
            alive.push(io);
        }
    }
    sockets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .append(&mut alive);
}
