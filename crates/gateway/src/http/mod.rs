//! The HTTP surface of a gateway node: routing (case-insensitive, per mapped path) and the responses of
//! the SignalR transport protocol (protocol notes §1). The accept loop, connection caps and the body
//! and handler types are hubcast-http's.

pub(crate) mod cors;
mod long_polling;
mod negotiate;
mod sse;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hubcast_http::{RemoteAddr, empty, text};
use hubcast_protocol::Transport;
use hubcast_protocol::negotiate::query_param;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::GatewayInner;
use crate::auth::User;
use crate::connection::{Attachment, Connection};
use crate::endpoint::Endpoint;
use crate::metrics::GatewayMetrics;

use hubcast_http::{Body, bytes};

/// Adds headers (cookies, say) to every successful negotiate response.
pub type NegotiateHook = Arc<dyn Fn(&http::request::Parts, &mut http::HeaderMap) + Send + Sync>;

/// Serves `inner` on `listener` until `shutdown` is cancelled.
pub(crate) async fn serve(
    inner: Arc<GatewayInner>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    let limits = inner.limits.clone();
    let metrics = inner.http_metrics.clone();
    let tls = inner.tls.clone();
    let handler = move |request, remote| dispatch(inner.clone(), request, remote);
    hubcast_http::serve(listener, &limits, &metrics, tls, shutdown, handler).await;
}

