//! # hubcast-backplane-redis
//!
//! The Redis backplane: any number of hubcast gateway nodes behind a load balancer share one Redis
//! (standalone, Sentinel or Cluster) and behave as one server.
//!
//! - **Fan-out.** A send is delivered to this node's recipients at once and published once to Redis:
//!   on the hub's all channel, a group's or a user's channel (subscribed only by nodes holding a member,
//!   reference-counted by the gateway), or the node channel of the node holding a connection (its tag is
//!   part of the connection id). The payload is encoded once per protocol by the publisher; receivers
//!   copy it to their connections unchanged. Channel names and payloads are defined in `wire`.
//! - **Commands across nodes.** Group add/remove for a connection of another node, and client results,
//!   travel on node channels and are answered there; a node that holds nothing answers "unknown
//!   connection" at once, and a PUBLISH that reaches no node fails at once.
//! - **Presence** (`presence`): online users, users' connections and group members across nodes, with
//!   node heartbeats so a dead node's entries are swept.
//! - **Fault tolerance** (`link`): when Redis goes away, nodes keep serving their local connections,
//!   queue sends (bounded), reconnect with backoff, resubscribe, publish the queue and republish their
//!   presence. [`RedisBackplane::status`] reports the state for logs and metrics.

mod commands;
mod link;
mod metrics;
mod presence;
mod pubsub;
mod topology;
mod wire;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use hubcast_backplane::{
    BackplaneError, BoxFuture, Broker, ClientInvocation, ConnectionId, GroupAction, GroupCommand,
    GroupName, Interest, LocalHub, Member, Outcome, Presence, PresenceChange, Publish, RemoteError,
    SerializedMessage, Target, UserId, node_of,
};
use tokio::sync::oneshot;

#[cfg(feature = "stub-pubsub")]
pub use pubsub::MemoryPubSub;
pub use topology::{UrlError, redact};

use commands::Commands;
use link::{Link, Receiver};
use presence::{Hubs, RedisPresence};
use topology::Topology;
use wire::{Channel, Channels, NodeMessage};

/// How to reach Redis and how the backplane behaves.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://…`, `redis+sentinel://…` or `redis+cluster://…`; `rediss…` for TLS.
    pub url: String,
    /// Prefix of every channel and key, so several deployments can share one Redis.
    pub prefix: String,
    /// How long a node's presence outlives its last heartbeat (heartbeats come every third of it).
    pub node_ttl: Duration,
    /// Sends kept while Redis is unreachable; the oldest are dropped past it.
    pub queue_limit: usize,
    /// How long a group command for a connection of another node waits for its answer.
    pub command_timeout: Duration,
    /// The ACL username of every connection, set apart from the URL.
    pub username: Option<String>,
    /// The password of every Redis server connection, set apart from the URL so that any characters
    /// work; the URL must then carry no credentials.
    pub password: Option<String>,
    /// With Sentinel: the sentinels' own ACL username, if they ask for one.
    pub sentinel_username: Option<String>,
    /// With Sentinel: the sentinels' own password (their `requirepass`), if they ask for one.
    pub sentinel_password: Option<String>,
    /// Over TLS (`rediss…`): the CA certificates (PEM) the servers' certificates must chain to; else
    /// the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Over TLS (`rediss…`): a client certificate and its key (PEM), for servers that ask for one
    /// (`tls-auth-clients yes`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The `host:port` other nodes relay this node's connections' requests to (see
    /// [`Presence::node_address`](hubcast_backplane::Presence::node_address)); none: not advertised.
    pub advertise: Option<String>,
}

impl RedisConfig {
    /// Checks the settings without connecting: the URL (with the credentials set apart) parses, the
    /// node TTL leaves room for heartbeats, the TLS files read.
    pub fn validate(&self) -> Result<(), SetupError> {
        self.topology()?;
        self.certificates().map(|_| ())
    }

