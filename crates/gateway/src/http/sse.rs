//! The Server-Sent Events transport (server to client; the client POSTs the other way). The response
//! starts with the comment `:\r\n` so that EventSource fires `onopen` at once; each batch of queued bytes
//! becomes one event, every line of it a `data:` line. Text only, so MessagePack is refused at the
//! handshake.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hubcast_protocol::Transport;
use hyper::body::{Frame, Incoming};

use super::{Body, Refusal, attach, lookup, offered, start_with_posts};
use crate::GatewayInner;
use crate::auth::User;
use crate::connection::{Batch, Connection, ConnectionManager};
use crate::endpoint::Endpoint;

pub(super) fn open(
    inner: &Arc<GatewayInner>,
    endpoint: &Arc<Endpoint>,
    request: Request<Incoming>,
    remote: SocketAddr,
    user: Option<User>,
) -> Result<Response<Body>, Refusal> {
    offered(endpoint, Transport::ServerSentEvents)?;
    let connection = lookup(inner, endpoint, &request, user.as_ref())?;
    attach(&connection, Transport::ServerSentEvents)?;
    let (parts, _) = request.into_parts();
    connection.bind_request(&parts, remote, user);
    start_with_posts(endpoint, connection.clone());

    let stream = Stream {
        connection,
        manager: inner.manager.clone(),
        opened: false,
        done: false,
    };
    let body = StreamBody::new(futures_util::stream::unfold(stream, next_event)).boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache,no-store"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    Ok(response)
}

/// The response body's state. Dropping it (the client went away) ends the connection.
struct Stream {
    connection: Arc<Connection>,
    manager: Arc<ConnectionManager>,
    opened: bool,
    done: bool,
}

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.done {
            self.connection.close_transport_lost();
        }
        self.manager.remove(&self.connection.token);
    }
}

async fn next_event(mut stream: Stream) -> Option<(Result<Frame<Bytes>, Infallible>, Stream)> {
    if !stream.opened {
        stream.opened = true;
        return Some((Ok(Frame::data(Bytes::from_static(b":\r\n"))), stream));
    }
    let payload = match stream.connection.next_batch(None).await {
        Batch::Data(payload) => payload,
        Batch::Idle => stream
            .connection
            .keep_alive()
            .map(|(ping, _)| ping.clone())
            .unwrap_or_default(),
        Batch::Done => {
            stream.done = true;
            return None;
        }
        // Only a writer passing a buffer gets this.
        Batch::Appended(_) => Bytes::new(),
    };
    if payload.is_empty() {
        // A pong request or a spurious wake-up: SSE has nothing to send for it.
        return Some((Ok(Frame::data(Bytes::new())), stream));
    }
    Some((Ok(Frame::data(event(&payload))), stream))
}

/// Formats one SSE event: every `\n`-separated line (without a trailing `\r`) as `data: line\r\n`, then
/// an empty line.
fn event(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 16);
    for line in payload.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::event;

    #[test]
    fn events_split_lines() {
        assert_eq!(
            &event(b"{\"type\":6}\x1e")[..],
            b"data: {\"type\":6}\x1e\r\n\r\n"
        );
        assert_eq!(
            &event(b"a\r\nb\nc")[..],
            b"data: a\r\ndata: b\r\ndata: c\r\n\r\n"
        );
    }
}
