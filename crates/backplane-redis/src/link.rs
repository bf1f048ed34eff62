//! The pub/sub link: one RESP3 connection (a multiplexed connection, or a cluster connection using
//! sharded pub/sub) that carries every PUBLISH of this node and receives every message of the channels
//! it subscribes to.
//!
//! Sends go into an outbox that one flusher task drains in order, writing everything queued at once
//! (pipelined on the multiplexed connection: no pool checkout, no PING, no round trip per send), so a
//! hub's send never waits for Redis. While the link is down the outbox keeps them, up to a bound (the
//! oldest are dropped past it, and counted).
//!
//! A supervisor keeps the link up. When Redis goes away it reconnects with backoff (50 ms doubling to
//! 1 s), resubscribes every live channel, then lets the flusher publish what waited meanwhile, after a
//! grace of 1.25 s so the other nodes, which retry at least every second, are subscribed again.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hubcast_backplane::BackplaneError;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::{Notify, mpsc};

use crate::topology::{IO_TIMEOUT, Topology, resp3};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a node that got its link back waits before publishing what it queued.
const RESUBSCRIBE_GRACE: Duration = Duration::from_millis(1_250);

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

    /// Publishes a batch in order: one pipeline on a single server; on a cluster one pipeline per
    /// channel (a channel's messages stay in order; different channels may go to different shards).
    /// Returns the items that could not be published.
    async fn publish_batch(&self, batch: Vec<Outgoing>) -> Vec<Outgoing> {
        fn pipeline(items: &[Outgoing]) -> redis::Pipeline {
            let mut pipeline = redis::pipe();
            for (channel, payload, _) in items {
                pipeline.cmd("PUBLISH").arg(channel).arg(payload).ignore();
            }
            pipeline
        }
        match self {
            Self::Single(conn) => {
                let result: RedisResult<()> = pipeline(&batch).query_async(&mut conn.clone()).await;
                match result {
                    Ok(()) => Vec::new(),
                    Err(error) => {
                        tracing::debug!(%error, "publish failed: kept until Redis is back");
                        batch
                    }
                }
            }
            Self::Cluster(conn) => {
                let mut by_channel: Vec<Vec<Outgoing>> = Vec::new();
                for item in batch {
                    match by_channel
                        .iter_mut()
                        .find(|g| g.first().is_some_and(|f| f.0 == item.0))
                    {
                        Some(group) => group.push(item),
                        None => by_channel.push(vec![item]),
                    }
                }
                let sends = by_channel.into_iter().map(|group| {
                    let mut conn = conn.clone();
                    async move {
                        let mut pipeline = redis::pipe();
                        for (channel, payload, _) in &group {
                            pipeline.cmd("SPUBLISH").arg(channel).arg(payload).ignore();
                        }
                        let result: RedisResult<()> = pipeline.query_async(&mut conn).await;
                        match result {
                            Ok(()) => Vec::new(),
                            Err(error) => {
                                tracing::debug!(%error, "publish failed: kept until Redis is back");
                                group
                            }
                        }
                    }
                });
                futures_util::future::join_all(sends)
                    .await
                    .into_iter()
                    .flatten()
                    .collect()
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
    /// How long the oldest send of the last published batch waited, in microseconds.
    pub(crate) lag_micros: AtomicU64,
}

/// The current connection and the signal that it broke.
struct Live {
    conn: Conn,
    broken: Arc<Notify>,
}

/// A queued send: channel, payload, and when it was queued.
type Outgoing = (String, Vec<u8>, Instant);

/// At most this many sends are written in one go.
const FLUSH_BATCH: usize = 512;

/// The pub/sub link.
pub(crate) struct Link {
    topology: Topology,
    live: Mutex<Option<Live>>,
    connected: AtomicBool,
    channels: Mutex<HashSet<String>>,
    queue: Mutex<VecDeque<Outgoing>>,
    queue_limit: usize,
    /// Wakes the flusher when a send is queued.
    queued: Notify,
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
            queued: Notify::new(),
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

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Outgoing>> {
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

    /// Queues a send for the flusher, which publishes it in order as soon as the link is up.
    pub(crate) fn publish_queued(&self, channel: String, payload: Vec<u8>) {
        {
            let mut queue = self.queue();
            if queue.len() >= self.queue_limit {
                queue.pop_front();
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            queue.push_back((channel, payload, Instant::now()));
        }
        self.queued.notify_one();
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
            if self.resubscribe(conn.clone()).await.is_ok() {
                let stop = Arc::new(Notify::new());
                let flusher = tokio::spawn(self.clone().flush(
                    conn,
                    broken.clone(),
                    stop.clone(),
                    ever_connected,
                ));
                backoff = MIN_BACKOFF;
                failures = 0;
                if ever_connected {
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("Redis is back: channels resubscribed, publishing queued sends");
                }
                self.connected.store(true, Ordering::Relaxed);
                if let Some(receiver) = receiver.upgrade() {
                    receiver.on_connected(ever_connected);
                }
                ever_connected = true;
                broken.notified().await;
                // The flusher finishes the batch it is writing (a failure puts it back in the queue).
                stop.notify_one();
                let mut flusher = flusher;
                if tokio::time::timeout(IO_TIMEOUT * 2, &mut flusher)
                    .await
                    .is_err()
                {
                    flusher.abort();
                }
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

    /// Publishes queued sends in order, everything queued at once, until the connection breaks or `stop`
    /// is signalled; what could not be published goes back to the front of the queue.
    ///
    /// After a reconnect it first waits [`RESUBSCRIBE_GRACE`]: the other nodes lost their subscriptions
    /// too and retry at least every [`MAX_BACKOFF`], so what was queued during the outage is published
    /// once they are listening again.
    async fn flush(
        self: Arc<Self>,
        conn: Conn,
        broken: Arc<Notify>,
        stop: Arc<Notify>,
        reconnected: bool,
    ) {
        if reconnected {
            tokio::select! {
                _ = tokio::time::sleep(RESUBSCRIBE_GRACE) => {}
                _ = stop.notified() => return,
            }
        }
        loop {
            let batch: Vec<Outgoing> = {
                let mut queue = self.queue();
                let take = queue.len().min(FLUSH_BATCH);
                queue.drain(..take).collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.queued.notified() => continue,
                    _ = stop.notified() => return,
                }
            }
            let count = batch.len();
            let oldest = batch.first().map(|(_, _, queued)| *queued);
            let failed = conn.publish_batch(batch).await;
            if let Some(oldest) = oldest.filter(|_| failed.is_empty()) {
                let lag = u64::try_from(oldest.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.counters.lag_micros.store(lag, Ordering::Relaxed);
            }
            let published = (count - failed.len()) as u64;
            self.counters
                .published
                .fetch_add(published, Ordering::Relaxed);
            if !failed.is_empty() {
                let mut queue = self.queue();
                for item in failed.into_iter().rev() {
                    queue.push_front(item);
                }
                drop(queue);
                broken.notify_one();
                return;
            }
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