    /// The TLS files' contents, when any is set (with a `rediss://` URL only).
    fn certificates(&self) -> Result<Option<redis::TlsCertificates>, SetupError> {
        if self.ca_file.is_none() && self.client_cert.is_none() {
            return Ok(None);
        }
        if !self.url.starts_with("rediss") {
            return Err(SetupError::Tls(
                "a CA file or a client certificate needs TLS: rediss://, rediss+sentinel:// or \
                 rediss+cluster://"
                    .into(),
            ));
        }
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| SetupError::Tls(format!("{}: {e}", path.display())))
        };
        Ok(Some(redis::TlsCertificates {
            root_cert: self.ca_file.as_ref().map(read).transpose()?,
            client_tls: self
                .client_cert
                .as_ref()
                .map(|(cert, key)| {
                    Ok::<_, SetupError>(redis::ClientTlsConfig {
                        client_cert: read(cert)?,
                        client_key: read(key)?,
                    })
                })
                .transpose()?,
        }))
    }

    fn topology(&self) -> Result<Topology, SetupError> {
        if self.node_ttl < MIN_NODE_TTL {
            return Err(SetupError::NodeTtl(self.node_ttl));
        }
        let url = topology::with_credentials(
            &self.url,
            self.username.as_deref(),
            self.password.as_deref(),
        )?;
        let mut topology = Topology::parse(&url)?;
        let sentinel_auth = (
            self.sentinel_username.clone(),
            self.sentinel_password.clone(),
        );
        match &mut topology {
            Topology::Sentinel(sentinels) => sentinels.auth = sentinel_auth,
            _ if sentinel_auth != (None, None) => {
                return Err(SetupError::Url(UrlError::new(
                    &url,
                    "a sentinel username or password needs a redis+sentinel:// URL",
                )));
            }
            _ => {}
        }
        Ok(topology)
    }

    /// The defaults for `url`: prefix `hubcast`, node TTL 7.5 s, 100,000 queued sends, 5 s commands.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "hubcast".into(),
            node_ttl: Duration::from_millis(7_500),
            queue_limit: 100_000,
            command_timeout: Duration::from_secs(5),
            username: None,
            password: None,
            sentinel_username: None,
            sentinel_password: None,
            ca_file: None,
            client_cert: None,
            advertise: None,
        }
    }
}

/// Why the backplane could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The URL is not one the backplane understands.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The connection pool could not be built.
    #[error(transparent)]
    Pool(#[from] BackplaneError),
    /// The operating system's random source failed.
    #[error(transparent)]
    Random(#[from] hubcast_protocol::ids::RandomError),
    /// A TLS file cannot be used.
    #[error("Redis TLS: {0}")]
    Tls(String),
    /// Heartbeats come every third of the node TTL: it must leave room for them.
    #[error("the node TTL must be at least 300ms (got {0:?})")]
    NodeTtl(Duration),
}

/// The shortest node TTL accepted (heartbeats every 100 ms).
const MIN_NODE_TTL: Duration = Duration::from_millis(300);

/// The backplane's state, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Whether the pub/sub link to Redis is up.
    pub connected: bool,
    /// Times the link came back after a loss.
    pub reconnects: u64,
    /// Messages published.
    pub published: u64,
    /// Messages received.
    pub received: u64,
    /// Sends waiting for Redis to come back.
    pub queued: u64,
    /// Queued sends dropped because the queue was full.
    pub dropped: u64,
    /// Received payloads that could not be read.
    pub malformed: u64,
    /// How long the oldest send of the last batch published waited in the outbox.
    pub publish_lag: Duration,
    /// Why the last connection attempt failed, while the link is down (never a secret).
    pub last_error: Option<String>,
}

/// An answer to a command this node sent to another node.
enum Reply {
    Ack(Result<(), RemoteError>),
    Result(Result<Outcome, RemoteError>),
}

struct Inner {
    tag: String,
    channels: Channels,
    link: Arc<Link>,
    commands: Commands,
    presence: Arc<RedisPresence>,
    hubs: Hubs,
    pending: DashMap<u64, oneshot::Sender<Reply>>,
    next_id: AtomicU64,
    command_timeout: Duration,
}

/// The Redis backplane (cheap to clone).
#[derive(Clone)]
pub struct RedisBackplane {
    inner: Arc<Inner>,
}

/// How long [`RedisBackplane::connect`] waits for Redis before starting anyway.
const FIRST_CONNECT: Duration = Duration::from_secs(5);

