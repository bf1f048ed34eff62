//! [`HubConnectionBuilder`]: every option of a connection, with the official clients' defaults.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use hubcast_protocol::{NamingPolicy, Protocol, Transport};

use crate::connection::HubConnection;
use crate::error::{Error, Result};
use crate::http::{Http, HubUrl};

/// Produces the bearer token for negotiate and the transports; called before every (re)connect.
pub(crate) type TokenFactory =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String>> + Send>> + Send + Sync>;

/// What a [`RetryPolicy`] decides on.
#[derive(Debug, Clone)]
pub struct RetryContext {
    /// Failed attempts so far in this reconnect (0 before the first).
    pub previous_retry_count: u32,
    /// Time since the connection was lost.
    pub elapsed: Duration,
    /// Why the connection was lost, or why the last attempt failed.
    pub reason: Error,
}

/// Decides whether and when to try reconnecting, like `IRetryPolicy` of the official clients.
pub trait RetryPolicy: Send + Sync {
    /// The delay before the next attempt, or `None` to give up (the connection then closes).
    fn next_retry_delay(&self, context: &RetryContext) -> Option<Duration>;
}

/// A fixed list of delays: attempt *n* waits `delays[n]`; after the last one the connection closes.
impl RetryPolicy for Vec<Duration> {
    fn next_retry_delay(&self, context: &RetryContext) -> Option<Duration> {
        usize::try_from(context.previous_retry_count)
            .ok()
            .and_then(|n| self.get(n).copied())
    }
}

/// The official clients' default delays: 0, 2, 10 and 30 seconds.
pub fn default_reconnect_delays() -> Vec<Duration> {
    [0, 2, 10, 30].map(Duration::from_secs).to_vec()
}

/// The options of a connection. Build one with [`HubConnectionBuilder`].
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) url: HubUrl,
    pub(crate) http: Http,
    pub(crate) token: Option<TokenFactory>,
    pub(crate) protocol: Protocol,
    pub(crate) naming: NamingPolicy,
    pub(crate) transports: Vec<Transport>,
    pub(crate) skip_negotiation: bool,
    pub(crate) stateful: bool,
    pub(crate) stateful_buffer: usize,
    pub(crate) reconnect: Option<Arc<dyn RetryPolicy>>,
    pub(crate) server_timeout: Duration,
    pub(crate) keep_alive: Duration,
    pub(crate) handshake_timeout: Duration,
}

/// Builds a [`HubConnection`].
///
/// Defaults, as in the JS and .NET clients: JSON, all three transports in the server's order, no
/// automatic reconnect, server timeout 30 s, keep-alive 15 s, handshake timeout 15 s, stateful
/// reconnect off (buffer 100 000 bytes when on). JSON property names are camelCase, as .NET writes them.
pub struct HubConnectionBuilder {
    url: String,
    headers: Vec<(String, String)>,
    config: Options,
}

struct Options {
    token: Option<TokenFactory>,
    protocol: Protocol,
    naming: NamingPolicy,
    transports: Vec<Transport>,
    skip_negotiation: bool,
    stateful: bool,
    stateful_buffer: usize,
    reconnect: Option<Arc<dyn RetryPolicy>>,
    server_timeout: Duration,
    keep_alive: Duration,
    handshake_timeout: Duration,
}

