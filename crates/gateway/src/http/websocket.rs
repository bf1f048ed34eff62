//! The WebSockets transport. The upgrade task reads frames straight into the application (no channel;
//! see `connection::inbound` for the reader); a writer task drains the outbound queue, coalescing
//! everything queued into one frame (Text for JSON, Binary for MessagePack), sends keep-alive pings when
//! the heartbeat says one is due, and ends with a close frame.
//!
//! The writer keeps one frame buffer: queued messages are copied into it behind room for the head, and
//! the head is written in front of them, so a frame is one write with no allocation. A buffer grown
//! past [`RETAINED_FRAME`] by a burst is let go once written. Large messages (queued shared) go out as
//! a vectored write of head and payload. A write has a timer (the send timeout) only when the socket
//! cannot take it at once.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use http::{Request, Response};
use http_body_util::BodyExt;
use hubcast_protocol::Transport;
use hubcast_protocol::websocket::{MAX_SERVER_HEAD as MAX_HEAD, Opcode, server_head};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncWrite, AsyncWriteExt, WriteHalf};

use super::{Body, Refusal, attach, lookup, offered};
use crate::GatewayInner;
use crate::auth::User;
use crate::connection::{Batch, Connection, Inbound, WsRead};
use crate::endpoint::{App, Endpoint, run_application};

type WsWrite = WriteHalf<TokioIo<Upgraded>>;

pub(super) fn upgrade(
    inner: &Arc<GatewayInner>,
    endpoint: &Arc<Endpoint>,
    mut request: Request<Incoming>,
    remote: SocketAddr,
    user: Option<User>,
) -> Result<Response<Body>, Refusal> {
    offered(endpoint, Transport::WebSockets)?;
    let has_id = request
        .uri()
        .query()
        .is_some_and(|q| hubcast_protocol::negotiate::query_param(q, "id").is_some());
    let connection = if has_id {
        lookup(inner, endpoint, &request, user.as_ref())?
    } else {
        // Skip-negotiation clients: a fresh connection, negotiate version 0.
        inner
            .manager
            .create(
                endpoint.mount.clone(),
                0,
                user.as_ref().map(|u| u.id.clone()),
                Some(remote.ip()),
            )
            .map_err(|_| Refusal::Internal)?
            .ok_or(Refusal::TooManyConnections)?
    };
    let (response, upgraded) =
        fastwebsockets::upgrade::upgrade(&mut request).map_err(|_| Refusal::BadUpgrade)?;
    if let Err(refusal) = attach(&connection, Transport::WebSockets) {
        // A client coming back after a dropped socket (stateful reconnect): no negotiate, no handshake.
        if refusal == Refusal::SameTransportActive && connection.is_resumable() {
            tokio::spawn(hand_over(connection, upgraded));
            return Ok(response.map(|body| body.map_err(|never| match never {}).boxed_unsync()));
        }
        return Err(refusal);
    }
    let (mut parts, _) = request.into_parts();
    // The socket keeps its place under the listener's connection caps while it is open.
    let place = parts.extensions.remove::<hubcast_http::Place>();
    connection.bind_request(&parts, remote, user);
    let manager = inner.manager.clone();
    let app = endpoint.app.clone();
    tokio::spawn(async move {
        let _place = place;
        match upgraded.await {
            Ok(ws) => run(app, connection.clone(), ws.into_inner()).await,
            Err(error) => {
                tracing::debug!(%error, "WebSocket upgrade failed");
                connection.close_transport_lost();
            }
        }
        manager.remove(&connection.token);
    });
    Ok(response.map(|body| body.map_err(|never| match never {}).boxed_unsync()))
}

async fn run(app: App, connection: Arc<Connection>, io: TokioIo<Upgraded>) {
    let read = start(&connection, io);
    run_application(app, connection.clone(), Inbound::websocket(read)).await;
    // Let the writer send what the application queued last (its Close, the close frame).
    if let Some(writer) = connection.take_writer() {
        let _ = writer.await;
    }
}

/// Sets a new socket up for a connection: starts its writer (replacing any previous one) and returns
/// its read half for the application.
fn start(connection: &Arc<Connection>, io: TokioIo<Upgraded>) -> Box<WsRead> {
    let (read, write) = tokio::io::split(io);
    let writer = tokio::spawn(write_loop(connection.clone(), write));
    connection.set_writer(writer);
    Box::new(WsRead::new(read))
}

