//! A budget of failed authentications per client address, against guessing keys: up to a number of
//! failures a minute (10 by default) cost nothing; after that the address is answered 429 with
//! `Retry-After` for a pause that doubles with every further failure (up to [`MAX_PAUSE`]), whatever
//! credential it sends meanwhile. Successes do not reset it: a guesser that sometimes holds a valid key
//! is still throttled on its guesses.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Failures a minute that cost nothing, unless configured.
pub const DEFAULT_FREE_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// The longest pause.
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(300);
/// Addresses tracked before stale ones are dropped.
const PRUNE_AT: usize = 10_000;

#[derive(Debug)]
struct Record {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// Failed authentications per address.
#[derive(Debug)]
pub(crate) struct FailureBudget {
    /// Failures a minute that cost nothing; 0 turns the budget off.
    free: u32,
    addresses: DashMap<IpAddr, Record>,
}

impl FailureBudget {
    pub(crate) fn new(free: u32) -> Self {
        Self {
            free,
            addresses: DashMap::new(),
        }
    }

    /// How long `address` must still wait, if it is blocked.
    pub(crate) fn blocked(&self, address: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let until = self.addresses.get(&address)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failure of `address`; returns the pause it now has to wait, if any.
    pub(crate) fn failed(&self, address: IpAddr) -> Option<Duration> {
        if self.free == 0 {
            return None;
        }
        let now = Instant::now();
        if self.addresses.len() >= PRUNE_AT {
            self.addresses.retain(|_, record| {
                now.duration_since(record.window_start) < WINDOW
                    || record.blocked_until.is_some_and(|until| until > now)
            });
        }
        let mut record = self.addresses.entry(address).or_insert(Record {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        let blocked = record.blocked_until.is_some_and(|until| until > now);
        if !blocked && now.duration_since(record.window_start) >= WINDOW {
            record.window_start = now;
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        let over = record.failures.checked_sub(self.free + 1)?;
        let pause = Duration::from_secs(1u64 << over.min(16)).min(MAX_PAUSE);
        record.blocked_until = Some(now + pause);
        Some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_failures_then_doubling_pauses() {
        let budget = FailureBudget::new(DEFAULT_FREE_FAILURES);
        let (guesser, other) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        for _ in 0..DEFAULT_FREE_FAILURES {
            assert_eq!(budget.failed(guesser), None);
        }
        assert_eq!(budget.blocked(guesser), None);
        assert_eq!(budget.failed(guesser), Some(Duration::from_secs(1)));
        assert!(budget.blocked(guesser).is_some());
        assert_eq!(budget.failed(guesser), Some(Duration::from_secs(2)));
        assert_eq!(budget.failed(guesser), Some(Duration::from_secs(4)));
        for _ in 0..20 {
            budget.failed(guesser);
        }
        assert_eq!(budget.failed(guesser), Some(MAX_PAUSE));
        assert_eq!(budget.blocked(other), None);
        let off = FailureBudget::new(0);
        for _ in 0..100 {
            assert_eq!(off.failed(guesser), None);
        }
    }
}
