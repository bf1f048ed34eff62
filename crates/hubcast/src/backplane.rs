//! The backplane `--backplane` names: `memory` (one node) or Redis, with the per-user rate limiter and
//! the session revocations that go with it (cluster-wide on Redis, falling back to this node's own
//! while Redis is unreachable).

use std::sync::Arc;

use anyhow::Context as _;
use hubcast_backplane::{Backplane, BoxFuture, MemoryBackplane};
use hubcast_backplane_redis::{RedisBackplane, RedisConfig, redact};
use hubcast_gateway::auth::{LocalRevocations, Revocations};
use hubcast_gateway::hub::{LocalRateLimiter, RateLimiter};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, IntCounter, IntGauge, IntGaugeVec, Opts};

use crate::cli::BackplaneArgs;

/// The backplane a node runs with.
pub(crate) struct Chosen {
    pub(crate) backplane: Arc<dyn Backplane>,
    pub(crate) limiter: Arc<dyn RateLimiter>,
    pub(crate) revocations: Arc<dyn Revocations>,
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
            revocations: Arc::new(LocalRevocations::default()),
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
    hubcast_gateway::metrics::metrics().register(Box::new(BackplaneMetrics::new(redis.clone())?));
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

/// The Redis backplane's state as metrics, read from [`RedisBackplane::status`] at each scrape.
struct BackplaneMetrics {
    redis: RedisBackplane,
    connected: IntGauge,
    queued: IntGauge,
    lag: Gauge,
    online: IntGaugeVec,
    counters: [IntCounter; 5],
}

impl BackplaneMetrics {
    fn new(redis: RedisBackplane) -> anyhow::Result<Self> {
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        Ok(Self {
            redis,
            connected: IntGauge::new(
                "hubcast_backplane_connected",
                "1 while the Redis pub/sub link is up",
            )?,
            queued: IntGauge::new(
                "hubcast_backplane_queued",
                "Sends waiting for Redis (the outbox)",
            )?,
            lag: Gauge::new(
                "hubcast_backplane_publish_lag_seconds",
                "How long the oldest send of the last published batch waited in the outbox",
            )?,
            online: IntGaugeVec::new(
                Opts::new(
                    "hubcast_presence_online_users",
                    "Online users per hub on every node (shared presence, read at each heartbeat)",
                ),
                &["hub"],
            )?,
            counters: [
                counter(
                    "hubcast_backplane_published_total",
                    "Messages published to Redis",
                )?,
                counter(
                    "hubcast_backplane_received_total",
                    "Messages received from Redis",
                )?,
                counter(
                    "hubcast_backplane_reconnects_total",
                    "Times the Redis link came back after a loss",
                )?,
                counter(
                    "hubcast_backplane_dropped_total",
                    "Queued sends dropped because the outbox was full",
                )?,
                counter(
                    "hubcast_backplane_malformed_total",
                    "Received payloads that could not be read",
                )?,
            ],
        })
    }
}

impl Collector for BackplaneMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.connected.desc();
        descs.extend(self.queued.desc());
        descs.extend(self.lag.desc());
        descs.extend(self.online.desc());
        self.counters.iter().for_each(|c| descs.extend(c.desc()));
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let status = self.redis.status();
        self.connected.set(i64::from(status.connected));
        self.queued
            .set(i64::try_from(status.queued).unwrap_or(i64::MAX));
        self.lag.set(status.publish_lag.as_secs_f64());
        for (hub, users) in self.redis.presence_sizes() {
            let users = i64::try_from(users).unwrap_or(i64::MAX);
            self.online.with_label_values(&[hub.as_str()]).set(users);
        }
        let values = [
            status.published,
            status.received,
            status.reconnects,
            status.dropped,
            status.malformed,
        ];
        for (counter, value) in self.counters.iter().zip(values) {
            counter.reset();
            counter.inc_by(value);
        }
        let mut families = self.connected.collect();
        families.extend(self.queued.collect());
        families.extend(self.lag.collect());
        families.extend(self.online.collect());
        self.counters
            .iter()
            .for_each(|c| families.extend(c.collect()));
        families
    }
}