/// Gives a reconnecting client's socket to the session waiting for it, as the step that starts it: the
/// session takes it when it has queued its replay.
async fn hand_over(connection: Arc<Connection>, upgraded: fastwebsockets::upgrade::UpgradeFut) {
    let Ok(ws) = upgraded.await else { return };
    let io = ws.into_inner();
    // The session may not have noticed the old socket is gone yet.
    connection.socket_lost();
    for _ in 0..200 {
        if let Some(slot) = connection.take_socket_slot() {
            let _ = slot.send(Box::new(move |connection: &Arc<Connection>| {
                start(connection, io)
            }));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tracing::debug!(connection_id = %connection.id, "no session took the reconnecting socket");
}

/// Writes what the connection queues until the close frame, a failure, or an abort (a replacing
/// socket, or this one is gone: see [`Connection::set_writer`]).
async fn write_loop(connection: Arc<Connection>, mut ws: WsWrite) {
    let send_timeout = connection.mount.options.transport_send_timeout;
    let mut frame = Vec::new();
    loop {
        frame.clear();
        frame.resize(MAX_HEAD, 0);
        let batch = connection.next_batch(Some(&mut frame)).await;
        let step = {
            let write = write_batch(&connection, &mut ws, batch, &mut frame);
            tokio::pin!(write);
            // Most writes complete at once: only one the socket makes wait gets a timer.
            match poll_once(write.as_mut()).await {
                Some(done) => Ok(done),
                None => tokio::time::timeout(send_timeout, write).await,
            }
        };
        match step {
            Ok(Ok(true)) => {
                if frame.capacity() > RETAINED_FRAME {
                    frame = Vec::new();
                }
            }
            Ok(Ok(false)) => break,
            Ok(Err(error)) => {
                tracing::debug!(connection_id = %connection.id, %error, "WebSocket write failed");
                connection.transport_failed();
                break;
            }
            Err(_) => {
                tracing::debug!(connection_id = %connection.id, "WebSocket write timed out");
                connection.transport_failed();
                break;
            }
        }
    }
}

/// Polls `future` once: its output if it completed, `None` if it waits (woken as usual then).
async fn poll_once<F: Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut future).poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Writes one batch; false once the close frame is written. `frame` holds [`MAX_HEAD`] bytes of room
/// for a head, followed by the batch when it is [`Batch::Appended`].
async fn write_batch(
    connection: &Connection,
    ws: &mut WsWrite,
    batch: Batch,
    frame: &mut [u8],
) -> std::io::Result<bool> {
    if let Some(payload) = connection.outbound.take_pong() {
        write_frame(ws, Opcode::Pong, &payload).await?;
    }
    let opcode = if connection.is_binary() {
        Opcode::Binary
    } else {
        Opcode::Text
    };
    match batch {
        Batch::Appended(_) => {
            let framed = frame_in_place(frame, opcode);
            ws.write_all(framed).await?;
        }
        Batch::Data(payload) => {
            if !payload.is_empty() {
                write_frame(ws, opcode, &payload).await?;
            }
        }
        Batch::Idle => {
            if let Some((ping, _)) = connection.keep_alive() {
                write_frame(ws, opcode, ping).await?;
            }
        }
        Batch::Done => {
            let code = connection.websocket_close_code().to_be_bytes();
            write_frame(ws, Opcode::Close, &code).await?;
            ws.flush().await?;
            return Ok(false);
        }
    }
    ws.flush().await?;
    Ok(true)
}

/// A frame buffer grown past this is not kept for the next frame.
const RETAINED_FRAME: usize = 16 * 1024 + MAX_HEAD;

/// Writes the head for the payload behind `frame`'s [`MAX_HEAD`] bytes of room, right before the
/// payload, and returns the whole frame.
fn frame_in_place(frame: &mut [u8], opcode: Opcode) -> &[u8] {
    let payload = frame.len().saturating_sub(MAX_HEAD);
    let (head, used) = server_head(true, opcode, payload);
    let start = MAX_HEAD - used;
    if let (Some(room), Some(head)) = (frame.get_mut(start..MAX_HEAD), head.get(..used)) {
        room.copy_from_slice(head);
    }
    frame.get(start..).unwrap_or_default()
}

/// Payloads up to this size are copied behind their head and written in one write (one segment on the
/// wire, and cheaper than a vectored write for the small frames fan-out sends); larger ones go as a
/// vectored write of head and payload. Either way nothing stays allocated between frames.
const COPY_UP_TO: usize = 16 * 1024;

/// Writes one whole, unmasked frame.
async fn write_frame<W: AsyncWrite + Unpin>(
    ws: &mut W,
    opcode: Opcode,
    payload: &[u8],
) -> std::io::Result<()> {
    let (head, used) = server_head(true, opcode, payload.len());
    let mut head = head.get(..used).unwrap_or_default();
    if payload.len() <= COPY_UP_TO {
        let mut frame = Vec::with_capacity(head.len() + payload.len());
        frame.extend_from_slice(head);
        frame.extend_from_slice(payload);
        return ws.write_all(&frame).await;
    }
    let mut payload = payload;
    while !head.is_empty() || !payload.is_empty() {
        let parts = [std::io::IoSlice::new(head), std::io::IoSlice::new(payload)];
        let written = ws.write_vectored(&parts).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_head = written.min(head.len());
        head = head.get(from_head..).unwrap_or_default();
        payload = payload.get(written - from_head..).unwrap_or_default();
    }
    Ok(())
}
