//! # hubcast-control
//!
//! The stateless control API: backends in any language push to clients and manage groups over REST,
//! without holding client connections. It speaks Azure SignalR's data-plane **v1** paths
//! (`/api/v1/hubs/{hub}/…`) plus a few of the newer operations (closing a user's, a group's or a hub's
//! connections, paged listings of a group's connections and a hub's online users, client tokens), and
//! works over any [`Backplane`]: mounted at `/api` on a single node (in-memory backplane), or as its own
//! process (`hubcast control`) over Redis, any number of replicas behind a plain load balancer.
//!
//! Modules: `routes` (the route table and path parsing), `auth` (bearer JWT with the access key, API
//! keys), and this file (executing a route, JSON bodies and errors). The OpenAPI document is
//! `openapi.json` beside this file, served at `/api/openapi.json`.

mod auth;
mod routes;
mod throttle;

pub use throttle::DEFAULT_FREE_FAILURES;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hubcast_backplane::{
    Backplane, BackplaneError, ConnectionId, GroupAction, GroupCommand, GroupName, Publish,
    RemoteError, SerializedMessage, Target, UserId,
};
use hubcast_http::bytes as response;
use hubcast_http::{Body, RemoteAddr, RouteHandler};
use hubcast_protocol::{HubMessage, Invocation, NamingPolicy};
use hyper::body::Incoming;
use serde::Deserialize;

pub use auth::{ControlAuth, InvalidHash};
use routes::{Route, RouteError};

/// The OpenAPI 3 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The largest request body accepted (a send's target and arguments).
const MAX_BODY: usize = 1024 * 1024;
/// Page size of listings unless `top` says otherwise, and its maximum.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// Longest lifetime of a client token `:generateToken` issues.
const MAX_TOKEN_MINUTES: u64 = 7 * 24 * 60;

/// The claims of a client token `:generateToken` issues.
#[derive(serde::Serialize)]
struct ClientClaims<'a> {
    sub: &'a str,
    role: &'a [String],
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// The control API over a backplane.
pub struct ControlApi {
    backplane: Arc<dyn Backplane>,
    auth: ControlAuth,
    token_key: Option<jsonwebtoken::EncodingKey>,
    /// Failed authentications per client address.
    failures: throttle::FailureBudget,
    /// The `iss` and `aud` the gateways require of client tokens, put into the tokens it issues.
    token_issuer: Option<String>,
    token_audience: Option<String>,
    metrics: ControlMetrics,
}

/// The control API's series (`hubcast_control_requests_total`), registered by the binary.
#[derive(Clone)]
struct ControlMetrics {
    requests: prometheus::IntCounterVec,
}

impl ControlMetrics {
    fn new() -> Self {
        let opts = prometheus::Opts::new(
            "hubcast_control_requests_total",
            "Control-API requests by status",
        );
        Self {
            requests: prometheus::IntCounterVec::new(opts, &["status"])
                .unwrap_or_else(|e| unreachable!("a static metric definition: {e}")),
        }
    }
}

/// A failed request, sent as `{"code", "message"}`.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    /// The machine-readable error code (`HubNotFound`, …).
    code: &'static str,
    message: String,
    /// Extra headers: the methods allowed of a 405, the `Retry-After` of a 429.
    headers: Vec<(http::HeaderName, String)>,
}

fn fail(status: StatusCode, code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        status,
        code,
        message: message.into(),
        headers: Vec::new(),
    }
}

/// The 429 of an address over its failure budget.
fn too_many_failures(wait: std::time::Duration) -> Failure {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Failure {
        headers: vec![(http::header::RETRY_AFTER, seconds.to_string())],
        ..fail(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyFailedAuthentications",
            format!("Too many failed authentications from this address; retry after {seconds} s."),
        )
    }
}

impl From<BackplaneError> for Failure {
    fn from(error: BackplaneError) -> Self {
        match error {
            BackplaneError::UnknownHub(hub) => fail(
                StatusCode::NOT_FOUND,
                "HubNotFound",
                format!("No hub named '{hub}' runs here."),
            ),
            other => fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "BackplaneUnavailable",
                other.to_string(),
            ),
        }
    }
}

