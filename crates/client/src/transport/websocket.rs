//! The WebSockets transport: an HTTP/1.1 upgrade (fastwebsockets' client handshake), then a reader
//! task turning data frames into chunks and a writer task sending queued bytes as Text (JSON) or
//! Binary (MessagePack) frames. Stopping sends a 1000 close frame.

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite};
use http::header::{CONNECTION, HOST, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Incoming, Target, batch};
use crate::error::{Error, Result};

type Io = TokioIo<Upgraded>;

/// Frames the reader must send back (pongs, the close reply) go to the writer.
type Obligated = mpsc::UnboundedSender<(OpCode, Vec<u8>)>;

pub(super) async fn open(
    target: &Target<'_>,
    incoming: mpsc::Sender<Incoming>,
    outgoing: mpsc::UnboundedReceiver<Bytes>,
    stop: CancellationToken,
) -> Result<Vec<JoinHandle<()>>> {
    let authority = &target.url.authority;
    let address = if authority.contains(':') {
        authority.clone()
    } else {
        format!("{authority}:80")
    };
    let stream = TcpStream::connect(&address)
        .await
        .map_err(Error::transport)?;
    stream.set_nodelay(true).map_err(Error::transport)?;
    let mut request = Request::builder()
        .method("GET")
        .uri(target.url.path_and_query(target.token))
        .header(HOST, authority.as_str())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(SEC_WEBSOCKET_KEY, fastwebsockets::handshake::generate_key())
        .header(SEC_WEBSOCKET_VERSION, "13");
    for (name, value) in target.http.headers(target.access_token) {
        request = request.header(name, value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| Error::InvalidUrl(e.to_string()))?;
    let (mut ws, _) = fastwebsockets::handshake::client(&TokioExecutor::new(), request, stream)
        .await
        .map_err(|e| match e {
            WebSocketError::InvalidStatusCode(code) => Error::Http {
                status: StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
                body: "WebSocket upgrade refused".to_owned(),
            },
            other => Error::transport(other),
        })?;
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let (read, write) = ws.split(tokio::io::split);
    let (obligated, obligated_rx) = mpsc::unbounded_channel();
    let opcode = if target.binary {
        OpCode::Binary
    } else {
        OpCode::Text
    };
    let writer = tokio::spawn(write_loop(
        write,
        opcode,
        outgoing,
        obligated_rx,
        incoming.clone(),
        stop.clone(),
    ));
    tokio::spawn(read_loop(read, obligated, incoming, stop));
    Ok(vec![writer])
}

async fn read_loop(
    mut read: WebSocketRead<ReadHalf<Io>>,
    obligated: Obligated,
    incoming: mpsc::Sender<Incoming>,
    stop: CancellationToken,
) {
    let mut send_back = |frame: Frame<'_>| {
        let _ = obligated.send((frame.opcode, frame.payload.to_vec()));
        std::future::ready(Ok::<(), std::convert::Infallible>(()))
    };
    let end = loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return,
            frame = read.read_frame(&mut send_back) => frame,
        };
        match frame {
            Ok(frame) => match frame.opcode {
                OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                    let data = Bytes::copy_from_slice(&frame.payload);
                    if incoming.send(Incoming::Data(data)).await.is_err() {
                        return;
                    }
                }
                OpCode::Close => {
                    break Incoming::Closed {
                        graceful: true,
                        error: close_error(&frame.payload),
                    };
                }
                OpCode::Ping | OpCode::Pong => {}
            },
            Err(error) => {
                break Incoming::Closed {
                    graceful: false,
                    error: Some(error.to_string()),
                };
            }
        }
    };
    let _ = incoming.send(end).await;
}

/// A close frame other than 1000 (or empty) is an error, as the JS client treats it.
fn close_error(payload: &[u8]) -> Option<String> {
    let code = match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => return None,
    };
    (code != 1000).then(|| {
        let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
        format!("WebSocket closed with status code: {code} ({reason}).")
    })
}

async fn write_loop(
    mut write: WebSocketWrite<WriteHalf<Io>>,
    opcode: OpCode,
    mut outgoing: mpsc::UnboundedReceiver<Bytes>,
    mut obligated: mpsc::UnboundedReceiver<(OpCode, Vec<u8>)>,
    incoming: mpsc::Sender<Incoming>,
    stop: CancellationToken,
) {
    let result = loop {
        let frame = tokio::select! {
            biased;
            Some((opcode, payload)) = obligated.recv() => {
                Frame::new(true, opcode, None, Payload::Owned(payload))
            }
            Some(bytes) = outgoing.recv() => {
                let chunk = batch(bytes, &mut outgoing);
                Frame::new(true, opcode, None, Payload::Owned(chunk.to_vec()))
            }
            _ = stop.cancelled() => {
                let _ = write.write_frame(Frame::close(1000, b"")).await;
                return;
            }
            else => return,
        };
        if let Err(error) = write.write_frame(frame).await {
            break error;
        }
    };
    let _ = incoming
        .send(Incoming::Closed {
            graceful: false,
            error: Some(result.to_string()),
        })
        .await;
}