impl HubConnectionBuilder {
    /// A builder for the hub at `url` (`http://host:port/path`, `ws://` also accepted).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            headers: Vec::new(),
            config: Options {
                token: None,
                protocol: Protocol::Json,
                naming: NamingPolicy::CamelCase,
                transports: vec![
                    Transport::WebSockets,
                    Transport::ServerSentEvents,
                    Transport::LongPolling,
                ],
                skip_negotiation: false,
                stateful: false,
                stateful_buffer: 100_000,
                reconnect: None,
                server_timeout: Duration::from_secs(30),
                keep_alive: Duration::from_secs(15),
                handshake_timeout: Duration::from_secs(15),
            },
        }
    }

    /// Sends `Authorization: Bearer <token>` on every request; `factory` runs before each (re)connect.
    /// A negotiate redirect that carries its own access token replaces it for that connection.
    pub fn with_access_token_factory<F, Fut>(mut self, factory: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String>> + Send + 'static,
    {
        self.config.token = Some(Arc::new(move || Box::pin(factory())));
        self
    }

    /// A fixed bearer token.
    pub fn with_access_token(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.with_access_token_factory(move || std::future::ready(Ok(token.clone())))
    }

    /// Adds a header to every request (negotiate, WebSocket upgrade, SSE, polls and sends).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The hub protocol: [`Protocol::Json`] (default) or [`Protocol::MessagePack`].
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.config.protocol = protocol;
        self
    }

    /// How JSON property names of your types are written (default camelCase).
    pub fn with_json_naming(mut self, naming: NamingPolicy) -> Self {
        self.config.naming = naming;
        self
    }

    /// The transports allowed, tried in the order the server offers them.
    pub fn with_transports(mut self, transports: &[Transport]) -> Self {
        self.config.transports = transports.to_vec();
        self
    }

    /// Connects the WebSocket directly, without negotiate (WebSockets only; no connection id).
    pub fn skip_negotiation(mut self, skip: bool) -> Self {
        self.config.skip_negotiation = skip;
        self
    }

    /// Reconnects automatically after 0, 2, 10 and 30 seconds, then gives up.
    pub fn with_automatic_reconnect(self) -> Self {
        self.with_retry_policy(default_reconnect_delays())
    }

    /// Reconnects automatically with a policy of your own (a `Vec<Duration>` is one).
    pub fn with_retry_policy(mut self, policy: impl RetryPolicy + 'static) -> Self {
        self.config.reconnect = Some(Arc::new(policy));
        self
    }

    /// Asks for stateful reconnect: over WebSockets, a dropped connection is resumed on a new socket
    /// without losing messages in either direction, invisibly to the hub and to your code.
    pub fn with_stateful_reconnect(mut self) -> Self {
        self.config.stateful = true;
        self
    }

    /// How many bytes of unacknowledged messages stateful reconnect keeps (default 100 000); past it
    /// the connection can no longer be resumed, and a drop falls back to automatic reconnect.
    pub fn with_stateful_reconnect_buffer_size(mut self, bytes: usize) -> Self {
        self.config.stateful_buffer = bytes;
        self
    }

    /// Closes the connection when nothing arrives for this long (default 30 s; keep it at least twice
    /// the server's keep-alive interval).
    pub fn with_server_timeout(mut self, timeout: Duration) -> Self {
        self.config.server_timeout = timeout;
        self
    }

    /// Sends a ping when nothing was sent for this long (default 15 s).
    pub fn with_keep_alive_interval(mut self, interval: Duration) -> Self {
        self.config.keep_alive = interval;
        self
    }

    /// How long the server may take to answer the handshake (default 15 s).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Checks the options and returns the (not yet started) connection.
    pub fn build(self) -> Result<HubConnection> {
        let url = HubUrl::parse(&self.url)?;
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in self.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|e| Error::Config(format!("header {name}: {e}")))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|e| Error::Config(format!("header {name}: {e}")))?;
            headers.push((name, value));
        }
        let o = self.config;
        if o.transports.is_empty() {
            return Err(Error::Config("no transport allowed".to_owned()));
        }
        if o.skip_negotiation && o.transports != [Transport::WebSockets] {
            return Err(Error::Config(
                "skipping negotiation is only possible with the WebSockets transport alone"
                    .to_owned(),
            ));
        }
        if o.server_timeout.is_zero() || o.keep_alive.is_zero() || o.handshake_timeout.is_zero() {
            return Err(Error::Config(
                "timeouts must be greater than zero".to_owned(),
            ));
        }
        Ok(HubConnection::new(Config {
            url,
            http: Http::new(headers),
            token: o.token,
            protocol: o.protocol,
            naming: o.naming,
            transports: o.transports,
            skip_negotiation: o.skip_negotiation,
            stateful: o.stateful,
            stateful_buffer: o.stateful_buffer,
            reconnect: o.reconnect,
            server_timeout: o.server_timeout,
            keep_alive: o.keep_alive,
            handshake_timeout: o.handshake_timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contradictory_options_are_refused() {
        let skip = HubConnectionBuilder::new("http://h:1/hub")
            .skip_negotiation(true)
            .build();
        assert!(matches!(skip, Err(Error::Config(_))));
        let none = HubConnectionBuilder::new("http://h:1/hub")
            .with_transports(&[])
            .build();
        assert!(matches!(none, Err(Error::Config(_))));
        let header = HubConnectionBuilder::new("http://h:1/hub")
            .with_header("bad header", "x")
            .build();
        assert!(matches!(header, Err(Error::Config(_))));
        assert!(
            HubConnectionBuilder::new("http://h:1/hub")
                .skip_negotiation(true)
                .with_transports(&[Transport::WebSockets])
                .build()
                .is_ok()
        );
    }

    #[test]
    fn delay_lists_give_up_after_the_last() {
        let policy = default_reconnect_delays();
        let context = |n| RetryContext {
            previous_retry_count: n,
            elapsed: Duration::ZERO,
            reason: Error::ConnectionClosed,
        };
        assert_eq!(policy.next_retry_delay(&context(0)), Some(Duration::ZERO));
        assert_eq!(
            policy.next_retry_delay(&context(3)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(policy.next_retry_delay(&context(4)), None);
    }
}