impl From<RemoteError> for Failure {
    fn from(error: RemoteError) -> Self {
        match error {
            RemoteError::UnknownConnection(id) | RemoteError::Disconnected(id) => fail(
                StatusCode::NOT_FOUND,
                "ConnectionNotFound",
                format!("Connection '{id}' does not exist."),
            ),
            RemoteError::TooManyGroups => fail(
                StatusCode::BAD_REQUEST,
                "TooManyGroups",
                "The connection is in too many groups.",
            ),
            RemoteError::Timeout => fail(
                StatusCode::GATEWAY_TIMEOUT,
                "Timeout",
                "The node holding the connection did not answer in time.",
            ),
            RemoteError::Backplane(error) => error.into(),
        }
    }
}

/// A send's body.
#[derive(Debug, Deserialize)]
struct SendBody {
    target: String,
    #[serde(default)]
    arguments: Vec<serde_json::Value>,
}

/// The query parameters the endpoints read.
#[derive(Debug, Default)]
struct Query {
    excluded: Vec<ConnectionId>,
    reason: Option<String>,
    top: Option<String>,
    skip: Option<String>,
    user_id: Option<String>,
    minutes: Option<String>,
    roles: Vec<String>,
}

impl Query {
    fn parse(query: Option<&str>) -> Self {
        let mut parsed = Self::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let value = value.into_owned();
            match key.as_ref() {
                "excluded" => parsed.excluded.push(ConnectionId::from(value)),
                "reason" => parsed.reason = Some(value),
                "top" => parsed.top = Some(value),
                "skip" => parsed.skip = Some(value),
                "userId" => parsed.user_id = Some(value),
                "minutesToExpire" => parsed.minutes = Some(value),
                "role" => parsed.roles.push(value),
                _ => {}
            }
        }
        parsed
    }

    /// `(skip, top)` of a listing.
    fn page(&self) -> Result<(usize, usize), Failure> {
        let number = |value: &Option<String>, default: usize, name: &str| match value {
            None => Ok(default),
            Some(text) => text.parse::<usize>().map_err(|_| {
                fail(
                    StatusCode::BAD_REQUEST,
                    "InvalidQuery",
                    format!("'{name}' must be a non-negative integer."),
                )
            }),
        };
        let top = number(&self.top, DEFAULT_PAGE, "top")?;
        if !(1..=MAX_PAGE).contains(&top) {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "InvalidQuery",
                format!("'top' must be 1 to {MAX_PAGE}."),
            ));
        }
        Ok((number(&self.skip, 0, "skip")?, top))
    }

    fn reason(&self) -> String {
        self.reason
            .clone()
            .unwrap_or_else(|| "Closed by the server.".to_owned())
    }
}

/// A JSON response.
fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    response(status, "application/json", Bytes::from(value.to_string()))
}

fn empty(status: StatusCode) -> Response<Body> {
    response(status, "application/json", Bytes::new())
}

/// 200 when `exists`, else 404 with `code`.
fn existence(exists: bool, code: &'static str, what: String) -> Result<Response<Body>, Failure> {
    if exists {
        Ok(empty(StatusCode::OK))
    } else {
        Err(fail(StatusCode::NOT_FOUND, code, what))
    }
}

/// One page of `items` with the link to the next one.
fn page(path: &str, items: Vec<serde_json::Value>, (skip, top): (usize, usize)) -> Response<Body> {
    let total = items.len();
    let value: Vec<serde_json::Value> = items.into_iter().skip(skip).take(top).collect();
    let next_skip = skip.saturating_add(top);
    let next = (next_skip < total).then(|| format!("{path}?top={top}&skip={next_skip}"));
    json(
        StatusCode::OK,
        &serde_json::json!({ "value": value, "nextLink": next }),
    )
}

impl ControlApi {
    /// The API over `backplane`, accepting the credentials of `auth`.
    pub fn new(backplane: Arc<dyn Backplane>, auth: ControlAuth) -> Self {
        Self {
            backplane,
            auth,
            token_key: None,
            failures: throttle::FailureBudget::new(throttle::DEFAULT_FREE_FAILURES),
            token_issuer: None,
            token_audience: None,
            metrics: ControlMetrics::new(),
        }
    }