impl RedisBackplane {
    /// Starts the backplane: the pub/sub link, the presence worker and the heartbeat. Waits up to 5 s
    /// for Redis, then starts anyway (serving local connections and queueing sends until it appears).
    pub async fn connect(config: RedisConfig) -> Result<Self, SetupError> {
        let topology = config.topology()?;
        let certificates = config.certificates()?;
        // redis-rs builds its TLS configurations with the process's default provider: make sure there
        // is one (ring), whatever else is linked in. Another one installed first is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pubsub = Arc::new(pubsub::RedisPubSub::new(
            topology.clone(),
            certificates.clone(),
        ));
        Self::start(config, topology, certificates, pubsub).await
    }

    /// A backplane whose pub/sub runs over `stub` (in memory) instead of Redis, for tests of the
    /// routing above it. Presence, rate limits and marks still go to the URL's Redis, which need not
    /// run: those calls fail.
    #[cfg(feature = "stub-pubsub")]
    pub async fn connect_over(
        config: RedisConfig,
        stub: &MemoryPubSub,
    ) -> Result<Self, SetupError> {
        let topology = config.topology()?;
        Self::start(config, topology, None, Arc::new(stub.clone())).await
    }

    async fn start(
        config: RedisConfig,
        topology: Topology,
        certificates: Option<redis::TlsCertificates>,
        pubsub: Arc<dyn pubsub::PubSub>,
    ) -> Result<Self, SetupError> {
        let commands = Commands::new(&topology, certificates.as_ref())?;
        let random = hubcast_protocol::ids::random_id()?;
        // 60 random bits: unique among live nodes; never `.`, which separates it in connection ids.
        let tag: String = random.chars().take(10).collect();
        let hubs: Hubs = Arc::new(RwLock::new(HashMap::new()));
        let link = Link::new(pubsub, config.queue_limit);
        let channels = Channels::new(&config.prefix);
        let presence = RedisPresence::start(
            &config.prefix,
            &tag,
            commands.clone(),
            hubs.clone(),
            config.node_ttl,
            config.advertise.as_deref(),
        );
        let inner = Arc::new(Inner {
            channels: channels.clone(),
            link: link.clone(),
            commands,
            presence,
            hubs,
            pending: DashMap::new(),
            next_id: AtomicU64::new(0),
            command_timeout: config.command_timeout,
            tag,
        });
        link.subscribe(channels.node(&inner.tag)).await;
        link.subscribe(channels.control()).await;
        let receiver: Arc<dyn Receiver> = inner.clone();
        tokio::spawn(link.clone().supervise(Arc::downgrade(&receiver)));
        let deadline = tokio::time::Instant::now() + FIRST_CONNECT;
        while !link.is_connected() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !link.is_connected() {
            tracing::warn!(url = %redact(&config.url), "Redis is not reachable yet: starting anyway");
        }
        Ok(Self { inner })
    }

    /// The backplane's state.
    pub fn status(&self) -> Status {
        let counters = &self.inner.link.counters;
        Status {
            connected: self.inner.link.is_connected(),
            reconnects: counters.reconnects.load(Ordering::Relaxed),
            published: counters.published.load(Ordering::Relaxed),
            received: counters.received.load(Ordering::Relaxed),
            queued: self.inner.link.queued() as u64,
            dropped: counters.dropped.load(Ordering::Relaxed),
            malformed: counters.malformed.load(Ordering::Relaxed),
            publish_lag: Duration::from_micros(counters.lag_micros.load(Ordering::Relaxed)),
            last_error: self.inner.link.last_error(),
        }
    }

    /// Takes a token from the cluster-wide bucket `key` (`rate` a second, at most `burst`).
    pub async fn take_token(
        &self,
        key: &str,
        rate: f64,
        burst: f64,
    ) -> Result<bool, BackplaneError> {
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("EVAL")
            .arg(RATE_SCRIPT)
            .arg(1)
            .arg(format!("{}:rate:{key}", self.inner.channels.prefix()))
            .arg(rate)
            .arg(burst);
        let (admitted,): (i64,) = self.inner.commands.query(&pipeline).await?;
        Ok(admitted == 1)
    }

    /// Marks `key` (a revoked session id, say) for `ttl_secs` seconds, on every node.
    pub async fn mark(&self, key: &str, ttl_secs: u64) -> Result<(), BackplaneError> {
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("SET")
            .arg(format!("{}:mark:{key}", self.inner.channels.prefix()))
            .arg(1)
            .arg("EX")
            .arg(ttl_secs.max(1))
            .ignore();
        self.inner.commands.query::<()>(&pipeline).await
    }

    /// Whether `key` is marked (see [`mark`](Self::mark)).
    pub async fn is_marked(&self, key: &str) -> Result<bool, BackplaneError> {
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("EXISTS")
            .arg(format!("{}:mark:{key}", self.inner.channels.prefix()));
        let (exists,): (i64,) = self.inner.commands.query(&pipeline).await?;
        Ok(exists == 1)
    }

    /// Online users per hub as of the last heartbeat (read at each one, for metrics).
    pub fn presence_sizes(&self) -> Vec<(String, u64)> {
        self.inner.presence.sizes()
    }

    /// Removes this node's presence (call on shutdown, after its connections closed).
    pub async fn leave(&self) -> Result<(), BackplaneError> {
        self.inner.presence.leave().await
    }
}

