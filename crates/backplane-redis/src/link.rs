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
use tokio::sync::{Notify, mpsc};

use crate::pubsub::{Incoming, Outgoing, PubSub, PubSubConnection};
use crate::topology::IO_TIMEOUT;

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
    conn: Arc<dyn PubSubConnection>,
    broken: Arc<Notify>,
}

/// At most this many sends are written in one go.
const FLUSH_BATCH: usize = 512;

/// The pub/sub link.
pub(crate) struct Link {
    pubsub: Arc<dyn PubSub>,
    live: Mutex<Option<Live>>,
    connected: AtomicBool,
    channels: Mutex<HashSet<String>>,
    queue: Mutex<VecDeque<Outgoing>>,
    queue_limit: usize,
    /// Wakes the flusher when a send is queued.
    queued: Notify,
    /// Why the last connection attempt failed, while the link is down.
    last_error: Mutex<Option<String>>,
    pub(crate) counters: Counters,
}

fn unavailable(error: impl std::fmt::Display) -> BackplaneError {
    BackplaneError::Unavailable(error.to_string())
}

impl Link {
    pub(crate) fn new(pubsub: Arc<dyn PubSub>, queue_limit: usize) -> Arc<Self> {
        Arc::new(Self {
            pubsub,
            live: Mutex::new(None),
            connected: AtomicBool::new(false),
            channels: Mutex::new(HashSet::new()),
            queue: Mutex::new(VecDeque::new()),
            queue_limit,
            queued: Notify::new(),
            last_error: Mutex::new(None),
            counters: Counters::default(),
        })
    }

    /// Whether the link is up.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Why the last connection attempt failed, while the link is down.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_last_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
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
    fn current(&self) -> Option<(Arc<dyn PubSubConnection>, Arc<Notify>)> {
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
        let (conn, broken) = self
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
        if let Some((conn, broken)) = self.current()
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
        if let Some((conn, broken)) = self.current()
            && let Err(error) = conn.unsubscribe(channel).await
        {
            tracing::debug!(%error, "unsubscribe failed");
            broken.notify_one();
        }
    }

    /// Keeps the link up for as long as `receiver` lives.
    pub(crate) async fn supervise(self: Arc<Self>, receiver: Weak<dyn Receiver>) {
        let mut backoff = MIN_BACKOFF;
        let mut ever_connected = false;
        let mut failures: u64 = 0;
        while receiver.strong_count() > 0 {
            let (sender, incoming) = mpsc::unbounded_channel();
            let conn = match self.pubsub.connect(sender).await {
                Ok(conn) => conn,
                Err(error) => {
                    self.set_last_error(Some(error.clone()));
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
            let pump = tokio::spawn(pump(
                incoming,
                receiver.clone(),
                broken.clone(),
                self.clone(),
            ));
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
                self.set_last_error(None);
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

    async fn resubscribe(&self, conn: Arc<dyn PubSubConnection>) -> Result<(), String> {
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
        conn: Arc<dyn PubSubConnection>,
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
    mut incoming: mpsc::UnboundedReceiver<Incoming>,
    receiver: Weak<dyn Receiver>,
    broken: Arc<Notify>,
    link: Arc<Link>,
) {
    while let Some(message) = incoming.recv().await {
        let Some(receiver) = receiver.upgrade() else {
            break;
        };
        match message {
            Incoming::Message { channel, payload } => {
                link.counters.received.fetch_add(1, Ordering::Relaxed);
                receiver.on_message(&channel, payload);
            }
            Incoming::Malformed => {
                link.counters.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    broken.notify_one();
}
