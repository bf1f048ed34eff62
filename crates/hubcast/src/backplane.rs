//! The backplane `--backplane` names: `memory` (one node) or Redis, with the per-user rate limiter and
//! the session revocations that go with it (cluster-wide on Redis, falling back to this node's own
//! while Redis is unreachable).

use std::sync::Arc;

use anyhow::Context as _;
use hubcast_backplane::{Backplane, BoxFuture, MemoryBackplane};
use hubcast_backplane_redis::{RedisBackplane, redact};
use hubcast_gateway::hub::{LocalRateLimiter, RateLimiter};
use hubcast_sessions::{LocalRevocations, Revocations};

use crate::config::Config;

/// The backplane a node runs with.
pub(crate) struct Chosen {
    pub(crate) backplane: Arc<dyn Backplane>,
    pub(crate) limiter: Arc<dyn RateLimiter>,
    pub(crate) revocations: Arc<dyn Revocations>,
    pub(crate) redis: Option<RedisBackplane>,
}

/// Builds the backplane the flags name (`memory`, `redis://…`, `redis+sentinel://…`,
/// `redis+cluster://…`); a Redis backplane advertises `advertise` for relayed requests.
pub(crate) async fn choose(config: &Config, advertise: Option<String>) -> anyhow::Result<Chosen> {
    let spec = config.backplane.url.as_str();
    if spec == "memory" {
        return Ok(Chosen {
            backplane: Arc::new(MemoryBackplane::new()),
            limiter: Arc::new(LocalRateLimiter::default()),
            revocations: Arc::new(LocalRevocations::default()),
            redis: None,
        });
    }
    let config = hubcast_backplane_redis::RedisConfig {
        advertise,
        ..config.redis()
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
        revocations: Arc::new(RedisRevocations {
            redis: redis.clone(),
            local: LocalRevocations::default(),
        }),
        redis: Some(redis),
    })
}

/// Revoked sessions in Redis, seen by every node; each node also keeps the ones it revoked itself.
struct RedisRevocations {
    redis: RedisBackplane,
    local: LocalRevocations,
}

impl Revocations for RedisRevocations {
    fn revoke<'a>(&'a self, session: &'a str, until: u64) -> BoxFuture<'a, ()> {
        self.local.revoke_now(session, until);
        Box::pin(async move {
            let ttl = until.saturating_sub(jsonwebtoken::get_current_timestamp()) + 60;
            if let Err(error) = self.redis.mark(&format!("revoked:{session}"), ttl).await {
                tracing::warn!(%error, "a logout is revoked on this node only: Redis is unreachable");
            }
        })
    }

    fn is_revoked<'a>(&'a self, session: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if self.local.contains(session) {
                return true;
            }
            match self.redis.is_marked(&format!("revoked:{session}")).await {
                Ok(revoked) => revoked,
                Err(error) => {
                    tracing::debug!(%error, "session revocations read on this node only");
                    false
                }
            }
        })
    }
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
