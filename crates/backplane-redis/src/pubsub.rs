//! The pub/sub server under the link ([`PubSub`]): connect (messages arrive as [`Incoming`]), publish a
//! batch in order, subscribe, unsubscribe. [`RedisPubSub`] is the real one: PUBLISH/SUBSCRIBE on a RESP3
//! multiplexed connection (standalone, Sentinel), sharded SPUBLISH/SSUBSCRIBE on a cluster. Tests put
//! [`MemoryPubSub`] (the `stub-pubsub` feature) under the backplane to exercise its routing by node tag,
//! its pending-request map, interest channels and origin filtering without a Redis server.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hubcast_backplane::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::mpsc;

use crate::topology::{IO_TIMEOUT, Topology, resp3};

/// A queued send: channel, payload, and when it was queued.
pub(crate) type Outgoing = (String, Vec<u8>, Instant);

/// What a connection hands up.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A message on a subscribed channel.
    Message { channel: String, payload: Bytes },
    /// Something arrived that is not a readable message.
    Malformed,
}

/// A pub/sub server.
pub(crate) trait PubSub: Send + Sync + 'static {
    /// Connects; received messages go to `incoming`, which is dropped (closed) when the connection
    /// is lost.
    fn connect(
        &self,
        incoming: mpsc::UnboundedSender<Incoming>,
    ) -> BoxFuture<'_, Result<Arc<dyn PubSubConnection>, String>>;
}

/// One live connection of a [`PubSub`].
pub(crate) trait PubSubConnection: Send + Sync {
    /// Publishes one message now; how many subscribers received it.
    fn publish(&self, channel: &str, payload: &[u8]) -> BoxFuture<'_, Result<i64, String>>;
    /// Publishes a batch in order; returns the items that could not be published.
    fn publish_batch(&self, batch: Vec<Outgoing>) -> BoxFuture<'_, Vec<Outgoing>>;
    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), String>>;
    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), String>>;
}

/// Redis as the pub/sub server.
pub(crate) struct RedisPubSub {
    topology: Topology,
    certificates: Option<redis::TlsCertificates>,
}

impl RedisPubSub {
    pub(crate) fn new(topology: Topology, certificates: Option<redis::TlsCertificates>) -> Self {
        Self {
            topology,
            certificates,
        }
    }

    async fn open(&self, pushes: mpsc::UnboundedSender<PushInfo>) -> RedisResult<RedisConnection> {
        let config = AsyncConnectionConfig::new()
            .set_push_sender(pushes.clone())
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT));
        match &self.topology {
            Topology::Standalone(url) => {
                let client = crate::topology::client(resp3(url)?, self.certificates.as_ref())?;
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(RedisConnection::Single(conn))
            }
            Topology::Sentinel(sentinels) => {
                let client = sentinels
                    .client(self.certificates.as_ref(), redis::ProtocolVersion::RESP3)?
                    .async_get_client()
                    .await?;
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(RedisConnection::Single(conn))
            }
            Topology::Cluster(nodes) => {
                let client =
                    Topology::cluster_client(nodes, self.certificates.as_ref(), |builder| {
                        builder
                            .use_protocol(redis::ProtocolVersion::RESP3)
                            .push_sender(pushes)
                            .connection_timeout(IO_TIMEOUT)
                            .response_timeout(IO_TIMEOUT)
                    })?;
                Ok(RedisConnection::Cluster(
                    client.get_async_connection().await?,
                ))
            }
        }
    }
}

impl PubSub for RedisPubSub {
    fn connect(
        &self,
        incoming: mpsc::UnboundedSender<Incoming>,
    ) -> BoxFuture<'_, Result<Arc<dyn PubSubConnection>, String>> {
        Box::pin(async move {
            let (pushes, received) = mpsc::unbounded_channel();
            let connection = self.open(pushes).await.map_err(|e| e.to_string())?;
            tokio::spawn(forward(received, incoming));
            Ok(Arc::new(connection) as Arc<dyn PubSubConnection>)
        })
    }
}

/// Turns RESP3 pushes into [`Incoming`] messages until the connection drops (which drops `incoming`).
async fn forward(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    incoming: mpsc::UnboundedSender<Incoming>,
) {
    while let Some(push) = pushes.recv().await {
        let message = match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let mut data = push.data.into_iter();
                match (data.next(), data.next()) {
                    (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) => {
                        match String::from_utf8(channel) {
                            Ok(channel) => Incoming::Message {
                                channel,
                                payload: Bytes::from(payload),
                            },
                            Err(_) => Incoming::Malformed,
                        }
                    }
                    _ => Incoming::Malformed,
                }
            }
            PushKind::Disconnection => break,
            _ => continue,
        };
        if incoming.send(message).is_err() {
            break;
        }
    }
}

