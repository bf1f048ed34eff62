//! # hubcast-gateway
//!
//! One gateway node: the HTTP endpoints of the SignalR transport protocol (negotiate, WebSockets,
//! Server-Sent Events, long polling), the hub protocol on every connection, and the Hub API for writing
//! hubs in Rust. Every send goes through a [`Backplane`](hubcast_backplane::Backplane), so the same node
//! runs alone (in-memory backplane) or as one of many (Redis).
//!
//! Module map: [`config`] (options and defaults), [`hub`] (the Hub API), `runtime` (the engine that
//! runs a hub on a connection: sessions, registry, streams, limits),
//! `connection` (transport-level connections, outbound queues), `http` (routing and transports),
//! [`endpoint`] (mapped paths, raw connection handlers), [`close`] (close reasons). The accept loop,
//! admin listener and HTTP types are hubcast-http's.

pub mod auth;
pub mod close;
pub mod config;
mod connection;
pub mod endpoint;
mod http;
pub mod hub;
pub mod metrics;
pub mod relay;
mod runtime;

use std::collections::HashMap;
use std::sync::Arc;

use hubcast_backplane::Backplane;
pub use hubcast_backplane::{
    BackplaneError, BoxFuture, ConnectionId, GroupName, Member, Target, UserId,
};
/// What a hub's payloads use: .NET `DateTime`s, byte arrays, `Guid`s; the argument-list bound of sends.
pub use hubcast_protocol::{ArgumentList, dotnet};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{HubOptions, OptionsError};
pub use connection::{PushError, RequestInfo};
pub use endpoint::{ConnectionHandler, EchoHandler, RawChunk, RawConnection};
pub use http::NegotiateHook;
pub use hub::{Context, Hub, HubContext, HubError};
pub use hubcast_http::{Body, RouteHandler, ServerLimits};

use close::CloseReason;
use connection::{ConnectionManager, Mount};
use endpoint::{App, Endpoint};
use runtime::{HubApp, HubRuntime};

/// What the HTTP handlers share.
pub(crate) struct GatewayInner {
    pub(crate) endpoints: Vec<Arc<Endpoint>>,
    pub(crate) manager: Arc<ConnectionManager>,
    pub(crate) routes: Vec<(String, RouteHandler)>,
    pub(crate) negotiate_hook: Option<NegotiateHook>,
    pub(crate) auth: Option<Arc<auth::JwtAuth>>,
    pub(crate) sessions: Option<Arc<dyn auth::SessionAuth>>,
    pub(crate) cors: http::cors::Cors,
    pub(crate) fallback: Option<RouteHandler>,
    pub(crate) limits: ServerLimits,
    pub(crate) http_metrics: hubcast_http::HttpMetrics,
    pub(crate) metrics: Arc<metrics::GatewayMetrics>,
    pub(crate) tls: Option<hubcast_http::Tls>,
    /// Where requests for other nodes' connections go (none: they are answered 404).
    pub(crate) relay: Option<Arc<dyn relay::Relay>>,
    /// This node's tag (prefix of its connection ids and tokens).
    pub(crate) node_tag: Option<Arc<str>>,
}

/// Why a gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A hub's options are unusable.
    #[error("hub at '{path}': {source}")]
    Options {
        /// The mapped path.
        path: String,
        /// What is wrong.
        source: OptionsError,
    },
    /// Two endpoints share a path.
    #[error("path '{0}' is mapped twice")]
    DuplicatePath(String),
    /// A hub's declaration is wrong (a setting for a method it does not declare, say).
    #[error("hub at '{path}': {problem}")]
    Hub {
        /// The mapped path.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The backplane refused a hub.
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
}

enum PendingApp {
    Hub(Arc<dyn HubApp>),
    Raw(Arc<dyn ConnectionHandler>),
}

/// Declares the endpoints of a gateway.
pub struct GatewayBuilder {
    backplane: Arc<dyn Backplane>,
    endpoints: Vec<(String, HubOptions, PendingApp)>,
    endpoint_auth: HashMap<String, Arc<auth::JwtAuth>>,
    routes: Vec<(String, RouteHandler)>,
    negotiate_hook: Option<NegotiateHook>,
    auth: Option<Arc<auth::JwtAuth>>,
    sessions: Option<Arc<dyn auth::SessionAuth>>,
    allowed_origins: Vec<String>,
    limiter: Arc<dyn runtime::RateLimiter>,
    fallback: Option<RouteHandler>,
    limits: ServerLimits,
    http_metrics: hubcast_http::HttpMetrics,
    tls: Option<hubcast_http::Tls>,
    relay: Option<Arc<dyn relay::Relay>>,
}