    /// Adds the API's series to `registry` (the process's, served at `/metrics`).
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.metrics.requests.clone()))
    }

    /// Serves the API alone on `listener` until `shutdown` (the `hubcast control` process), with the
    /// listener's `limits`.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        limits: &hubcast_http::ServerLimits,
        metrics: &hubcast_http::HttpMetrics,
        tls: Option<hubcast_http::Tls>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let handler = move |mut request: Request<Incoming>, remote| {
            request.extensions_mut().insert(RemoteAddr(remote));
            let api = self.clone();
            async move { api.handle(request).await }
        };
        hubcast_http::serve(listener, limits, metrics, tls, shutdown, handler).await;
    }

    /// Lets `:generateToken` issue client tokens signed HS256 with `key` (the gateway's token secret).
    pub fn with_token_key(mut self, key: &[u8]) -> Self {
        self.token_key = Some(jsonwebtoken::EncodingKey::from_secret(key));
        self
    }

    /// Failed authentications a minute each client address may make before it is paused (429 with a
    /// doubling `Retry-After`); 0 for no limit (behind a proxy that hides client addresses, say).
    pub fn with_failure_budget(mut self, per_minute: u32) -> Self {
        self.failures = throttle::FailureBudget::new(per_minute);
        self
    }

    /// Puts `iss` and `aud` into the client tokens `:generateToken` issues (the gateways'
    /// `--jwt-issuer` and `--jwt-audience`, which they require of every bearer token).
    pub fn with_token_claims(mut self, issuer: Option<String>, audience: Option<String>) -> Self {
        self.token_issuer = issuer;
        self.token_audience = audience;
        self
    }

    /// A handler for `GatewayBuilder::route("/api/", …)`.
    pub fn route_handler(self: Arc<Self>) -> RouteHandler {
        Arc::new(move |request| {
            let api = self.clone();
            Box::pin(async move { api.handle(request).await })
        })
    }

    /// Serves one request.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let address = parts
            .extensions
            .get::<RemoteAddr>()
            .map(|remote| remote.0.ip());
        // An address that failed to authenticate too often waits, whatever it sends now.
        let result = match address.and_then(|a| self.failures.blocked(a)) {
            Some(wait) => Err(too_many_failures(wait)),
            None => self.dispatch(&parts, body).await,
        };
        // Only presented credentials count: a guesser always presents one.
        let presented = parts.headers.contains_key(http::header::AUTHORIZATION)
            || parts.headers.contains_key("x-api-key");
        if let (Err(failure), Some(address)) = (&result, address)
            && failure.status == StatusCode::UNAUTHORIZED
            && presented
            && let Some(pause) = self.failures.failed(address)
        {
            tracing::info!(%address, ?pause, "control API: too many failed authentications");
        }
        let status = match &result {
            Ok(response) => response.status(),
            Err(failure) => failure.status,
        };
        self.metrics
            .requests
            .with_label_values(&[status.as_str()])
            .inc();
        match result {
            Ok(response) => response,
            Err(Failure {
                status,
                code,
                message,
                headers,
            }) => {
                if status.is_server_error() {
                    tracing::warn!(code, %message, path = parts.uri.path(), "control API request failed");
                }
                let mut response = json(
                    status,
                    &serde_json::json!({ "code": code, "message": message }),
                );
                for (name, value) in headers {
                    if let Ok(value) = http::HeaderValue::from_str(&value) {
                        response.headers_mut().insert(name, value);
                    }
                }
                response
            }
        }
    }

    async fn dispatch(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<Response<Body>, Failure> {
        let path = parts.uri.path();
        let route = routes::parse(&parts.method, path).map_err(|error| match error {
            RouteError::NotFound => fail(StatusCode::NOT_FOUND, "NotFound", "No such endpoint."),
            RouteError::MethodNotAllowed(allowed) => {
                let allow: Vec<&str> = allowed.iter().map(http::Method::as_str).collect();
                Failure {
                    headers: vec![(http::header::ALLOW, allow.join(", "))],
                    ..fail(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "MethodNotAllowed",
                        format!("{} is not allowed here.", parts.method),
                    )
                }
            }
            RouteError::Invalid(code, message) => fail(StatusCode::BAD_REQUEST, code, message),
        })?;
        match route {
            Route::Health => return Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
            Route::OpenApi => {
                return Ok(response(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from_static(OPENAPI.as_bytes()),
                ));
            }
            _ => {}
        }
        self.auth
            .check(&parts.headers, path)
            .map_err(|refused| fail(StatusCode::UNAUTHORIZED, "Unauthorized", refused.message()))?;
        let query = Query::parse(parts.uri.query());
        self.execute(route, query, path, body).await
    }

    async fn execute(
        &self,
        route: Route,
        query: Query,
        path: &str,
        body: Incoming,
    ) -> Result<Response<Body>, Failure> {
        let backplane = &self.backplane;
        let accepted = || empty(StatusCode::ACCEPTED);
        let ok = || empty(StatusCode::OK);
        match route {
            Route::Health | Route::OpenApi => Ok(ok()),
            Route::Broadcast(hub) => {
                self.send(hub, Target::All, query.excluded, body).await?;
                Ok(accepted())
            }
            Route::SendUser(hub, user) => {
                self.send(hub, Target::Users(vec![user]), Vec::new(), body)
                    .await?;
                Ok(accepted())
            }
            Route::SendGroup(hub, group) => {
                let target = Target::Groups(vec![group]);
                self.send(hub, target, query.excluded, body).await?;
                Ok(accepted())
            }
            Route::SendConnection(hub, connection) => {
                let target = Target::Connections(vec![connection]);
                self.send(hub, target, Vec::new(), body).await?;
                Ok(accepted())
            }
            Route::CloseHub(hub) => {
                backplane.close(&hub, Target::All, query.reason()).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            Route::CloseUser(hub, user) => {
                let target = Target::Users(vec![user]);
                backplane.close(&hub, target, query.reason()).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            Route::CloseGroup(hub, group) => {
                let target = Target::Groups(vec![group]);
                backplane.close(&hub, target, query.reason()).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            Route::CloseConnection(hub, connection) => {
                let target = Target::Connections(vec![connection]);
                backplane.close(&hub, target, query.reason()).await?;
                Ok(ok())
            }
            Route::UserExists(hub, user) => {
                let connections = backplane.user_connections(&hub, &user).await?;
                existence(
                    !connections.is_empty(),
                    "UserNotFound",
                    format!("User '{user}' has no connection."),
                )
            }
            Route::GroupExists(hub, group) => {
                let members = backplane.group_members(&hub, &group).await?;
                existence(
                    !members.is_empty(),
                    "GroupNotFound",
                    format!("Group '{group}' has no connection."),
                )
            }
            Route::ConnectionExists(hub, connection) => {
                let exists = backplane.connection_exists(&hub, &connection).await?;
                existence(
                    exists,
                    "ConnectionNotFound",
                    format!("Connection '{connection}' does not exist."),
                )
            }
            Route::UserInGroup(hub, group, user) => {
                let members = backplane.group_members(&hub, &group).await?;
                existence(
                    members.iter().any(|m| m.user.as_ref() == Some(&user)),
                    "UserNotInGroup",
                    format!("User '{user}' has no connection in group '{group}'."),
                )
            }
            Route::AddConnection(hub, group, connection) => {
                self.group(&hub, connection, group, GroupAction::Add).await
            }
            Route::RemoveConnection(hub, group, connection) => {
                self.group(&hub, connection, group, GroupAction::Remove)
                    .await
            }
            Route::AddUser(hub, group, user) => {
                let action = GroupAction::Add;
                backplane
                    .user_groups(&hub, user, Some(group), action)
                    .await?;
                Ok(ok())
            }
            Route::RemoveUser(hub, group, user) => {
                let action = GroupAction::Remove;
                backplane
                    .user_groups(&hub, user, Some(group), action)
                    .await?;
                Ok(ok())
            }
            Route::LeaveAllGroups(hub, user) => {
                let action = GroupAction::Remove;
                backplane.user_groups(&hub, user, None, action).await?;
                Ok(ok())
            }
            Route::GroupConnections(hub, group) => {
                let mut members = backplane.group_members(&hub, &group).await?;
                members.sort_by(|a, b| a.connection.cmp(&b.connection));
                let items = members
                    .into_iter()
                    .map(|m| {
                        serde_json::json!({
                            "connectionId": m.connection.as_str(),
                            "userId": m.user.as_ref().map(UserId::as_str),
                        })
                    })
                    .collect();
                Ok(page(path, items, query.page()?))
            }
            Route::OnlineUsers(hub) => {
                let users = backplane.online_users(&hub).await?;
                let items = users
                    .into_iter()
                    .map(|(user, connections)| {
                        serde_json::json!({ "userId": user.as_str(), "connections": connections })
                    })
                    .collect();
                Ok(page(path, items, query.page()?))
            }
            Route::GenerateToken(_) => self.generate_token(&query),
        }
    }

    /// Reads a send's body and publishes it; 202 once published.
    async fn send(
        &self,
        hub: String,
        target: Target,
        excluded: Vec<ConnectionId>,
        body: Incoming,
    ) -> Result<(), Failure> {
        let bytes = http_body_util::Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|_| {
                fail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "BodyTooLarge",
                    format!("Bodies are limited to {MAX_BODY} bytes."),
                )
            })?
            .to_bytes();
        let body: SendBody = serde_json::from_slice(&bytes).map_err(|error| {
            fail(
                StatusCode::BAD_REQUEST,
                "InvalidBody",
                format!("Expected {{\"target\": \"…\", \"arguments\": […]}}: {error}"),
            )
        })?;
        if body.target.is_empty() {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "InvalidBody",
                "'target' must not be empty.",
            ));
        }
        let message: HubMessage<Vec<serde_json::Value>, ()> =
            HubMessage::Invocation(Invocation::new(body.target, body.arguments));
        let publish = Publish {
            hub: Arc::from(hub),
            target,
            excluded,
            message: Arc::new(SerializedMessage::new(message, NamingPolicy::AsDeclared)),
        };
        self.backplane.publish(publish).await?;
        Ok(())
    }

    async fn group(
        &self,
        hub: &str,
        connection: ConnectionId,
        group: GroupName,
        action: GroupAction,
    ) -> Result<Response<Body>, Failure> {
        let command = GroupCommand {
            connection,
            group,
            action,
        };
        self.backplane.group_command(hub, command).await?;
        Ok(empty(StatusCode::OK))
    }

    fn generate_token(&self, query: &Query) -> Result<Response<Body>, Failure> {
        let key = self.token_key.as_ref().ok_or_else(|| {
            fail(
                StatusCode::BAD_REQUEST,
                "TokenSigningDisabled",
                "No signing key is configured: start with --jwt-secret to issue client tokens.",
            )
        })?;
        let user = query
            .user_id
            .as_deref()
            .filter(|u| !u.is_empty() && u.len() <= 1024)
            .ok_or_else(|| {
                fail(
                    StatusCode::BAD_REQUEST,
                    "InvalidQuery",
                    "'userId' (1 to 1024 bytes) is required.",
                )
            })?;
        let minutes = match &query.minutes {
            None => 60,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|m| (1..=MAX_TOKEN_MINUTES).contains(m))
                .ok_or_else(|| {
                    fail(
                        StatusCode::BAD_REQUEST,
                        "InvalidQuery",
                        format!("'minutesToExpire' must be 1 to {MAX_TOKEN_MINUTES}."),
                    )
                })?,
        };
        let now = jsonwebtoken::get_current_timestamp();
        let claims = ClientClaims {
            sub: user,
            role: &query.roles,
            iat: now,
            exp: now + minutes * 60,
            iss: self.token_issuer.as_deref(),
            aud: self.token_audience.as_deref(),
        };
        let token =
            jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, key).map_err(|e| {
                fail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "TokenError",
                    e.to_string(),
                )
            })?;
        Ok(json(StatusCode::OK, &serde_json::json!({ "token": token })))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The OpenAPI document lists exactly the router's endpoints.
    #[test]
    fn the_openapi_document_matches_the_route_table() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = document["paths"].as_object().unwrap();
        let documented: BTreeSet<(String, String)> = paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> = routes::TABLE
            .iter()
            .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
            .collect();
        assert_eq!(documented, routed);
    }
}
