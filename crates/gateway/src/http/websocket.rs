//! The WebSockets transport. The upgrade task reads frames straight into the application (no channel);
//! a writer task drains the outbound queue, coalescing everything queued into one frame (Text for JSON,
//! Binary for MessagePack), sends keep-alive pings when idle, and ends with a close frame 1000.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload, WebSocket, WebSocketError, WebSocketWrite};
use http::{Request, Response};
use http_body_util::BodyExt;
use hubcast_protocol::Transport;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::WriteHalf;

use super::{Body, Refusal, attach, lookup, offered};
use crate::GatewayInner;
use crate::connection::{Batch, Connection, Inbound, RequestInfo};
use crate::endpoint::{Endpoint, run_application};

type WsWrite = WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>;

/// Largest single WebSocket frame accepted. Hub messages are limited separately (per message, by the
/// hub's maximum receive size); a frame may hold several of them, as the JS client batches sends.
const MAX_FRAME: usize = 1 << 20;

pub(super) fn upgrade(
    inner: &Arc<GatewayInner>,
    endpoint: &Arc<Endpoint>,
    mut request: Request<Incoming>,
    remote: SocketAddr,
) -> Result<Response<Body>, Refusal> {
    offered(endpoint, Transport::WebSockets)?;
    let has_id = request
        .uri()
        .query()
        .is_some_and(|q| hubcast_protocol::negotiate::query_param(q, "id").is_some());
    let connection = if has_id {
        lookup(inner, endpoint, &request)?
    } else {
        // Skip-negotiation clients: a fresh connection, negotiate version 0.
        inner
            .manager
            .create(endpoint.clone(), 0)
            .map_err(|_| Refusal::Internal)?
    };
    let (response, upgraded) =
        fastwebsockets::upgrade::upgrade(&mut request).map_err(|_| Refusal::BadUpgrade)?;
    attach(&connection, Transport::WebSockets)?;
    let (parts, _) = request.into_parts();
    connection.set_request(RequestInfo::from_parts(&parts, Some(remote)));
    let manager = inner.manager.clone();
    tokio::spawn(async move {
        match upgraded.await {
            Ok(ws) => run(connection.clone(), ws).await,
            Err(error) => {
                tracing::debug!(%error, "WebSocket upgrade failed");
                connection.close_transport_lost();
            }
        }
        manager.remove(&connection.token);
    });
    Ok(response.map(|body| body.map_err(|never| match never {}).boxed_unsync()))
}

async fn run(connection: Arc<Connection>, mut ws: WebSocket<TokioIo<Upgraded>>) {
    ws.set_auto_close(false);
    ws.set_auto_pong(true);
    ws.set_max_message_size(MAX_FRAME);
    let (read, write) = ws.split(tokio::io::split);
    let writer = tokio::spawn(write_loop(connection.clone(), write));
    run_application(connection.clone(), Inbound::WebSocket(Box::new(read))).await;
    let _ = writer.await;
}

async fn write_loop(connection: Arc<Connection>, mut ws: WsWrite) {
    let send_timeout = connection.endpoint.options.transport_send_timeout;
    loop {
        let period = connection.keep_alive().map(|(_, period)| *period);
        let batch = connection.outbound.next_batch(period).await;
        let step =
            tokio::time::timeout(send_timeout, write_batch(&connection, &mut ws, batch)).await;
        match step {
            Ok(Ok(true)) => continue,
            Ok(Ok(false)) => break,
            Ok(Err(error)) => {
                tracing::debug!(connection_id = %connection.id, %error, "WebSocket write failed");
                connection.close_transport_lost();
                break;
            }
            Err(_) => {
                tracing::debug!(connection_id = %connection.id, "WebSocket write timed out");
                connection.close_transport_lost();
                break;
            }
        }
    }
}

/// Writes one batch; false once the close frame is written.
async fn write_batch(
    connection: &Connection,
    ws: &mut WsWrite,
    batch: Batch,
) -> Result<bool, WebSocketError> {
    if let Some(payload) = connection.outbound.take_pong() {
        ws.write_frame(Frame::pong(Payload::Owned(payload.to_vec())))
            .await?;
    }
    let opcode = if connection.is_binary() {
        OpCode::Binary
    } else {
        OpCode::Text
    };
    match batch {
        Batch::Data(items) => {
            let payload = coalesce(items);
            if !payload.is_empty() {
                ws.write_frame(Frame::new(true, opcode, None, Payload::Borrowed(&payload)))
                    .await?;
            }
        }
        Batch::Idle => {
            if let Some((ping, _)) = connection.keep_alive() {
                ws.write_frame(Frame::new(true, opcode, None, Payload::Borrowed(ping)))
                    .await?;
            }
        }
        Batch::Done => {
            ws.write_frame(Frame::close(1000, b"")).await?;
            ws.flush().await?;
            return Ok(false);
        }
    }
    ws.flush().await?;
    Ok(true)
}

/// One buffer for everything queued (no copy for a single message).
pub(super) fn coalesce(items: std::collections::VecDeque<Bytes>) -> Bytes {
    match items.len() {
        0 => Bytes::new(),
        1 => items.into_iter().next().unwrap_or_default(),
        _ => {
            let mut out = BytesMut::with_capacity(items.iter().map(Bytes::len).sum());
            items.iter().for_each(|item| out.extend_from_slice(item));
            out.freeze()
        }
    }
}
