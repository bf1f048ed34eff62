//! What a connection needs of the endpoint it was negotiated on: its path, the options of its
//! transports, the per-user and per-address occupancy it counts against, and the gateway's series.
//! Connections hold this rather than the endpoint, so the transport layer never names the hub layer
//! that runs on it.

use std::sync::Arc;

use crate::config::HubOptions;
use crate::metrics::GatewayMetrics;

/// The part of a mapped path its connections share.
pub(crate) struct Mount {
    /// The path as mapped, lower-cased, without a trailing slash.
    pub(crate) path: String,
    pub(crate) options: HubOptions,
    /// Connections per user and per client address, for `max_connections_per_*`.
    pub(crate) occupancy: Occupancy,
    pub(crate) metrics: Arc<GatewayMetrics>,
}

/// Who holds how many connections of an endpoint on this node.
#[derive(Default)]
pub(crate) struct Occupancy {
    users: dashmap::DashMap<hubcast_backplane::UserId, usize>,
    addresses: dashmap::DashMap<std::net::IpAddr, usize>,
}

impl Occupancy {
    /// Counts a new connection of `user` from `address`, unless that would pass a limit (0: none).
    pub(crate) fn admit(
        &self,
        user: Option<&hubcast_backplane::UserId>,
        address: Option<std::net::IpAddr>,
        options: &HubOptions,
    ) -> bool {
        let over = |count: usize, limit: usize| limit > 0 && count >= limit;
        if let Some(user) = user
            && over(
                self.users.get(user).map_or(0, |c| *c),
                options.max_connections_per_user,
            )
        {
            return false;
        }
        if let Some(address) = address
            && over(
                self.addresses.get(&address).map_or(0, |c| *c),
                options.max_connections_per_ip,
            )
        {
            return false;
        }
        if let Some(user) = user {
            *self.users.entry(user.clone()).or_default() += 1;
        }
        if let Some(address) = address {
            *self.addresses.entry(address).or_default() += 1;
        }
        true
    }

    /// Forgets a connection counted by [`admit`](Self::admit).
    pub(crate) fn release(
        &self,
        user: Option<&hubcast_backplane::UserId>,
        address: Option<std::net::IpAddr>,
    ) {
        if let Some(user) = user {
            self.users.remove_if_mut(user, |_, count| {
                *count -= 1;
                *count == 0
            });
        }
        if let Some(address) = address {
            self.addresses.remove_if_mut(&address, |_, count| {
                *count -= 1;
                *count == 0
            });
        }
    }
}
