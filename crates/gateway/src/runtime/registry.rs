//! The node-local index of a hub's connections, with groups and users indexed in both directions
//! (group → members, and each connection's own group set), so a disconnect costs O(its groups) and a
//! group send walks only the group. The hub's [`LocalHub`](hubcast_backplane::LocalHub) delivers what
//! the backplane hands it through it, and reads local presence from it.
//!
//! Group and user entries hold the connections themselves, so a send to a group never does a second
//! lookup per member. Pushing to a connection never waits: a full queue closes that connection as a
//! slow consumer and the send goes on to the others.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use hubcast_backplane::{
    ConnectionId, GroupName, LocalConnection, Member, Publish, RemoteError, Target, UserId,
};
use hubcast_protocol::{Outcome, Protocol};
use tokio::sync::oneshot;

use crate::close::CloseReason;
use crate::connection::{Connection, PushError};
use hubcast_protocol::stateful::ReplayBuffer;

/// One hub connection as the registry holds it.
pub(crate) struct HubConnection {
    pub(crate) id: ConnectionId,
    pub(crate) user: Option<UserId>,
    pub(crate) protocol: Protocol,
    pub(crate) connection: Arc<Connection>,
    groups: Mutex<HashSet<GroupName>>,
    /// Client results awaited from this connection, by server-generated invocation id.
    results: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    /// Sent messages kept for stateful reconnect, when it is on for this connection.
    replay: Option<Mutex<ReplayBuffer>>,
}

impl HubConnection {
    pub(crate) fn new(
        id: ConnectionId,
        user: Option<UserId>,
        protocol: Protocol,
        connection: Arc<Connection>,
        replay: Option<ReplayBuffer>,
    ) -> Self {
        Self {
            id,
            user,
            protocol,
            connection,
            groups: Mutex::new(HashSet::new()),
            results: Mutex::new(HashMap::new()),
            replay: replay.map(Mutex::new),
        }
    }