/// A token bucket in one hash (`tokens`, `at` in seconds, Redis clock), expiring once full again.
const RATE_SCRIPT: &str = r#"
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local admitted = 0
if tokens >= 1 then tokens = tokens - 1 admitted = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return admitted
"#;

impl Inner {
    fn hub(&self, name: &str) -> Option<(Arc<str>, Arc<dyn LocalHub>)> {
        let hubs = self.hubs.read().unwrap_or_else(|p| p.into_inner());
        hubs.get_key_value(name)
            .map(|(name, hub)| (name.clone(), hub.clone()))
    }

    fn deliver(
        &self,
        hub: &str,
        target: Target,
        excluded: Vec<ConnectionId>,
        message: Arc<SerializedMessage>,
    ) {
        if let Some((hub, local)) = self.hub(hub) {
            local.deliver(&Publish {
                hub,
                target,
                excluded,
                message,
            });
        }
    }

    /// Sends a command to the node holding `connection` and waits for its answer.
    async fn request(
        &self,
        connection: &ConnectionId,
        wait: Duration,
        build: impl FnOnce(u64) -> NodeMessage,
    ) -> Result<Reply, RemoteError> {
        let unknown = || RemoteError::UnknownConnection(connection.clone());
        let node = node_of(connection)
            .filter(|node| *node != self.tag)
            .ok_or_else(unknown)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (sender, answer) = oneshot::channel();
        self.pending.insert(id, sender);
        let _forget = Forget(&self.pending, id);
        let payload = wire::encode_node(&build(id));
        let receivers = self
            .link
            .publish_now(&self.channels.node(node), &payload)
            .await?;
        if receivers == 0 {
            return Err(unknown());
        }
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) | Err(_) => Err(RemoteError::Timeout),
        }
    }

    /// Answers a command of another node on its node channel.
    async fn answer(&self, origin: &str, message: NodeMessage) {
        let payload = wire::encode_node(&message);
        if let Err(error) = self
            .link
            .publish_now(&self.channels.node(origin), &payload)
            .await
        {
            tracing::debug!(%error, "could not answer another node's command");
        }
    }

    fn on_node_message(self: &Arc<Self>, message: NodeMessage) {
        match message {
            NodeMessage::Send {
                hub,
                excluded,
                message,
                connections,
            } => self.deliver(&hub, Target::Connections(connections), excluded, message),
            NodeMessage::Group {
                hub,
                origin,
                id,
                connection,
                group,
                action,
            } => {
                let command = GroupCommand {
                    connection,
                    group,
                    action,
                };
                let connection = command.connection.clone();
                self.serve(
                    &hub,
                    origin,
                    connection,
                    |local| async move { local.group_command(command).await },
                    move |result| NodeMessage::Ack { id, result },
                );
            }
            NodeMessage::Invoke {
                hub,
                origin,
                id,
                connection,
                invocation_id,
                message,
                timeout_ms,
            } => {
                let invocation = ClientInvocation {
                    connection,
                    invocation_id,
                    message,
                    timeout: Duration::from_millis(timeout_ms),
                };
                let connection = invocation.connection.clone();
                self.serve(
                    &hub,
                    origin,
                    connection,
                    |local| async move { local.invoke_client(invocation).await },
                    move |result| NodeMessage::Result { id, result },
                );
            }
            NodeMessage::Close {
                hub,
                origin,
                target,
                reason,
            } => {
                if let Some(local) = self.foreign(&hub, &origin) {
                    local.close(&target, &reason);
                }
            }
            NodeMessage::UserGroups {
                hub,
                origin,
                user,
                group,
                action,
            } => {
                if let Some(local) = self.foreign(&hub, &origin) {
                    tokio::spawn(async move {
                        local.user_groups(&user, group.as_ref(), action).await;
                    });
                }
            }
            NodeMessage::Ack { id, result } => self.complete(id, Reply::Ack(result)),
            NodeMessage::Result { id, result } => self.complete(id, Reply::Result(result)),
        }
    }

    /// Runs another node's command for `connection` on this node's `hub` and sends `origin` the answer
    /// `reply` makes of its result (a hub this node does not hold: unknown connection).
    fn serve<T, F, Fut>(
        self: &Arc<Self>,
        hub: &str,
        origin: String,
        connection: ConnectionId,
        run: F,
        reply: impl FnOnce(Result<T, RemoteError>) -> NodeMessage + Send + 'static,
    ) where
        T: Send + 'static,
        F: FnOnce(Arc<dyn LocalHub>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, RemoteError>> + Send,
    {
        let local = self.hub(hub).map(|(_, local)| local);
        let inner = self.clone();
        tokio::spawn(async move {
            let result = match local {
                Some(local) => run(local).await,
                None => Err(RemoteError::UnknownConnection(connection)),
            };
            inner.answer(&origin, reply(result)).await;
        });
    }

    /// This node's `hub`, for a command another node (`origin`) broadcast.
    fn foreign(&self, hub: &str, origin: &str) -> Option<Arc<dyn LocalHub>> {
        (origin != self.tag)
            .then(|| self.hub(hub).map(|(_, local)| local))
            .flatten()
    }

    fn complete(&self, id: u64, reply: Reply) {
        if let Some((_, waiter)) = self.pending.remove(&id) {
            let _ = waiter.send(reply);
        }
    }
}

