//! Pooled command connections (deadpool) for everything that is not pub/sub: presence scripts and
//! listings, and the cluster-wide rate limiter. One checkout runs a whole pipeline.
//!
//! A standalone server uses deadpool-redis's manager (its connection info carries the TLS settings).
//! Sentinel and Cluster use the small managers below: deadpool-redis's cannot be given certificates
//! or the sentinels' credentials, and the clients they would wrap are the ones the pub/sub link builds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleResult};
use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use hubcast_backplane::BackplaneError;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{FromRedisValue, Pipeline, RedisError};

use crate::topology::{IO_TIMEOUT, Topology};

/// A pool for the topology in use.
#[derive(Clone)]
pub(crate) enum Commands {
    Standalone(deadpool_redis::Pool),
    Sentinel(managed::Pool<SentinelManager>),
    Cluster(managed::Pool<ClusterManager>),
}

/// Connections to the master the sentinels name at the time (asked again for each new connection,
/// so connections made after a failover reach the new master).
pub(crate) struct SentinelManager {
    client: tokio::sync::Mutex<SentinelClient>,
    pings: AtomicUsize,
}

/// Cluster connections (each routes by slot and follows the cluster's changes itself).
pub(crate) struct ClusterManager {
    client: redis::cluster::ClusterClient,
    pings: AtomicUsize,
}

/// A pooled connection is reused only if it answers a PING with the number sent.
async fn answers_ping(
    conn: &mut impl ConnectionLike,
    pings: &AtomicUsize,
) -> RecycleResult<RedisError> {
    let number = pings.fetch_add(1, Ordering::Relaxed).to_string();
    let answer: String = redis::cmd("PING").arg(&number).query_async(conn).await?;
    if answer == number {
        Ok(())
    } else {
        Err(managed::RecycleError::message("wrong PING answer"))
    }
}

impl managed::Manager for SentinelManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client.lock().await.get_async_connection().await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        answers_ping(conn, &self.pings).await
    }
}

impl managed::Manager for ClusterManager {
    type Type = ClusterConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<ClusterConnection, RedisError> {
        self.client.get_async_connection().await
    }

    async fn recycle(
        &self,
        conn: &mut ClusterConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        answers_ping(conn, &self.pings).await
    }
}

fn pool<M: managed::Manager, W: From<managed::Object<M>>>(
    manager: M,
) -> Result<managed::Pool<M, W>, BackplaneError> {
    managed::Pool::<M, W>::builder(manager)
        .config(pool_config())
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(unavailable)
}

const POOL_SIZE: usize = 16;

fn pool_config() -> PoolConfig {
    let mut config = PoolConfig::new(POOL_SIZE);
    config.timeouts = Timeouts {
        wait: Some(IO_TIMEOUT),
        create: Some(IO_TIMEOUT),
        recycle: Some(IO_TIMEOUT),
    };
    config
}

fn unavailable(error: impl std::fmt::Display) -> BackplaneError {
    BackplaneError::Unavailable(error.to_string())
}

impl Commands {
    pub(crate) fn new(
        topology: &Topology,
        certificates: Option<&redis::TlsCertificates>,
    ) -> Result<Self, BackplaneError> {
        match topology {
            Topology::Standalone(url) => {
                // The client carries the TLS settings (CA, client certificate) in its connection info.
                let client =
                    crate::topology::client(url.as_str(), certificates).map_err(unavailable)?;
                let manager = deadpool_redis::Manager::new(client.get_connection_info().clone())
                    .map_err(unavailable)?;
                pool(manager).map(Self::Standalone)
            }
            Topology::Sentinel(sentinels) => {
                let client = sentinels
                    .client(certificates, redis::ProtocolVersion::RESP2)
                    .map_err(unavailable)?;
                pool(SentinelManager {
                    client: tokio::sync::Mutex::new(client),
                    pings: AtomicUsize::new(0),
                })
                .map(Self::Sentinel)
            }
            Topology::Cluster(nodes) => {
                let client = Topology::cluster_client(nodes, certificates, |builder| {
                    builder
                        .connection_timeout(IO_TIMEOUT)
                        .response_timeout(IO_TIMEOUT)
                })
                .map_err(unavailable)?;
                pool(ClusterManager {
                    client,
                    pings: AtomicUsize::new(0),
                })
                .map(Self::Cluster)
            }
        }
    }

    /// Runs a pipeline on one pooled connection.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        pipeline: &Pipeline,
    ) -> Result<T, BackplaneError> {
        let run = async {
            match self {
                Self::Standalone(pool) => {
                    let mut conn = pool.get().await.map_err(unavailable)?;
                    pipeline.query_async(&mut conn).await.map_err(unavailable)
                }
                Self::Sentinel(pool) => {
                    let mut conn = pool.get().await.map_err(unavailable)?;
                    pipeline.query_async(&mut *conn).await.map_err(unavailable)
                }
                Self::Cluster(pool) => {
                    let mut conn = pool.get().await.map_err(unavailable)?;
                    pipeline.query_async(&mut *conn).await.map_err(unavailable)
                }
            }
        };
        tokio::time::timeout(IO_TIMEOUT + Duration::from_secs(1), run)
            .await
            .map_err(|_| unavailable("Redis did not answer in time"))?
    }
}
