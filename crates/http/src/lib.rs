//! # hubcast-http
//!
//! The HTTP plumbing every hubcast listener shares, so the gateway, the control API and the binary
//! depend on it rather than on each other:
//! - the body and handler types ([`Body`], [`RouteHandler`]) and the response helpers ([`text`],
//!   [`bytes`], [`empty`]);
//! - [`serve`]: the accept loop on hyper 1.x (HTTP/1.1 with upgrades) with connection caps
//!   ([`ServerLimits`], see `listener`), request hygiene every listener wants (a `Host` header,
//!   `Connection: close` after an error to a request with a body) and graceful shutdown;
//! - [`admin`]: the `/live`, `/ready` and `/metrics` listener;
//! - [`throttle`]: log lines let through once a period.
//!
//! hyper's plain HTTP/1 connection is used rather than hyper-util's auto (HTTP/1 + h2c) builder: the
//! auto builder kept about 6 KiB more per idle WebSocket, and SignalR clients speak HTTP/1.1
//! (fastwebsockets has no WebSockets over HTTP/2 anyway).

pub mod admin;
mod listener;
mod metrics;
pub mod throttle;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use listener::{Place, ServerLimits, bind};
pub use metrics::HttpMetrics;
pub use tls::Tls;

/// The client's address, for handlers that need it in the request (custom routes; [`serve`] hands it
/// to its handler beside the request, so plain requests carry no extensions map).
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// The response body type of every handler.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A route: gets the whole request, returns the response.
pub type RouteHandler =
    Arc<dyn Fn(Request<Incoming>) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

/// A plain-text response.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    bytes(status, "text/plain", Bytes::from_static(body.as_bytes()))
}

/// A response with a body and content type.
pub fn bytes(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// An empty response.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().boxed_unsync());
    *response.status_mut() = status;
    response
}

/// Serves `handler` on `listener` until `shutdown` is cancelled, then lets each connection finish the
/// request in flight and take no other (graceful shutdown; upgraded connections are the handler's).
///
/// The handler gets each request with its client's address. An upgrade request carries the
/// connection's [`Place`] in its extensions: the upgraded socket keeps it, so it counts against the
/// caps for as long as it is open.
///
/// With `tls`, every connection is TLS (HTTP/1.1 inside, WebSocket upgrades included); its handshake
/// must complete within the header-read timeout.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: &ServerLimits,
    metrics: &HttpMetrics,
    tls: Option<Tls>,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let admission = listener::Admission::new(limits, metrics.clone());
    let http1 = limits.http1();
    let errors = listener::ErrorLog::new(metrics.clone());
    let handshake_timeout = limits.header_read_timeout;
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener::accept(&listener, &errors) => accepted,
        };
        // Over a cap: closed at once, before any byte is read.
        let Some(admitted) = admission.admit(remote.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let closing = shutdown.clone();
        let http1 = http1.clone();
        let place = Place::new(admitted);
        // Two monomorphic paths rather than one over an enum of streams: a plain connection carries
        // no TLS state, not even an empty variant's room.
        match &tls {
            None => {
                tokio::spawn(serve_connection(
                    stream, remote, place, http1, handler, closing,
                ));
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, remote, place, http1, handler, closing).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, %remote, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// Serves HTTP/1.1 (with upgrades) on one accepted connection until it ends or the shutdown.
async fn serve_connection<IO, H, F>(
    io: IO,
    remote: SocketAddr,
    place: Place,
    http1: hyper::server::conn::http1::Builder,
    handler: H,
    closing: CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let handler = handler.clone();
        // Only an upgrade outlives this task; other requests need no place of their own.
        if request.headers().contains_key(header::UPGRADE) {
            request.extensions_mut().insert(place.clone());
        }
        async move { Ok::<_, Infallible>(hygiene(request, remote, handler).await) }
    });
    let connection = http1
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    // On shutdown a kept-alive HTTP connection takes no new request: clients reconnecting
    // automatically must go to another node, not back to this one.
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = closing.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::trace!(%error, "HTTP connection ended with an error");
    }
}

/// Serves one request: refuses HTTP/1.1 requests without `Host` (RFC 9112 §3.2), hands the rest to
/// `handler`, and closes the connection after an error answered to a request with a body (the handler
/// may not have read it, so the connection cannot carry another request; the client is told so).
async fn hygiene<H, F>(request: Request<Incoming>, remote: SocketAddr, handler: H) -> Response<Body>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F,
    F: Future<Output = Response<Body>>,
{
    if request.version() == http::Version::HTTP_11 && !request.headers().contains_key(header::HOST)
    {
        let mut response = text(StatusCode::BAD_REQUEST, "Host header required");
        close_after(&mut response);
        return response;
    }
    let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
        || request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let mut response = handler(request, remote).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        close_after(&mut response);
    }
    response
}

fn close_after(response: &mut Response<Body>) {
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
}