/// Removes a pending command when its waiter goes (answered, timed out or dropped).
struct Forget<'a>(&'a DashMap<u64, oneshot::Sender<Reply>>, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.remove(&self.1);
    }
}

impl Receiver for Inner {
    fn on_message(self: Arc<Self>, channel: &str, payload: Bytes) {
        let Some(parsed) = self.channels.parse(channel) else {
            return;
        };
        let malformed = |error: wire::WireError| {
            tracing::debug!(%error, channel, "dropped a malformed backplane message");
            self.link.counters.malformed.fetch_add(1, Ordering::Relaxed);
        };
        if matches!(parsed, Channel::Node | Channel::Control) {
            match wire::decode_node(payload) {
                Ok(message) => self.on_node_message(message),
                Err(error) => malformed(error),
            }
            return;
        }
        let broadcast = match wire::decode_broadcast(payload) {
            Ok(broadcast) => broadcast,
            Err(error) => return malformed(error),
        };
        if broadcast.origin == self.tag {
            return;
        }
        let (hub, target) = match parsed {
            Channel::All(hub) => (hub, broadcast.targets.unwrap_or(Target::All)),
            Channel::Group(hub, group) => (hub, Target::Groups(vec![group.into()])),
            Channel::User(hub, user) => (hub, Target::Users(vec![user.into()])),
            Channel::Node | Channel::Control => return,
        };
        self.deliver(hub, target, broadcast.excluded, broadcast.message);
    }

    fn on_connected(&self, reconnected: bool) {
        if reconnected {
            self.presence.resync();
        }
    }
}

impl Broker for RedisBackplane {
    fn node_tag(&self) -> Option<&str> {
        Some(&self.inner.tag)
    }

