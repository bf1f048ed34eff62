//! Pooled command connections (deadpool-redis) for everything that is not pub/sub: presence scripts and
//! listings, and the cluster-wide rate limiter. One checkout runs a whole pipeline.

use std::time::Duration;

use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use hubcast_backplane::BackplaneError;
use redis::{FromRedisValue, Pipeline};

use crate::topology::{IO_TIMEOUT, Topology};

/// A pool for the topology in use.
#[derive(Clone)]
pub(crate) enum Commands {
    Standalone(deadpool_redis::Pool),
    Sentinel(deadpool_redis::sentinel::Pool),
    Cluster(deadpool_redis::cluster::Pool),
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
        let runtime = Some(Runtime::Tokio1);
        match topology {
            Topology::Standalone(url) => {
                // The client carries the TLS settings (CA, client certificate) in its connection info.
                let client =
                    crate::topology::client(url.as_str(), certificates).map_err(unavailable)?;
                let manager = deadpool_redis::Manager::new(client.get_connection_info().clone())
                    .map_err(unavailable)?;
                deadpool_redis::Pool::builder(manager)
                    .config(pool_config())
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map(Self::Standalone)
                    .map_err(unavailable)
            }
            Topology::Sentinel {
                sentinels,
                service,
                db,
                username,
                password,
            } => {
                let urls: Vec<String> = sentinels
                    .iter()
                    .map(|(host, port)| format!("redis://{host}:{port}"))
                    .collect();
                let mut config = deadpool_redis::sentinel::Config::from_urls(
                    urls,
                    service.clone(),
                    deadpool_redis::sentinel::SentinelServerType::Master,
                );
                config.node_connection_info =
                    Some(deadpool_redis::sentinel::SentinelNodeConnectionInfo {
                        tls_mode: None,
                        redis_connection_info: Some(deadpool_redis::RedisConnectionInfo {
                            db: *db,
                            username: username.clone(),
                            password: password.clone(),
                            protocol: deadpool_redis::ProtocolVersion::RESP2,
                        }),
                    });
                config.pool = Some(pool_config());
                config
                    .create_pool(runtime)
                    .map(Self::Sentinel)
                    .map_err(unavailable)
            }
            Topology::Cluster(nodes) => {
                let mut config = deadpool_redis::cluster::Config::from_urls(nodes.clone());
                config.pool = Some(pool_config());
                config
                    .create_pool(runtime)
                    .map(Self::Cluster)
                    .map_err(unavailable)
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
                    pipeline.query_async(&mut conn).await.map_err(unavailable)
                }
                Self::Cluster(pool) => {
                    let mut conn = pool.get().await.map_err(unavailable)?;
                    pipeline.query_async(&mut conn).await.map_err(unavailable)
                }
            }
        };
        tokio::time::timeout(IO_TIMEOUT + Duration::from_secs(1), run)
            .await
            .map_err(|_| unavailable("Redis did not answer in time"))?
    }
}