    fn replay(&self) -> Option<std::sync::MutexGuard<'_, ReplayBuffer>> {
        self.replay
            .as_ref()
            .map(|replay| replay.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records a queued sequenced message for stateful reconnect.
    fn record(&self, bytes: &bytes::Bytes) {
        if let Some(mut replay) = self.replay() {
            replay.record(bytes);
        }
    }

    /// Queues a sequenced message for this client, waiting for room (replies and streams): the client
    /// sets the pace. Gives up when the connection is aborted (its writer may be gone).
    pub(crate) async fn push_wait(&self, bytes: bytes::Bytes) -> Result<(), PushError> {
        tokio::select! {
            pushed = self.connection.outbound.push_wait(bytes, |queued| self.record(queued)) => pushed,
            _ = self.connection.abort.cancelled() => Err(PushError::Closed),
        }
    }

    /// The client acknowledged every message up to `id`.
    pub(crate) fn acknowledge(&self, id: i64) {
        if let Some(mut replay) = self.replay() {
            replay.ack(id);
        }
    }

    /// After a reconnect: queues `sequence(first unacknowledged id)` then every unacknowledged message,
    /// in place of whatever was queued for the lost socket. `None` when messages were lost to the
    /// replay bound and the connection cannot be resumed.
    pub(crate) fn replay_after_reconnect(
        &self,
        sequence: impl FnOnce(i64) -> Option<bytes::Bytes>,
    ) -> Option<()> {
        let replay = self.replay()?;
        if !replay.is_complete() {
            return None;
        }
        let (first, pending) = replay.pending();
        let mut items = vec![sequence(first)?];
        items.extend(pending);
        self.connection.outbound.reset_with(items);
        Some(())
    }

    fn results(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Outcome>>> {
        self.results.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a client result to wait for.
    pub(crate) fn expect_result(&self, invocation_id: String) -> oneshot::Receiver<Outcome> {
        let (sender, receiver) = oneshot::channel();
        self.results().insert(invocation_id, sender);
        receiver
    }

    /// Stops waiting for a result (timed out).
    pub(crate) fn forget_result(&self, invocation_id: &str) {
        self.results().remove(invocation_id);
    }

    /// Routes a Completion from this connection to the result it answers; false when none waits for it.
    pub(crate) fn complete_result(&self, invocation_id: &str, outcome: Outcome) -> bool {
        match self.results().remove(invocation_id) {
            Some(waiter) => {
                let _ = waiter.send(outcome);
                true
            }
            None => false,
        }
    }

    /// Fails every awaited result (the connection ended).
    pub(crate) fn abandon_results(&self) {
        self.results().clear();
    }

    /// Queues a framed sequenced message (Invocation, StreamItem, Completion); a client that cannot keep
    /// up is closed.
    pub(crate) fn push(&self, bytes: bytes::Bytes) {
        if let Err((PushError::Full, _)) = self
            .connection
            .outbound
            .offer_with(bytes, |queued| self.record(queued))
        {
            tracing::debug!(connection_id = %self.id, "outbound queue full: closing slow consumer");
            self.connection.mount.metrics.slow_consumer_closes.inc();
            self.connection.close_with(CloseReason::SlowConsumer);
        }
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashSet<GroupName>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection and its user, as presence records them.
    pub(crate) fn member(&self) -> Member {
        Member {
            connection: self.id.clone(),
            user: self.user.clone(),
        }
    }
}

type Members = HashMap<ConnectionId, Arc<HubConnection>>;

/// What a group change did to a connection's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Membership {
    /// It was a member already (add) or was not one (remove).
    Unchanged,
    /// It joined or left; `edge` says the group's local membership started (its first local member
    /// joined) or ended (its last one left), so the node's interest in the group changes too.
    Changed { edge: bool },
}

/// The local connections of one hub.
#[derive(Default)]
pub(crate) struct Registry {
    connections: DashMap<ConnectionId, Arc<HubConnection>>,
    groups: DashMap<GroupName, Members>,
    users: DashMap<UserId, Members>,
}

/// Adds a member under `key`; true when it is the first.
fn insert_member<K: Eq + Hash>(
    map: &DashMap<K, Members>,
    key: K,
    member: &Arc<HubConnection>,
) -> bool {
    let mut members = map.entry(key).or_default();
    let first = members.is_empty();
    members.insert(member.id.clone(), member.clone());
    first
}

/// Removes a member from `key`; true when the entry became empty (and was dropped).
fn remove_member<K: Eq + Hash>(map: &DashMap<K, Members>, key: &K, id: &ConnectionId) -> bool {
    map.remove_if_mut(key, |_, members| {
        members.remove(id);
        members.is_empty()
    })
    .is_some()
}

/// What removing a connection emptied (the backplane interests to drop).
pub(crate) struct Removed {
    pub(crate) empty_groups: Vec<GroupName>,
    pub(crate) last_of_user: bool,
}

impl Registry {
    /// Adds a connection; true when it is its user's first on this node.
    pub(crate) fn add(&self, connection: Arc<HubConnection>) -> bool {
        let first_of_user = connection
            .user
            .clone()
            .is_some_and(|user| insert_member(&self.users, user, &connection));
        self.connections.insert(connection.id.clone(), connection);
        first_of_user
    }

    /// Removes a connection from every index.
    pub(crate) fn remove(&self, id: &ConnectionId) -> Removed {
        let Some((_, connection)) = self.connections.remove(id) else {
            return Removed {
                empty_groups: Vec::new(),
                last_of_user: false,
            };
        };
        let groups: Vec<GroupName> = connection.groups().drain().collect();
        let empty_groups = groups
            .into_iter()
            .filter(|group| remove_member(&self.groups, group, id))
            .collect();
        let last_of_user = connection
            .user
            .as_ref()
            .is_some_and(|user| remove_member(&self.users, user, id));
        Removed {
            empty_groups,
            last_of_user,
        }
    }

    /// Adds a local connection to a group (at most `limit` groups a connection, 0: unlimited).
    pub(crate) fn add_to_group(
        &self,
        id: &ConnectionId,
        group: &GroupName,
        limit: usize,
    ) -> Result<Membership, RemoteError> {
        let connection = self
            .connections
            .get(id)
            .map(|c| c.value().clone())
            .ok_or_else(|| RemoteError::UnknownConnection(id.clone()))?;
        {
            let mut groups = connection.groups();
            if groups.contains(group) {
                return Ok(Membership::Unchanged);
            }
            if limit > 0 && groups.len() >= limit {
                return Err(RemoteError::TooManyGroups);
            }
            groups.insert(group.clone());
        }
        Ok(Membership::Changed {
            edge: insert_member(&self.groups, group.clone(), &connection),
        })
    }

    /// Removes a local connection from a group; `None` if the connection is unknown.
    pub(crate) fn remove_from_group(
        &self,
        id: &ConnectionId,
        group: &GroupName,
    ) -> Option<Membership> {
        let connection = self.connections.get(id)?.value().clone();
        if !connection.groups().remove(group) {
            return Some(Membership::Unchanged);
        }
        Some(Membership::Changed {
            edge: remove_member(&self.groups, group, id),
        })
    }

    /// Every local connection with its user and groups.
    pub(crate) fn snapshot(&self) -> Vec<LocalConnection> {
        self.connections
            .iter()
            .map(|c| LocalConnection {
                member: c.member(),
                groups: c.groups().iter().cloned().collect(),
            })
            .collect()
    }

    /// The groups of a local connection.
    pub(crate) fn groups_of(&self, id: &ConnectionId) -> Vec<GroupName> {
        self.get(id)
            .map(|c| c.groups().iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Local users with their number of connections.
    pub(crate) fn users(&self) -> Vec<(UserId, usize)> {
        self.users
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().len()))
            .collect()
    }

    /// The local members of a group.
    pub(crate) fn group_members(&self, group: &GroupName) -> Vec<Member> {
        self.groups
            .get(group)
            .map(|members| members.values().map(|c| c.member()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn len(&self) -> usize {
        self.connections.len()
    }

    /// The local connections of a user.
    pub(crate) fn of_user(&self, user: &UserId) -> Vec<Arc<HubConnection>> {
        self.users
            .get(user)
            .map(|members| members.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A local connection.
    pub(crate) fn get(&self, id: &ConnectionId) -> Option<Arc<HubConnection>> {
        self.connections.get(id).map(|c| c.value().clone())
    }
}

impl Registry {
    /// Delivers `publish` to the local connections its target names, except the excluded ones; returns
    /// to how many.
    pub(crate) fn deliver(&self, publish: &Publish) -> u64 {
        let excluded = &publish.excluded;
        let mut delivered = 0;
        self.for_each(&publish.target, |connection| {
            if excluded.contains(&connection.id) {
                return;
            }
            delivered += 1;
            match publish.message.get(connection.protocol) {
                Ok(bytes) => connection.push(bytes.clone()),
                Err(error) => {
                    tracing::warn!(%error, "message has no encoding for a connection's protocol")
                }
            }
        });
        delivered
    }

    /// Closes the local connections `target` names (`allowReconnect: false`); returns how many.
    pub(crate) fn close(&self, target: &Target, reason: &str) -> usize {
        // Collected first: no index lock is held while a connection closes.
        let mut connections = Vec::new();
        self.for_each(target, |c| connections.push(c.connection.clone()));
        for connection in &connections {
            let reason = crate::close::CloseReason::ClosedByServer(reason.to_owned());
            connection.close_with(reason);
        }
        connections.len()
    }

    /// Calls `f` once for each local connection `target` names.
    fn for_each(&self, target: &Target, mut f: impl FnMut(&HubConnection)) {
        match target {
            Target::All => self.connections.iter().for_each(|c| f(c.value())),
            Target::Connections(ids) => ids
                .iter()
                .filter_map(|id| self.connections.get(id))
                .for_each(|c| f(c.value())),
            Target::Groups(groups) => for_each_member(&self.groups, groups, f),
            Target::Users(users) => for_each_member(&self.users, users, f),
        }
    }
}

/// Calls `f` for the members of several keys, each connection once.
fn for_each_member<K: Eq + Hash>(
    map: &DashMap<K, Members>,
    keys: &[K],
    mut f: impl FnMut(&HubConnection),
) {
    if let [key] = keys {
        if let Some(members) = map.get(key) {
            members.values().for_each(|c| f(c));
        }
        return;
    }
    let mut seen = HashSet::new();
    for key in keys {
        if let Some(members) = map.get(key) {
            members
                .iter()
                .filter(|(id, _)| seen.insert((*id).clone()))
                .for_each(|(_, c)| f(c));
        }
    }
}