    fn attach(
        &self,
        hub: &str,
        local: Arc<dyn LocalHub>,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        if hub.is_empty() || hub.contains([':', '\n']) {
            let error =
                BackplaneError::InvalidHubName(hub.to_owned(), "empty, or holds ':' or a newline");
            return Box::pin(async move { Err(error) });
        }
        let name: Arc<str> = Arc::from(hub);
        self.inner
            .hubs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, local);
        let channel = self.inner.channels.all(hub);
        Box::pin(async move {
            self.inner.link.subscribe(channel).await;
            Ok(())
        })
    }

    fn publish(&self, publish: Publish) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async move {
            let inner = &self.inner;
            // This node's recipients get it now, whatever the state of Redis (a node without the hub,
            // such as a control-API process, only forwards it).
            if let Some((_, local)) = inner.hub(&publish.hub) {
                local.deliver(&publish);
            }
            let hub = &*publish.hub;
            match &publish.target {
                Target::Connections(connections) => {
                    let mut by_node: HashMap<&str, Vec<ConnectionId>> = HashMap::new();
                    for connection in connections {
                        if let Some(node) = node_of(connection).filter(|n| *n != inner.tag) {
                            by_node.entry(node).or_default().push(connection.clone());
                        }
                    }
                    for (node, connections) in by_node {
                        let message = NodeMessage::Send {
                            hub: hub.to_owned(),
                            excluded: publish.excluded.clone(),
                            message: publish.message.clone(),
                            connections,
                        };
                        let channel = inner.channels.node(node);
                        inner
                            .link
                            .publish_queued(channel, wire::encode_node(&message));
                    }
                }
                target => {
                    if let Some((channel, named)) = inner.channels.broadcast(hub, target) {
                        let targets = named.then_some(target);
                        let payload = wire::encode_broadcast(
                            &publish.excluded,
                            &publish.message,
                            &inner.tag,
                            targets,
                        );
                        inner.link.publish_queued(channel, payload);
                    }
                }
            }
            Ok(())
        })
    }

    fn subscribe(
        &self,
        hub: &str,
        interest: Interest,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let channel = self.inner.interest_channel(hub, &interest);
        Box::pin(async move {
            self.inner.link.subscribe(channel).await;
            Ok(())
        })
    }

    fn unsubscribe(
        &self,
        hub: &str,
        interest: Interest,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let channel = self.inner.interest_channel(hub, &interest);
        Box::pin(async move {
            self.inner.link.unsubscribe(&channel).await;
            Ok(())
        })
    }

    fn group_command(
        &self,
        hub: &str,
        command: GroupCommand,
    ) -> BoxFuture<'_, Result<(), RemoteError>> {
        let hub = hub.to_owned();
        Box::pin(async move {
            let inner = &self.inner;
            if let Some(local) = inner.local_holder(&hub, &command.connection) {
                return local.group_command(command).await;
            }
            let reply = inner
                .request(&command.connection, inner.command_timeout, |id| {
                    NodeMessage::Group {
                        hub,
                        origin: inner.tag.clone(),
                        id,
                        connection: command.connection.clone(),
                        group: command.group.clone(),
                        action: command.action,
                    }
                })
                .await?;
            match reply {
                Reply::Ack(result) => result,
                Reply::Result(_) => Err(RemoteError::Timeout),
            }
        })
    }

    fn invoke_client(
        &self,
        hub: &str,
        invocation: ClientInvocation,
    ) -> BoxFuture<'_, Result<Outcome, RemoteError>> {
        let hub = hub.to_owned();
        Box::pin(async move {
            let inner = &self.inner;
            if let Some(local) = inner.local_holder(&hub, &invocation.connection) {
                return local.invoke_client(invocation).await;
            }
            // The holding node times out first and says so; this covers a node that never answers.
            let wait = invocation.timeout + Duration::from_secs(1);
            let reply = inner
                .request(&invocation.connection, wait, |id| NodeMessage::Invoke {
                    hub,
                    origin: inner.tag.clone(),
                    id,
                    connection: invocation.connection.clone(),
                    invocation_id: invocation.invocation_id.clone(),
                    message: invocation.message.clone(),
                    timeout_ms: invocation.timeout.as_millis() as u64,
                })
                .await?;
            match reply {
                Reply::Result(result) => result,
                Reply::Ack(_) => Err(RemoteError::Timeout),
            }
        })
    }

    fn close(
        &self,
        hub: &str,
        target: Target,
        reason: String,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let hub = hub.to_owned();
        Box::pin(async move {
            let inner = &self.inner;
            if let Some((_, local)) = inner.hub(&hub) {
                local.close(&target, &reason);
            }
            let message = NodeMessage::Close {
                hub,
                origin: inner.tag.clone(),
                target,
                reason,
            };
            let payload = wire::encode_node(&message);
            inner.link.publish_queued(inner.channels.control(), payload);
            Ok(())
        })
    }

    fn user_groups(
        &self,
        hub: &str,
        user: UserId,
        group: Option<GroupName>,
        action: GroupAction,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let hub = hub.to_owned();
        Box::pin(async move {
            let inner = &self.inner;
            if let Some((_, local)) = inner.hub(&hub) {
                local.user_groups(&user, group.as_ref(), action).await;
            }
            let message = NodeMessage::UserGroups {
                hub,
                origin: inner.tag.clone(),
                user,
                group,
                action,
            };
            let payload = wire::encode_node(&message);
            inner.link.publish_queued(inner.channels.control(), payload);
            Ok(())
        })
    }
}

