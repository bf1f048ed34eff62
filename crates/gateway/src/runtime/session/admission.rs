//! Admission of an invocation by the rate limits: the user's bucket (shared beyond this connection, by
//! the hub's `RateLimiter`), the connection's bucket for the hub and per method; a client refused too
//! many times in a row is closed.

use super::Session;
use crate::runtime::limits::Bucket;

/// Token buckets of one connection: the hub's, and per method.
#[derive(Debug, Default)]
pub(super) struct CallLimits {
    hub: Option<Bucket>,
    methods: std::collections::HashMap<String, Bucket>,
    refused_in_a_row: u32,
}

/// What the rate limits say about a call.
impl CallLimits {
    /// The limits of a new connection: the hub's bucket when `invocation_rate` is set.
    pub(super) fn new(options: &crate::config::HubOptions) -> Self {
        Self {
            hub: (options.invocation_rate > 0.0)
                .then(|| Bucket::new(options.invocation_rate, options.invocation_burst)),
            ..Self::default()
        }
    }
}

pub(super) enum Admission {
    Admitted,
    Refused,
    /// Refused too many times in a row: the connection closes.
    Abusive,
}

impl Session {
    /// Takes a token of the hub's bucket and the method's, if they have them.
    /// `key` is the lower-cased method name.
    pub(super) async fn admit(&self, key: &str) -> Admission {
        let shared = &self.hub.shared;
        let options = &shared.options;
        let per_method = self.hub.app.rate_limit(key);
        let user_ok = match self
            .caller
            .user
            .as_ref()
            .filter(|_| options.user_invocation_rate > 0.0)
        {
            Some(user) => {
                let key = format!("{}:{}", shared.name, user.id);
                shared
                    .limiter
                    .try_acquire(
                        &key,
                        options.user_invocation_rate,
                        options.user_invocation_burst,
                    )
                    .await
            }
            None => true,
        };
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        if user_ok && limits.hub.is_none() && per_method.is_none() {
            return Admission::Admitted;
        }
        let now = std::time::Instant::now();
        let hub_ok = user_ok
            && limits
                .hub
                .as_mut()
                .is_none_or(|bucket| bucket.try_take(now));
        let method_ok = per_method.is_none_or(|(rate, burst)| {
            limits
                .methods
                .entry(key.to_owned())
                .or_insert_with(|| Bucket::new(rate, burst))
                .try_take(now)
        });
        if hub_ok && method_ok {
            limits.refused_in_a_row = 0;
            return Admission::Admitted;
        }
        limits.refused_in_a_row += 1;
        let close_after = options.close_after_rate_limited;
        if close_after > 0 && limits.refused_in_a_row >= close_after {
            Admission::Abusive
        } else {
            Admission::Refused
        }
    }
}
