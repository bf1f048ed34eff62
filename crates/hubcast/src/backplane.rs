//! The backplane `--backplane` names: `memory` (one node) or Redis, with the per-user rate limiter that
//! goes with it (cluster-wide on Redis, falling back to this node's count while Redis is unreachable).

use std::sync::Arc;

use anyhow::Context as _;
use hubcast_backplane::{Backplane, BoxFuture, MemoryBackplane};
use hubcast_backplane_redis::{RedisBackplane, RedisConfig, redact};
use hubcast_gateway::hub::{LocalRateLimiter, RateLimiter};

use crate::cli::BackplaneArgs;

/// The backplane a node runs with.
pub(crate) struct Chosen {
    pub(crate) backplane: Arc<dyn Backplane>,
    pub(crate) limiter: Arc<dyn RateLimiter>,
    pub(crate) redis: Option<RedisBackplane>,
}

/// Builds the backplane the flags name (`memory`, `redis://…`, `redis+sentinel://…`,
/// `redis+cluster://…`).
pub(crate) async fn choose(args: &BackplaneArgs) -> anyhow::Result<Chosen> {
    let spec = args.backplane.as_str();
    if spec == "memory" {
        return Ok(Chosen {
            backplane: Arc::new(MemoryBackplane::new()),
            limiter: Arc::new(LocalRateLimiter::default()),
            redis: None,
        });
    }
    let config = RedisConfig {
        prefix: args.backplane_prefix.clone(),
        node_ttl: args.node_ttl.into(),
        ..RedisConfig::new(spec)
    };
    let redis = RedisBackplane::connect(config)
        .await
        .with_context(|| format!("starting the Redis backplane at {}", redact(spec)))?;
    Ok(Chosen {
        backplane: Arc::new(redis.clone()),
        limiter: Arc::new(RedisRateLimiter {
            redis: redis.clone(),
            local: LocalRateLimiter::default(),
        }),
        redis: Some(redis),
    })
}

/// Per-user token buckets in Redis, shared by every node.
struct RedisRateLimiter {
    redis: RedisBackplane,
    local: LocalRateLimiter,
}

impl RateLimiter for RedisRateLimiter {
    fn try_acquire<'a>(&'a self, key: &'a str, rate: f64, burst: f64) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match self.redis.take_token(key, rate, burst).await {
                Ok(admitted) => admitted,
                Err(error) => {
                    tracing::debug!(%error, "rate limit counted on this node while Redis is unreachable");
                    self.local.acquire_now(key, rate, burst)
                }
            }
        })
    }
}
