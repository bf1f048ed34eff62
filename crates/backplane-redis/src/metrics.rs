//! The Redis backplane's state as Prometheus series, read from [`RedisBackplane::status`] at each
//! scrape (the link counts in plain atomics; nothing on the hot path touches a metric).

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

use crate::RedisBackplane;

/// The Redis backplane's state as metrics, read from [`RedisBackplane::status`] at each scrape.
pub(crate) struct BackplaneMetrics {
    redis: RedisBackplane,
    connected: IntGauge,
    queued: IntGauge,
    lag: Gauge,
    online: IntGaugeVec,
    counters: [IntCounter; 5],
}

impl BackplaneMetrics {
    pub(crate) fn new(redis: RedisBackplane) -> prometheus::Result<Self> {
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

impl RedisBackplane {
    /// Adds the backplane's series (`hubcast_backplane_*`, `hubcast_presence_online_users`) to
    /// `registry`.
    pub fn register_metrics(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(BackplaneMetrics::new(self.clone())?))
    }
}
