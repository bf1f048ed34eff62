//! Long polling, and the POST and DELETE requests of the HTTP transports (protocol notes §1.4, §1.6).
//!
//! The first poll starts the application and answers 200 with no body at once. Later polls wait up to
//! the poll timeout for queued bytes and take everything queued; an idle timeout answers 200 empty, a
//! poll superseded by a newer one or a finished connection answers 204. Between polls the connection is
//! inactive, and the heartbeat drops it after the disconnect timeout.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hubcast_protocol::Transport;
use hyper::body::Incoming;

use super::{Body, Refusal, attach, bytes, empty, lookup, offered, start_with_posts, text};
use crate::GatewayInner;
use crate::auth::User;
use crate::close::CloseReason;
use crate::connection::{Attachment, Batch, Connection};
use crate::endpoint::Endpoint;

pub(super) async fn poll(
    inner: &Arc<GatewayInner>,
    endpoint: &Arc<Endpoint>,
    request: Request<Incoming>,
    remote: SocketAddr,
    user: Option<User>,
) -> Result<Response<Body>, Refusal> {
    offered(endpoint, Transport::LongPolling)?;
    let connection = lookup(inner, endpoint, &request, user.as_ref())?;
    Ok(match connection.attachment() {
        Attachment::None => {
            attach(&connection, Transport::LongPolling)?;
            let (parts, _) = request.into_parts();
            connection.bind_request(&parts, remote, user);
            start_with_posts(endpoint, connection);
            no_cache(bytes(
                StatusCode::OK,
                "application/octet-stream",
                bytes::Bytes::new(),
            ))
        }
        Attachment::LongPolling { .. } => wait(inner, &connection).await,
        Attachment::WebSocket | Attachment::ServerSentEvents => {
            return Err(Refusal::TransportChange);
        }
    })
}

/// Ends the poll's generation however the request ends (the client may drop it mid-wait).
struct PollGuard<'a> {
    connection: &'a Connection,
    generation: u64,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.connection.end_poll(self.generation);
    }
}

async fn wait(inner: &GatewayInner, connection: &Arc<Connection>) -> Response<Body> {
    let generation = connection.begin_poll();
    let _guard = PollGuard {
        connection,
        generation,
    };
    connection.poll_changed.notify_waiters();
    let timeout = connection.mount.options.long_polling_poll_timeout;
    let superseded = async {
        loop {
            connection.poll_changed.notified().await;
            if !connection.is_current_poll(generation) {
                break;
            }
        }
    };
    let batch = tokio::select! {
        biased;
        _ = superseded => return no_cache(empty(StatusCode::NO_CONTENT)),
        batch = connection.next_batch(None) => batch,
        _ = tokio::time::sleep(timeout) => {
            return no_cache(bytes(StatusCode::OK, "text/plain", bytes::Bytes::new()));
        }
    };
    match batch {
        Batch::Data(payload) => {
            if connection.outbound.is_finished() {
                // The Close is in this batch; nothing will follow it.
                inner.manager.remove(&connection.token);
            }
            no_cache(bytes(StatusCode::OK, "application/octet-stream", payload))
        }
        // Long polling has no keep-alive pings, and passes no buffer.
        Batch::Idle | Batch::Appended(_) => {
            no_cache(bytes(StatusCode::OK, "text/plain", bytes::Bytes::new()))
        }
        Batch::Done => {
            inner.manager.remove(&connection.token);
            no_cache(empty(StatusCode::NO_CONTENT))
        }
    }
}

fn no_cache(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::EXPIRES,
        HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
    );
    response
}

/// `POST {path}?id=…`: the client-to-server half of SSE and long polling.
pub(super) async fn send(
    inner: &Arc<GatewayInner>,
    endpoint: &Arc<Endpoint>,
    request: Request<Incoming>,
    user: Option<User>,
) -> Result<Response<Body>, Refusal> {
    let connection = lookup(inner, endpoint, &request, user.as_ref())?;
    if connection.attachment() == Attachment::WebSocket {
        return Err(Refusal::PostOnWebSocket);
    }
    let sender = connection.inbound_sender().ok_or(Refusal::UnknownId)?;
    let mut body = request.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refusal::BadBody)?;
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            sender.send(data).await.map_err(|_| Refusal::UnknownId)?;
        }
    }
    Ok(text(StatusCode::OK, ""))
}

/// `DELETE {path}?id=…`: ends a long-polling connection.
pub(super) fn delete<B>(
    inner: &Arc<GatewayInner>,
    endpoint: &Arc<Endpoint>,
    request: &Request<B>,
    user: Option<User>,
) -> Result<Response<Body>, Refusal> {
    let connection = lookup(inner, endpoint, request, user.as_ref())?;
    if !matches!(connection.attachment(), Attachment::LongPolling { .. }) {
        return Err(Refusal::DeleteNotLongPolling);
    }
    // Supersede a waiting poll so that it answers 204, then end the application.
    connection.begin_poll();
    connection.poll_changed.notify_waiters();
    connection.close_with(CloseReason::ClientClosed);
    connection.close_inbound();
    inner.manager.remove(&connection.token);
    Ok(text(StatusCode::ACCEPTED, ""))
}