impl GatewayBuilder {
    /// A gateway whose hubs publish through `backplane`.
    pub fn new(backplane: Arc<dyn Backplane>) -> Self {
        Self {
            backplane,
            endpoints: Vec::new(),
            endpoint_auth: HashMap::new(),
            routes: Vec::new(),
            negotiate_hook: None,
            auth: None,
            sessions: None,
            allowed_origins: Vec::new(),
            limiter: Arc::new(runtime::LocalRateLimiter::default()),
            fallback: None,
            limits: ServerLimits::default(),
            http_metrics: hubcast_http::HttpMetrics::new(),
            tls: None,
            relay: None,
        }
    }

    /// The HTTP listener's limits (timeouts, connection caps, header size).
    pub fn server_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The listener's series (refused connections, accept errors), shared with the process's other
    /// listeners; by default a set of its own that no registry shows.
    pub fn http_metrics(mut self, metrics: hubcast_http::HttpMetrics) -> Self {
        self.http_metrics = metrics;
        self
    }

    /// Serves every connection over TLS (HTTPS and `wss://`).
    pub fn tls(mut self, tls: hubcast_http::Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Serves requests no route or endpoint matched (a web page, say); without one they get 404.
    pub fn fallback(mut self, handler: RouteHandler) -> Self {
        self.fallback = Some(handler);
        self
    }

    /// Replaces the per-user rate limiter (by default counted in this process).
    pub fn rate_limiter(mut self, limiter: Arc<dyn runtime::RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Accepts the session tokens and cookies of `sessions` (hubcast-sessions' `SessionCookies`, whose
    /// sign-in routes are mounted with [`route`](Self::route)).
    pub fn sessions(mut self, sessions: Arc<dyn auth::SessionAuth>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Forwards transport requests for connections of other nodes through `relay`, so that no request
    /// needs to reach the node holding its connection (see [`relay`]).
    pub fn relay(mut self, relay: Arc<dyn relay::Relay>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Origins allowed to call cross-origin with credentials (`*` for any); they also bound the
    /// `Origin` of WebSocket upgrades. Empty (the default): no CORS, WebSocket origins unchecked.
    pub fn allowed_origins(mut self, origins: Vec<String>) -> Self {
        self.allowed_origins = origins;
        self
    }

    /// Authenticates negotiate and transport requests with JWT bearer tokens.
    pub fn authentication(mut self, auth: impl Into<Arc<auth::JwtAuth>>) -> Self {
        self.auth = Some(auth.into());
        self
    }

    /// Authenticates the endpoint at `path` with `auth` alone: neither the gateway's validator nor
    /// session tokens are accepted there (test hubs with keys of their own, say).
    pub fn endpoint_authentication(mut self, path: &str, auth: auth::JwtAuth) -> Self {
        self.endpoint_auth.insert(normalize(path), Arc::new(auth));
        self
    }

    /// Maps a hub at `path` (matched case-insensitively).
    pub fn hub<S: Send + Sync + 'static>(
        mut self,
        path: &str,
        hub: Hub<S>,
        options: HubOptions,
    ) -> Self {
        self.endpoints
            .push((normalize(path), options, PendingApp::Hub(Arc::new(hub))));
        self
    }

    /// Maps a raw connection handler at `path` (no hub protocol).
    pub fn connection_handler(
        mut self,
        path: &str,
        handler: impl ConnectionHandler,
        options: HubOptions,
    ) -> Self {
        self.endpoints
            .push((normalize(path), options, PendingApp::Raw(Arc::new(handler))));
        self
    }

    /// Serves every request whose path starts with `prefix` (case-insensitive) with `handler`, before the
    /// mapped endpoints.
    pub fn route(mut self, prefix: &str, handler: RouteHandler) -> Self {
        self.routes.push((prefix.to_ascii_lowercase(), handler));
        self
    }

    /// Adds headers to every successful negotiate response.
    pub fn negotiate_hook(mut self, hook: NegotiateHook) -> Self {
        self.negotiate_hook = Some(hook);
        self
    }

    /// Validates the options and starts the hubs.
    pub async fn build(mut self) -> Result<Gateway, BuildError> {
        let metrics = Arc::new(metrics::GatewayMetrics::new());
        let mut endpoints = Vec::new();
        let mut hubs = HashMap::new();
        for (path, options, app) in self.endpoints {
            options.validate().map_err(|source| BuildError::Options {
                path: path.clone(),
                source,
            })?;
            if endpoints.iter().any(|e: &Arc<Endpoint>| e.path() == path) {
                return Err(BuildError::DuplicatePath(path));
            }
            let app = match app {
                PendingApp::Hub(hub) => {
                    if let Some(problem) = hub.problems().first() {
                        return Err(BuildError::Hub {
                            path,
                            problem: problem.clone(),
                        });
                    }
                    let runtime = HubRuntime::start(
                        hub,
                        options.clone(),
                        self.backplane.clone(),
                        self.limiter.clone(),
                        &metrics,
                    )
                    .await?;
                    hubs.insert(runtime.shared.name.to_string(), runtime.clone());
                    App::Hub(runtime)
                }
                PendingApp::Raw(handler) => App::Raw(handler),
            };
            endpoints.push(Arc::new(Endpoint {
                auth: self.endpoint_auth.remove(&path),
                mount: Arc::new(Mount {
                    path,
                    options,
                    occupancy: Default::default(),
                    metrics: metrics.clone(),
                }),
                app,
            }));
        }
        Ok(Gateway {
            inner: Arc::new(GatewayInner {
                endpoints,
                manager: Arc::new(ConnectionManager::new(self.backplane.node_tag())),
                routes: self.routes,
                negotiate_hook: self.negotiate_hook,
                auth: self.auth,
                sessions: self.sessions,
                fallback: self.fallback,
                limits: self.limits,
                http_metrics: self.http_metrics,
                metrics,
                tls: self.tls,
                relay: self.relay,
                node_tag: self.backplane.node_tag().map(Arc::from),
                cors: http::cors::Cors::new(self.allowed_origins),
            }),
            hubs,
            drain_window: std::time::Duration::ZERO,
        })
    }
}

fn normalize(path: &str) -> String {
    let lower = path.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('/');
    if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    }
}

/// A built gateway node.
pub struct Gateway {
    inner: Arc<GatewayInner>,
    hubs: HashMap<String, Arc<HubRuntime>>,
    drain_window: std::time::Duration,
}

impl Gateway {
    /// A handle for sending on the hub named `name` from outside hub methods.
    pub fn hub_context(&self, name: &str) -> Option<HubContext> {
        self.hubs
            .get(name)
            .map(|runtime| HubContext::new(runtime.shared.clone()))
    }

    /// On shutdown, closes connections spread over `window` (within the grace period) instead of all at
    /// once, so clients reconnect to other nodes gradually.
    pub fn with_drain_window(mut self, window: std::time::Duration) -> Self {
        self.drain_window = window;
        self
    }

    /// Adds the gateway's series to `registry` (the process's, served at `/metrics`).
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        self.inner.metrics.register(registry)
    }

    /// Transport-level connections currently open on this node.
    pub fn connection_count(&self) -> usize {
        self.inner.manager.len()
    }

    /// Serves on `listener` until `shutdown` is cancelled, then closes every connection with
    /// `allowReconnect: true` and returns once their transports have had `grace` to write the Close.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
        grace: std::time::Duration,
    ) {
        let shortest_keep_alive = self
            .inner
            .endpoints
            .iter()
            .map(|endpoint| endpoint.mount.options.keep_alive_interval)
            .min();
        let heartbeat = connection::heartbeat_period(shortest_keep_alive);
        self.inner
            .manager
            .spawn_heartbeat(heartbeat, shutdown.clone());
        http::serve(self.inner.clone(), listener, shutdown).await;
        let deadline = tokio::time::Instant::now() + grace;
        let window = self.drain_window.min(grace);
        if !window.is_zero() {
            tracing::info!(connections = self.inner.manager.len(), ?window, "draining");
            self.inner
                .manager
                .close_spread(
                    &CloseReason::ServerShutdown,
                    window,
                    &self.inner.metrics.drain_remaining,
                )
                .await;
        }
        loop {
            // Repeated: a long poll that collected its Close and left is forgotten on the next round.
            self.inner.manager.close_all(&CloseReason::ServerShutdown);
            if self.inner.manager.len() == 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
