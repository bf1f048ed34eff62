//! Abuse limits of a hub: a token bucket per connection (and per method) for invocations, and the
//! bounds on groups. A call over its rate gets an error Completion; a client that keeps calling over the
//! limit is closed.

use hubcast_backplane::BoxFuture;
use std::time::Instant;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            last: Instant::now(),
        }
    }

    /// Takes a token if one is there.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Rate limits shared beyond one connection (per user). [`LocalRateLimiter`] counts on this node; a
/// cluster-wide implementation (on the Redis backplane) can replace it through
/// `GatewayBuilder::rate_limiter`.
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes a token from `key`'s bucket (`rate` a second, `burst` at most); false when it is empty.
    fn try_acquire<'a>(&'a self, key: &'a str, rate: f64, burst: f64) -> BoxFuture<'a, bool>;
}

/// Per-key token buckets in this process.
#[derive(Default)]
pub struct LocalRateLimiter {
    buckets: dashmap::DashMap<String, Bucket>,
}

impl RateLimiter for LocalRateLimiter {
    fn try_acquire<'a>(&'a self, key: &'a str, rate: f64, burst: f64) -> BoxFuture<'a, bool> {
        let admitted = self.acquire_now(key, rate, burst);
        Box::pin(async move { admitted })
    }
}

impl LocalRateLimiter {
    /// Takes a token from `key`'s bucket in this process.
    pub fn acquire_now(&self, key: &str, rate: f64, burst: f64) -> bool {
        let now = Instant::now();
        if let Some(mut bucket) = self.buckets.get_mut(key) {
            return bucket.try_take(now);
        }
        self.buckets
            .entry(key.to_owned())
            .or_insert_with(|| Bucket::new(rate, burst))
            .try_take(now)
    }
}

/// The longest group name accepted (as the control API's limit).
pub(crate) const MAX_GROUP_NAME: usize = 1024;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn refills_at_its_rate_up_to_its_burst() {
        let start = Instant::now();
        let mut bucket = Bucket::new(2.0, 3.0);
        assert!((0..3).all(|_| bucket.try_take(start)));
        assert!(!bucket.try_take(start));
        assert!(bucket.try_take(start + Duration::from_millis(500)));
        assert!(!bucket.try_take(start + Duration::from_millis(600)));
        // Ten idle seconds refill only up to the burst.
        let later = start + Duration::from_secs(10);
        assert!((0..3).all(|_| bucket.try_take(later)));
        assert!(!bucket.try_take(later));
    }
}
