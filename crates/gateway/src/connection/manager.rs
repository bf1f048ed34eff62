//! The table of live connections, keyed by their secret token, and the heartbeat that drops
//! connections left without a transport longer than the disconnect timeout (negotiated but never used,
//! long polling with no poll, transports that went away) and tells quiet ones a keep-alive ping is due.
//! One heartbeat for every connection (as ASP.NET Core's) instead of a timer per connection: a
//! connection holds no timer, and sending a message touches nothing but its queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use std::net::IpAddr;

use hubcast_backplane::{ConnectionId, UserId};
use hubcast_protocol::ids::{self, RandomError};
use tokio_util::sync::CancellationToken;

use super::{Connection, Mount};

/// Live connections by token.
#[derive(Default)]
pub(crate) struct ConnectionManager {
    connections: DashMap<Arc<str>, Arc<Connection>>,
    /// The backplane's routing tag for this node, which prefixes every connection id.
    node_tag: Option<Arc<str>>,
}

impl ConnectionManager {
    /// A manager naming its connections `{node_tag}.{random}` (just `{random}` without a tag).
    pub(crate) fn new(node_tag: Option<&str>) -> Self {
        Self {
            connections: DashMap::new(),
            node_tag: node_tag.map(Arc::from),
        }
    }

    /// Creates and registers a connection for `owner` at `address`. With negotiate version 0 the token
    /// is the connection id; else a secret that also starts with the node tag (`{tag}.{random}`), so
    /// that any node can tell where to relay a request for it. `None` when the owner or address
    /// already holds its maximum.
    pub(crate) fn create(
        &self,
        mount: Arc<Mount>,
        negotiate_version: i32,
        owner: Option<UserId>,
        address: Option<IpAddr>,
    ) -> Result<Option<Arc<Connection>>, RandomError> {
        let id = ConnectionId::generate(self.node_tag.as_deref())?;
        let token: Arc<str> = if negotiate_version > 0 {
            let secret = ids::random_id()?;
            Arc::from(match self.node_tag.as_deref() {
                Some(tag) => format!("{tag}.{secret}"),
                None => secret,
            })
        } else {
            Arc::from(id.as_str())
        };
        if !mount
            .occupancy
            .admit(owner.as_ref(), address, &mount.options)
        {
            return Ok(None);
        }
        let connection = Arc::new(Connection::new(id, token.clone(), mount, owner, address));
        self.connections.insert(token, connection.clone());
        connection.mount.metrics.transport_connections.inc();
        Ok(Some(connection))
    }

    /// Stops counting a connection that left the table.
    fn forget(connection: &Connection) {
        connection.mount.metrics.transport_connections.dec();
        connection
            .mount
            .occupancy
            .release(connection.owner.as_ref(), connection.address);
    }

    /// Looks a connection up by the `id` query parameter's value.
    pub(crate) fn get(&self, token: &str) -> Option<Arc<Connection>> {
        self.connections.get(token).map(|c| c.value().clone())
    }

    /// Forgets a connection (its application, if any, must already be ending).
    pub(crate) fn remove(&self, token: &str) {
        if let Some((_, connection)) = self.connections.remove(token) {
            Self::forget(&connection);
        }
    }

    /// Number of live connections.
    pub(crate) fn len(&self) -> usize {
        self.connections.len()
    }

    /// Asks every connection to close for `reason` and forgets those with no open transport request
    /// (nothing would ever collect their Close).
    pub(crate) fn close_all(&self, reason: &crate::close::CloseReason) {
        self.connections.retain(|_, connection| {
            connection.close_with(reason.clone());
            let keep = connection.has_open_request();
            if !keep {
                Self::forget(connection);
            }
            keep
        });
    }

    /// Closes every connection with `reason`, spread evenly over `window` (a drain: clients reconnect
    /// elsewhere a few at a time instead of all at once).
    /// `remaining` shows how many are left to close.
    pub(crate) async fn close_spread(
        &self,
        reason: &crate::close::CloseReason,
        window: Duration,
        remaining: &prometheus::IntGauge,
    ) {
        let connections: Vec<Arc<Connection>> =
            self.connections.iter().map(|c| c.value().clone()).collect();
        remaining.set(i64::try_from(connections.len()).unwrap_or(i64::MAX));
        // Connection i of n closes at i/n of the window: evenly over all of it, however few there are.
        let start = tokio::time::Instant::now();
        let count = connections.len().max(1) as f64;
        for (i, connection) in connections.iter().enumerate() {
            tokio::time::sleep_until(start + window.mul_f64(i as f64 / count)).await;
            connection.close_with(reason.clone());
            remaining.dec();
        }
    }

    /// One heartbeat tick, `tick` after the last: counts quiet keep-alive ticks on every connection
    /// that has a keep-alive period (a ping is due after a period without sending), and aborts and
    /// removes connections idle past their endpoint's disconnect timeout.
    pub(crate) fn sweep(&self, now: Instant, tick: Duration) {
        // One pass; the expired are removed after it, when no shard of the table is locked.
        let mut expired = Vec::new();
        for connection in self.connections.iter() {
            if let Some((_, period)) = connection.keep_alive() {
                connection.outbound.keep_alive_tick(ticks_in(*period, tick));
            }
            if connection
                .idle_for(now)
                .is_some_and(|idle| idle > connection.mount.options.disconnect_timeout)
            {
                expired.push(connection.value().clone());
            }
        }
        for connection in expired {
            tracing::debug!(connection_id = %connection.id, "dropping inactive connection");
            connection.close_transport_lost();
            self.remove(&connection.token);
        }
    }

    /// Runs [`sweep`](Self::sweep) every `tick` until `shutdown`.
    pub(crate) fn spawn_heartbeat(self: &Arc<Self>, tick: Duration, shutdown: CancellationToken) {
        let manager = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                let Some(manager) = manager.upgrade() else {
                    break;
                };
                manager.sweep(Instant::now(), tick);
            }
        });
    }
}

/// The heartbeat's period for keep-alive periods as short as `shortest`: a second (as ASP.NET Core's),
/// or a quarter of the shortest period when that is shorter, so a ping is late by at most a quarter
/// of its period.
pub(crate) fn heartbeat_period(shortest: Option<Duration>) -> Duration {
    let second = Duration::from_secs(1);
    shortest.map_or(second, |shortest| {
        (shortest / 4).clamp(Duration::from_millis(10), second)
    })
}

/// How many heartbeat ticks make up `period` (at least one).
fn ticks_in(period: Duration, tick: Duration) -> u32 {
    let ticks = period.as_nanos().div_ceil(tick.as_nanos().max(1));
    u32::try_from(ticks).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_ticks_each_second_or_a_quarter_of_the_shortest_keep_alive() {
        assert_eq!(heartbeat_period(None), Duration::from_secs(1));
        assert_eq!(
            heartbeat_period(Some(Duration::from_secs(15))),
            Duration::from_secs(1)
        );
        assert_eq!(
            heartbeat_period(Some(Duration::from_millis(150))),
            Duration::from_micros(37_500)
        );
        assert_eq!(
            heartbeat_period(Some(Duration::from_millis(1))),
            Duration::from_millis(10)
        );
        assert_eq!(
            ticks_in(Duration::from_secs(15), Duration::from_secs(1)),
            15
        );
        assert_eq!(
            ticks_in(Duration::from_millis(150), Duration::from_micros(37_500)),
            4
        );
        assert_eq!(
            ticks_in(Duration::from_millis(1), Duration::from_millis(10)),
            1
        );
    }
}
