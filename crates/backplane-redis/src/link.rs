//! The pub/sub link: one RESP3 connection (a multiplexed connection, or a cluster connection using
//! sharded pub/sub) that carries every PUBLISH of this node and receives every message of the channels
//! it subscribes to. Publishes are pipelined on it: no pool checkout, no PING per send.
//!
//! A supervisor keeps the link up. When Redis goes away it reconnects with backoff (50 ms doubling to
//! 1 s), resubscribes every live channel, then publishes what was queued meanwhile. Sends made while the
//! link is down wait in a bounded queue (the oldest are dropped past the bound, and counted).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use hubcast_backplane::BackplaneError;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::{Notify, mpsc};

use crate::topology::{IO_TIMEOUT, Topology, resp3};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Who the link hands what it receives to.
pub(crate) trait Receiver: Send + Sync + 'static {
    /// A message arrived on `channel`.
    fn on_message(self: Arc<Self>, channel: &str, payload: Bytes);
    /// The link is (again) up with every channel subscribed.
    fn on_connected(&self, reconnected: bool);
}

/// A live connection.
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn publish(&mut self, channel: &str, payload: &[u8]) -> RedisResult<i64> {
        match self {
            Self::Single(c) => {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async(c)
                    .await
            }
            Self::Cluster(c) => {
                redis::cmd("SPUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async(c)
                    .await
            }
        }
    }

    async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Single(c) => c.subscribe(channel).await,
            Self::Cluster(c) => c.ssubscribe(channel).await,
        }
    }

    async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Single(c) => c.unsubscribe(channel).await,
            Self::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }
}

/// Counters of the link, for logs and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) reconnects: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) malformed: AtomicU64,
}

/// The current connection and the signal that it broke.
struct Live {
    conn: Conn,
    broken: Arc<Notify>,
}

/// The pub/sub link.
pub(crate) struct Link {
    topology: Topology,
    live: Mutex<Option<Live>>,
    connected: AtomicBool,
    channels: Mutex<HashSet<String>>,
    queue: Mutex<VecDeque<(String, Vec<u8>)>>,
    queue_limit: usize,
    pub(crate) counters: Counters,
}

fn unavailable(error: impl std::fmt::Display) -> BackplaneError {
    BackplaneError::Unavailable(error.to_string())
}

impl Link {
    pub(crate) fn new(topology: Topology, queue_limit: usize) -> Arc<Self> {
        Arc::new(Self {
            topology,
            live: Mutex::new(None),
            connected: AtomicBool::new(false),
            channels: Mutex::new(HashSet::new()),
            queue: Mutex::new(VecDeque::new()),
            queue_limit,
            counters: Counters::default(),
        })
    }