impl Presence for RedisBackplane {
    fn connection_exists(
        &self,
        hub: &str,
        connection: &ConnectionId,
    ) -> BoxFuture<'_, Result<bool, BackplaneError>> {
        let local = self
            .inner
            .hub(hub)
            .is_some_and(|(_, local)| local.has_connection(connection));
        let (hub, connection) = (hub.to_owned(), connection.clone());
        Box::pin(async move {
            if local {
                return Ok(true);
            }
            match node_of(&connection) {
                Some(node) => {
                    let presence = &self.inner.presence;
                    presence.connection_exists(node, &hub, &connection).await
                }
                None => Ok(false),
            }
        })
    }

    fn node_address(&self, node: &str) -> BoxFuture<'_, Result<Option<String>, BackplaneError>> {
        let node = node.to_owned();
        Box::pin(async move { self.inner.presence.node_address(&node).await })
    }

    fn record(
        &self,
        hub: &str,
        change: PresenceChange,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let hub = self.inner.hub(hub).map(|(name, _)| name);
        Box::pin(async move {
            if let Some(hub) = hub {
                self.inner.presence.change(hub, change).await;
            }
            Ok(())
        })
    }

    fn online_users(&self, hub: &str) -> BoxFuture<'_, Result<Vec<(UserId, u64)>, BackplaneError>> {
        let hub = hub.to_owned();
        Box::pin(async move { self.inner.presence.online_users(&hub).await })
    }

    fn user_connections(
        &self,
        hub: &str,
        user: &UserId,
    ) -> BoxFuture<'_, Result<Vec<ConnectionId>, BackplaneError>> {
        let (hub, user) = (hub.to_owned(), user.clone());
        Box::pin(async move { self.inner.presence.user_connections(&hub, &user).await })
    }

    fn group_members(
        &self,
        hub: &str,
        group: &GroupName,
    ) -> BoxFuture<'_, Result<Vec<Member>, BackplaneError>> {
        let (hub, group) = (hub.to_owned(), group.clone());
        Box::pin(async move { self.inner.presence.group_members(&hub, &group).await })
    }
}

impl Inner {
    /// This node's hub, when `connection` is one of this node's (a control API mounted on a node).
    fn local_holder(&self, hub: &str, connection: &ConnectionId) -> Option<Arc<dyn LocalHub>> {
        (node_of(connection) == Some(self.tag.as_str()))
            .then(|| self.hub(hub).map(|(_, local)| local))
            .flatten()
    }

    fn interest_channel(&self, hub: &str, interest: &Interest) -> String {
        match interest {
            Interest::Group(group) => self.channels.group(hub, group.as_str()),
            Interest::User(user) => self.channels.user(hub, user.as_str()),
        }
    }
}