/// Routes one request.
async fn dispatch(
    inner: Arc<GatewayInner>,
    mut request: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Body> {
    let path = request.uri().path().to_ascii_lowercase();
    if let Some((_, handler)) = inner
        .routes
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
    {
        request.extensions_mut().insert(RemoteAddr(remote));
        return handler(request).await;
    }
    let trimmed = match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    for endpoint in &inner.endpoints {
        let is_transport = trimmed == endpoint.path();
        if !is_transport && trimmed.strip_suffix("/negotiate") != Some(endpoint.path()) {
            continue;
        }
        let headers = request.headers().clone();
        if request.method() == Method::OPTIONS {
            return inner.cors.preflight(&headers);
        }
        let mut response = match authenticate(&inner, endpoint, &request).await {
            Err(refusal) => refusal.response(&inner.metrics),
            Ok(_)
                if fastwebsockets::upgrade::is_upgrade_request(&request)
                    && !inner.cors.websocket_allowed(&headers) =>
            {
                Refusal::Forbidden.response(&inner.metrics)
            }
            Ok(user) if is_transport => transport(&inner, endpoint, request, remote, user).await,
            Ok(user) => negotiate::negotiate(&inner, endpoint, request, user, remote),
        };
        inner.cors.decorate(&headers, &mut response);
        return response;
    }
    match &inner.fallback {
        Some(fallback) => {
            request.extensions_mut().insert(RemoteAddr(remote));
            fallback(request).await
        }
        None => text(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// The request's user: `None` without a (valid) token, refused when the hub requires authentication.
/// Tokens are only read on hub paths (this is the only caller).
async fn authenticate<B>(
    inner: &GatewayInner,
    endpoint: &Endpoint,
    request: &Request<B>,
) -> Result<Option<User>, Refusal> {
    // A bearer token (the endpoint's own keys; else the configured keys, or a session token handed
    // out at sign-in), else the session cookie. Session tokens are told apart by their own key and
    // claims, so the configured issuer and audience bind every other token.
    let sessions = match endpoint.auth {
        Some(_) => None,
        None => inner.sessions.as_deref(),
    };
    let validator = endpoint.auth.as_ref().or(inner.auth.as_ref());
    let token = crate::auth::bearer_token(request.headers(), request.uri());
    let presented = token.is_some();
    let mut bearer = None;
    if let Some(token) = &token {
        bearer = validator.and_then(|auth| {
            auth.validate(token)
                .inspect_err(|error| tracing::debug!(%error, "bearer token refused"))
                .ok()
        });
        if bearer.is_none()
            && let Some(sessions) = sessions
        {
            bearer = sessions.validate(token).await;
        }
    }
    let failure = |reason: &str| {
        inner
            .metrics
            .auth_failures
            .with_label_values(&[reason])
            .inc();
    };
    if presented && bearer.is_none() {
        failure("invalid_token");
    }
    let user = match (bearer, sessions) {
        (Some(user), _) => Some(user),
        (None, Some(sessions)) => sessions.user(request.headers()).await,
        (None, None) => None,
    };
    if endpoint.options().require_authentication && user.is_none() {
        if !presented {
            failure("missing_credentials");
        }
        return Err(Refusal::Unauthorized);
    }
    Ok(user)
}

/// A request on an existing connection must come from the user that negotiated it (or, for a
/// connection negotiated anonymously, from the user whose request attached its transport): a leaked
/// connection token gives another user nothing.
fn same_user(connection: &Connection, user: Option<&User>) -> Result<(), Refusal> {
    let owner = connection
        .owner
        .as_ref()
        .or(connection.user().map(|u| &u.id));
    match owner {
        Some(owner) if user.map(|u| &u.id) != Some(owner) => Err(Refusal::Forbidden),
        _ => Ok(()),
    }
}

/// The node a request should be relayed to: the one its connection token names, when that is
/// another node, this node does not hold the connection, and the request was not relayed already.
fn relay_target<B>(inner: &GatewayInner, request: &Request<B>) -> Option<String> {
    inner.relay.as_ref()?;
    if request.headers().contains_key(crate::relay::RELAYED) {
        return None;
    }
    let token = query_param(request.uri().query().unwrap_or(""), "id")?;
    let node = crate::relay::token_node(&token)?;
    if Some(node) == inner.node_tag.as_deref() || inner.manager.get(&token).is_some() {
        return None;
    }
    Some(node.to_owned())
}

/// Dispatches a request on a mapped path by method and headers.
async fn transport(
    inner: &Arc<GatewayInner>,
    endpoint: &Arc<Endpoint>,
    request: Request<Incoming>,
    remote: SocketAddr,
    user: Option<User>,
) -> Response<Body> {
    if let (Some(node), Some(relay)) = (relay_target(inner, &request), &inner.relay) {
        return match relay.forward(&node, request).await {
            Some(response) => response,
            None => Refusal::UnknownId.response(&inner.metrics),
        };
    }
    let result = match *request.method() {
        Method::GET if fastwebsockets::upgrade::is_upgrade_request(&request) => {
            websocket::upgrade(inner, endpoint, request, remote, user)
        }
        Method::GET if accepts_event_stream(&request) => {
            sse::open(inner, endpoint, request, remote, user)
        }
        Method::GET => long_polling::poll(inner, endpoint, request, remote, user).await,
        Method::POST => long_polling::send(inner, endpoint, request, user).await,
        Method::DELETE => long_polling::delete(inner, endpoint, &request, user),
        _ => Ok(text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")),
    };
    result.unwrap_or_else(|refusal| refusal.response(&inner.metrics))
}

fn accepts_event_stream<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// A transport request the server refuses, mapped to its status and body in one place
/// (protocol notes §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unauthorized,
    Forbidden,
    TooManyConnections,
    NoId,
    UnknownId,
    NotSupported(Transport),
    SameTransportActive,
    TransportChange,
    PostOnWebSocket,
    DeleteNotLongPolling,
    BadUpgrade,
    BadBody,
    Internal,
}

impl Refusal {
    /// A low-cardinality name for metrics.
    fn label(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::Forbidden => "forbidden",
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::NoId => "no_id",
            Refusal::UnknownId => "unknown_connection",
            Refusal::NotSupported(_) => "transport_not_supported",
            Refusal::SameTransportActive => "transport_active",
            Refusal::TransportChange => "transport_change",
            Refusal::PostOnWebSocket => "post_on_websocket",
            Refusal::DeleteNotLongPolling => "delete_not_long_polling",
            Refusal::BadUpgrade => "bad_upgrade",
            Refusal::BadBody => "bad_body",
            Refusal::Internal => "internal",
        }
    }

    pub(crate) fn response(self, metrics: &GatewayMetrics) -> Response<Body> {
        metrics
            .http_refusals
            .with_label_values(&[self.label()])
            .inc();
        let (status, body) = match self {
            // Empty body: the JS client then reports `Unauthorized: Status code '401'`.
            Refusal::Unauthorized => return empty(StatusCode::UNAUTHORIZED),
            Refusal::Forbidden => return empty(StatusCode::FORBIDDEN),
            Refusal::TooManyConnections => (StatusCode::TOO_MANY_REQUESTS, "Too many connections"),
            Refusal::NoId => (StatusCode::BAD_REQUEST, "Connection ID required"),
            Refusal::UnknownId => (StatusCode::NOT_FOUND, "No Connection with that ID"),
            Refusal::NotSupported(Transport::WebSockets) => (
                StatusCode::NOT_FOUND,
                "WebSockets transport not supported by this end point type",
            ),
            Refusal::NotSupported(Transport::ServerSentEvents) => (
                StatusCode::NOT_FOUND,
                "ServerSentEvents transport not supported by this end point type",
            ),
            Refusal::NotSupported(Transport::LongPolling) => (
                StatusCode::NOT_FOUND,
                "LongPolling transport not supported by this end point type",
            ),
            Refusal::SameTransportActive => (
                StatusCode::CONFLICT,
                "Connection already has an active transport of this type",
            ),
            Refusal::TransportChange => (
                StatusCode::BAD_REQUEST,
                "Cannot change transports mid-connection",
            ),
            Refusal::PostOnWebSocket => (
                StatusCode::METHOD_NOT_ALLOWED,
                "POST requests are not allowed for WebSocket connections.",
            ),
            Refusal::DeleteNotLongPolling => (
                StatusCode::BAD_REQUEST,
                "Cannot terminate this connection using the DELETE endpoint.",
            ),
            Refusal::BadUpgrade => (StatusCode::BAD_REQUEST, "Invalid WebSocket upgrade request"),
            Refusal::BadBody => (StatusCode::BAD_REQUEST, "Error reading the request body"),
            Refusal::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        };
        text(status, body)
    }
}

/// Starts the application of an SSE or long-polling connection, whose input arrives in POSTs.
fn start_with_posts(endpoint: &Endpoint, connection: Arc<Connection>) {
    let inbound = connection.open_inbound();
    tokio::spawn(crate::endpoint::run_application(
        endpoint.app.clone(),
        connection,
        inbound,
    ));
}

/// Finds the connection named by the `id` query parameter, checking that `user` may use it.
fn lookup<B>(
    inner: &GatewayInner,
    endpoint: &Arc<Endpoint>,
    request: &Request<B>,
    user: Option<&User>,
) -> Result<Arc<Connection>, Refusal> {
    let query = request.uri().query().unwrap_or("");
    let token = query_param(query, "id").ok_or(Refusal::NoId)?;
    let connection = inner
        .manager
        .get(&token)
        .filter(|c| Arc::ptr_eq(&c.mount, &endpoint.mount))
        .ok_or(Refusal::UnknownId)?;
    same_user(&connection, user)?;
    Ok(connection)
}

/// Checks that the endpoint offers `transport`.
fn offered(endpoint: &Endpoint, transport: Transport) -> Result<(), Refusal> {
    if endpoint.options().transports.contains(&transport) {
        Ok(())
    } else {
        Err(Refusal::NotSupported(transport))
    }
}

/// Binds `transport` to a connection.
fn attach(connection: &Connection, transport: Transport) -> Result<(), Refusal> {
    connection.attach(transport).map_err(|existing| {
        let same = matches!(
            (existing, transport),
            (Attachment::WebSocket, Transport::WebSockets)
                | (Attachment::ServerSentEvents, Transport::ServerSentEvents)
                | (Attachment::LongPolling { .. }, Transport::LongPolling)
        );
        if same {
            Refusal::SameTransportActive
        } else {
            Refusal::TransportChange
        }
    })
}