    /// Whether the link is up.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Sends waiting for the link to come back.
    pub(crate) fn queued(&self) -> usize {
        self.queue().len()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, Vec<u8>)>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live connection, if any, with its broken signal.
    fn current(&self) -> Option<(Conn, Arc<Notify>)> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.as_ref()
            .map(|live| (live.conn.clone(), live.broken.clone()))
    }

    fn enqueue(&self, channel: String, payload: Vec<u8>) {
        let mut queue = self.queue();
        if queue.len() >= self.queue_limit {
            queue.pop_front();
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back((channel, payload));
    }

    /// Publishes a send; while the link is down (or still flushing) it waits in the queue.
    pub(crate) async fn publish_queued(&self, channel: String, payload: Vec<u8>) {
        let current = self.current().filter(|_| self.is_connected());
        let Some((mut conn, broken)) = current.filter(|_| self.queue().is_empty()) else {
            self.enqueue(channel, payload);
            return;
        };
        match conn.publish(&channel, &payload).await {
            Ok(_) => {
                self.counters.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::debug!(%error, "publish failed: queued until Redis is back");
                self.enqueue(channel, payload);
                broken.notify_one();
            }
        }
    }

    /// Publishes a command now and returns how many subscribers received it; fails while the link is
    /// down.
    pub(crate) async fn publish_now(
        &self,
        channel: &str,
        payload: &[u8],
    ) -> Result<i64, BackplaneError> {
        let (mut conn, broken) = self
            .current()
            .filter(|_| self.is_connected())
            .ok_or_else(|| unavailable("Redis is unreachable"))?;
        match conn.publish(channel, payload).await {
            Ok(receivers) => {
                self.counters.published.fetch_add(1, Ordering::Relaxed);
                Ok(receivers)
            }
            Err(error) => {
                broken.notify_one();
                Err(unavailable(error))
            }
        }
    }

    /// Subscribes to a channel, now if the link is up, and again after every reconnect.
    pub(crate) async fn subscribe(&self, channel: String) {
        if !self.channels().insert(channel.clone()) {
            return;
        }
        if let Some((mut conn, broken)) = self.current()
            && let Err(error) = conn.subscribe(&channel).await
        {
            tracing::debug!(%error, "subscribe failed: retried on reconnect");
            broken.notify_one();
        }
    }

    /// Unsubscribes from a channel.
    pub(crate) async fn unsubscribe(&self, channel: &str) {
        if !self.channels().remove(channel) {
            return;
        }
        if let Some((mut conn, broken)) = self.current()
            && let Err(error) = conn.unsubscribe(channel).await
        {
            tracing::debug!(%error, "unsubscribe failed");
            broken.notify_one();
        }
    }

    async fn connect(&self, pushes: mpsc::UnboundedSender<PushInfo>) -> RedisResult<Conn> {
        let config = AsyncConnectionConfig::new()
            .set_push_sender(pushes.clone())
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT));
        match &self.topology {
            Topology::Standalone(url) => {
                let client = redis::Client::open(resp3(url)?)?;
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Conn::Single(conn))
            }
            Topology::Sentinel {
                sentinels,
                service,
                db,
                username,
                password,
            } => {
                let mut builder = redis::sentinel::SentinelClientBuilder::new(
                    Topology::sentinel_addrs(sentinels),
                    service,
                    redis::sentinel::SentinelServerType::Master,
                )?
                .set_client_to_redis_protocol(redis::ProtocolVersion::RESP3)
                .set_client_to_redis_db(*db);
                if let Some(username) = username {
                    builder = builder.set_client_to_redis_username(username);
                }
                if let Some(password) = password {
                    builder = builder.set_client_to_redis_password(password);
                }
                let client = builder.build()?.async_get_client().await?;
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Conn::Single(conn))
            }
            Topology::Cluster(nodes) => {
                let client = redis::cluster::ClusterClient::builder(nodes.clone())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(pushes)
                    .connection_timeout(IO_TIMEOUT)
                    .response_timeout(IO_TIMEOUT)
                    .build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// Keeps the link up for as long as `receiver` lives.
    pub(crate) async fn supervise(self: Arc<Self>, receiver: Weak<dyn Receiver>) {
        let mut backoff = MIN_BACKOFF;
        let mut ever_connected = false;
        let mut failures: u64 = 0;
        while receiver.strong_count() > 0 {
            let (sender, pushes) = mpsc::unbounded_channel();
            let conn = match self.connect(sender).await {
                Ok(conn) => conn,
                Err(error) => {
                    failures += 1;
                    // The first failure and then one in twenty, so an outage does not flood the log.
                    if failures % 20 == 1 {
                        tracing::warn!(%error, failures, "cannot reach Redis; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let broken = Arc::new(Notify::new());
            *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(Live {
                conn: conn.clone(),
                broken: broken.clone(),
            });
            let pump = tokio::spawn(pump(pushes, receiver.clone(), broken.clone(), self.clone()));
            if self.resubscribe(conn.clone()).await.is_ok() && self.flush(conn).await.is_ok() {
                backoff = MIN_BACKOFF;
                failures = 0;
                if ever_connected {
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("Redis is back: channels resubscribed, queued sends published");
                }
                self.connected.store(true, Ordering::Relaxed);
                if let Some(receiver) = receiver.upgrade() {
                    receiver.on_connected(ever_connected);
                }
                ever_connected = true;
                broken.notified().await;
                tracing::warn!(
                    "lost the Redis connection: serving local connections, queueing sends"
                );
            }
            self.connected.store(false, Ordering::Relaxed);
            *self.live.lock().unwrap_or_else(|p| p.into_inner()) = None;
            pump.abort();
            tokio::time::sleep(backoff).await;
        }
    }

    async fn resubscribe(&self, mut conn: Conn) -> RedisResult<()> {
        let channels: Vec<String> = self.channels().iter().cloned().collect();
        for channel in channels {
            conn.subscribe(&channel).await?;
        }
        Ok(())
    }

    /// Publishes the queued sends in order; stops at the first failure (the send stays queued).
    async fn flush(&self, mut conn: Conn) -> RedisResult<()> {
        loop {
            let Some((channel, payload)) = self.queue().pop_front() else {
                return Ok(());
            };
            if let Err(error) = conn.publish(&channel, &payload).await {
                self.queue().push_front((channel, payload));
                return Err(error);
            }
            self.counters.published.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Hands received messages to the receiver until the connection drops.
async fn pump(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    receiver: Weak<dyn Receiver>,
    broken: Arc<Notify>,
    link: Arc<Link>,
) {
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let Some(receiver) = receiver.upgrade() else {
                    break;
                };
                let mut data = push.data.into_iter();
                match (data.next(), data.next()) {
                    (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) => {
                        link.counters.received.fetch_add(1, Ordering::Relaxed);
                        match std::str::from_utf8(&channel) {
                            Ok(channel) => receiver.on_message(channel, Bytes::from(payload)),
                            Err(_) => {
                                link.counters.malformed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    _ => {
                        link.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            PushKind::Disconnection => break,
            _ => {}
        }
    }
    broken.notify_one();
}