/// A live Redis connection: a RESP3 multiplexed connection (standalone or Sentinel), or a cluster
/// connection using sharded pub/sub.
#[derive(Clone)]
enum RedisConnection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    async fn publish_one(&mut self, channel: &str, payload: &[u8]) -> RedisResult<i64> {
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
    async fn publish_all(&self, batch: Vec<Outgoing>) -> Vec<Outgoing> {
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

    async fn subscribe_to(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Single(c) => c.subscribe(channel).await,
            Self::Cluster(c) => c.ssubscribe(channel).await,
        }
    }

    async fn unsubscribe_from(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Single(c) => c.unsubscribe(channel).await,
            Self::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }
}

impl PubSubConnection for RedisConnection {
    fn publish(&self, channel: &str, payload: &[u8]) -> BoxFuture<'_, Result<i64, String>> {
        let (channel, payload) = (channel.to_owned(), payload.to_vec());
        let mut connection = self.clone();
        Box::pin(async move {
            connection
                .publish_one(&channel, &payload)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn publish_batch(&self, batch: Vec<Outgoing>) -> BoxFuture<'_, Vec<Outgoing>> {
        Box::pin(self.publish_all(batch))
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), String>> {
        let channel = channel.to_owned();
        let mut connection = self.clone();
        Box::pin(async move {
            connection
                .subscribe_to(&channel)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), String>> {
        let channel = channel.to_owned();
        let mut connection = self.clone();
        Box::pin(async move {
            connection
                .unsubscribe_from(&channel)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// An in-memory pub/sub server for tests (feature `stub-pubsub`): every connection of one
/// `MemoryPubSub` hears what the others publish on the channels it subscribed to, in order.
#[cfg(feature = "stub-pubsub")]
#[derive(Clone, Default)]
pub struct MemoryPubSub {
    connections: Arc<std::sync::Mutex<Vec<std::sync::Weak<MemoryConnection>>>>,
}

#[cfg(feature = "stub-pubsub")]
struct MemoryConnection {
    server: MemoryPubSub,
    channels: std::sync::Mutex<std::collections::HashSet<String>>,
    incoming: mpsc::UnboundedSender<Incoming>,
}

#[cfg(feature = "stub-pubsub")]
impl MemoryPubSub {
    /// A server with no connection yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn deliver(&self, channel: &str, payload: &[u8]) -> i64 {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        connections.retain(|c| c.strong_count() > 0);
        let mut receivers = 0;
        for connection in connections.iter().filter_map(std::sync::Weak::upgrade) {
            let subscribed = connection
                .channels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(channel);
            let message = Incoming::Message {
                channel: channel.to_owned(),
                payload: Bytes::copy_from_slice(payload),
            };
            if subscribed && connection.incoming.send(message).is_ok() {
                receivers += 1;
            }
        }
        receivers
    }
}

#[cfg(feature = "stub-pubsub")]
impl PubSub for MemoryPubSub {
    fn connect(
        &self,
        incoming: mpsc::UnboundedSender<Incoming>,
    ) -> BoxFuture<'_, Result<Arc<dyn PubSubConnection>, String>> {
        let connection = Arc::new(MemoryConnection {
            server: self.clone(),
            channels: std::sync::Mutex::default(),
            incoming,
        });
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&connection));
        Box::pin(async move { Ok(connection as Arc<dyn PubSubConnection>) })
    }
}

#[cfg(feature = "stub-pubsub")]
impl PubSubConnection for MemoryConnection {
    fn publish(&self, channel: &str, payload: &[u8]) -> BoxFuture<'_, Result<i64, String>> {
        let receivers = self.server.deliver(channel, payload);
        Box::pin(async move { Ok(receivers) })
    }

    fn publish_batch(&self, batch: Vec<Outgoing>) -> BoxFuture<'_, Vec<Outgoing>> {
        for (channel, payload, _) in &batch {
            self.server.deliver(channel, payload);
        }
        Box::pin(async { Vec::new() })
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), String>> {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.to_owned());
        Box::pin(async { Ok(()) })
    }

    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), String>> {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(channel);
        Box::pin(async { Ok(()) })
    }
}
