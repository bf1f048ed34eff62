//! # hubcast-backplane
//!
//! Every send a hub makes (to all, a group, a user, some connections) goes through a [`Backplane`], so
//! that one node and many nodes behave the same and hubs never know which backplane runs underneath.
//!
//! The split of work: each gateway node keeps its own local index of connections, groups and users and
//! exposes it to the backplane as a [`LocalHub`]. The backplane's jobs are
//! - to get a [`Publish`] to every node that may hold a recipient (each node resolves the target against
//!   its local index; messages travel already encoded as [`SerializedMessage`], so no node re-encodes);
//! - to carry operations on a connection of another node: group add/remove ([`GroupCommand`]), client
//!   results ([`ClientInvocation`]) and closing ([`Broker::close`]);
//! - to keep **presence**: who is online, each user's connections and each group's members on every node
//!   ([`PresenceChange`], [`Presence::online_users`], [`Presence::group_members`]).
//!
//! The first two are a [`Broker`]'s, the last is a [`Presence`]'s; a [`Backplane`] is both, and each
//! implementation (memory, Redis) implements them apart.
//!
//! A connection's node is part of its id: a node with a [`Broker::node_tag`] names its connections
//! `{tag}.{random}`, so a send to one connection goes straight to the node that holds it ([`node_of`]).
//!
//! [`MemoryBackplane`] is the single-process implementation: it hands a publish straight to every node
//! attached in the same process (one in production; several in multi-node tests).

mod ids;
mod memory;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use hubcast_protocol::{Outcome, SerializedMessage};
pub use ids::{ConnectionId, GroupName, UserId, node_of};
pub use memory::MemoryBackplane;

/// A boxed future, as the object-safe backplane methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who a message is for. Exclusions are carried separately in [`Publish::excluded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every connection of the hub.
    All,
    /// These connections.
    Connections(Vec<ConnectionId>),
    /// Every member of these groups (a connection in several of them receives the message once).
    Groups(Vec<GroupName>),
    /// Every connection of these users.
    Users(Vec<UserId>),
}

/// One send, as it crosses the backplane.
#[derive(Debug, Clone)]
pub struct Publish {
    /// The hub's name.
    pub hub: Arc<str>,
    /// The recipients.
    pub target: Target,
    /// Connections that must not receive it (the caller, for `Others`; `AllExcept`).
    pub excluded: Vec<ConnectionId>,
    /// The message, encoded at most once per protocol.
    pub message: Arc<SerializedMessage>,
}

/// What a node subscribes to beyond its hubs' broadcast channel and its own node channel: group and
/// user sends are routed to a node only while that node holds a member.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Interest {
    /// A group with at least one local member.
    Group(GroupName),
    /// A user with at least one local connection.
    User(UserId),
}

/// Adds a connection to a group or removes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAction {
    /// Add to the group.
    Add,
    /// Remove from the group.
    Remove,
}

/// A group change for one connection, possibly held by another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCommand {
    /// The connection.
    pub connection: ConnectionId,
    /// The group.
    pub group: GroupName,
    /// Add or remove.
    pub action: GroupAction,
}

/// A client-result invocation for one connection, possibly held by another node.
#[derive(Debug, Clone)]
pub struct ClientInvocation {
    /// The connection to invoke.
    pub connection: ConnectionId,
    /// The server-generated invocation id (inside `message` as well).
    pub invocation_id: String,
    /// The Invocation, encoded for every protocol the hub offers.
    pub message: Arc<SerializedMessage>,
    /// How long the node that holds the connection waits for the answer.
    pub timeout: Duration,
}

/// Why an operation on a connection of another node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// No node holds that connection.
    #[error("connection '{0}' does not exist")]
    UnknownConnection(ConnectionId),
    /// The connection is in `max_groups_per_connection` groups already.
    #[error("the connection is in too many groups")]
    TooManyGroups,
    /// The connection closed before answering.
    #[error("connection '{0}' disconnected")]
    Disconnected(ConnectionId),
    /// No answer in time.
    #[error("the node holding the connection did not answer in time")]
    Timeout,
    /// The backplane could not carry the operation.
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
}

/// One connection as a node reports it (presence snapshots and listings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The connection.
    pub connection: ConnectionId,
    /// Its user, when authenticated.
    pub user: Option<UserId>,
}

/// A local connection with its groups, as a node republishes its presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConnection {
    /// The connection and its user.
    pub member: Member,
    /// The groups it is in.
    pub groups: Vec<GroupName>,
}

/// A change to the presence of one node's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceChange {
    /// A connection completed its handshake.
    Connected(Member),
    /// A connection ended (it leaves its groups too).
    Disconnected(Member),
    /// A connection joined a group.
    Joined(Member, GroupName),
    /// A connection left a group.
    Left(Member, GroupName),
}

/// A node's view of its own connections of one hub, which the backplane calls to deliver what it received
/// and to act on its connections for other nodes.
pub trait LocalHub: Send + Sync {
    /// Delivers `publish` to the local connections its target names, except the excluded ones.
    fn deliver(&self, publish: &Publish);

    /// Applies a group command to a local connection (another node asked).
    fn group_command(&self, command: GroupCommand) -> BoxFuture<'_, Result<(), RemoteError>>;

    /// Invokes a local connection for a client result (another node asked) and waits for its answer.
    fn invoke_client(
        &self,
        invocation: ClientInvocation,
    ) -> BoxFuture<'_, Result<Outcome, RemoteError>>;

    /// Closes the local connections `target` names with `reason` as the Close error
    /// (`allowReconnect: false`); returns how many.
    fn close(&self, target: &Target, reason: &str) -> usize;

    /// Adds every local connection of `user` to `group`, or removes them from it (from all their groups
    /// with `None`).
    fn user_groups(
        &self,
        user: &UserId,
        group: Option<&GroupName>,
        action: GroupAction,
    ) -> BoxFuture<'_, ()>;

    /// Whether this node holds `connection`.
    fn has_connection(&self, connection: &ConnectionId) -> bool;

    /// Every local connection with its user and groups.
    fn snapshot(&self) -> Vec<LocalConnection>;

    /// Local users with their number of connections.
    fn local_users(&self) -> Vec<(UserId, usize)>;

    /// The local members of a group.
    fn local_group_members(&self, group: &GroupName) -> Vec<Member>;

    /// The local connections of a user.
    fn local_user_connections(&self, user: &UserId) -> Vec<ConnectionId>;
}

/// Why a backplane operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackplaneError {
    /// The backplane cannot reach its store (Redis down, say); the operation did not reach other nodes.
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
    /// A hub was used before it was attached.
    #[error("hub '{0}' is not attached to the backplane")]
    UnknownHub(String),
    /// The hub's name cannot be used by this backplane.
    #[error("invalid hub name '{0}': {1}")]
    InvalidHubName(String, &'static str),
}

/// Fan-out and commands: what carries a hub's sends and its operations on connections between nodes.
pub trait Broker: Send + Sync + 'static {
    /// This node's routing tag, which prefixes its connection ids; `None` when there is no other node to
    /// route to.
    fn node_tag(&self) -> Option<&str>;

    /// Attaches a node's local connections of `hub`: from now on publishes and commands for that hub
    /// reach `local`.
    fn attach(
        &self,
        hub: &str,
        local: Arc<dyn LocalHub>,
    ) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// Sends a message to its target on every node (this one included). A node that does not hold the
    /// hub (a control-API process) only forwards it.
    fn publish(&self, publish: Publish) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// This node now holds a member of `interest` (reference-counted by the caller: called when the first
    /// local member arrives).
    fn subscribe(&self, hub: &str, interest: Interest)
    -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// This node no longer holds any member of `interest`.
    fn unsubscribe(
        &self,
        hub: &str,
        interest: Interest,
    ) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// Applies a group command on the node that holds the connection (this one included); resolves
    /// within the backplane's command timeout.
    fn group_command(
        &self,
        hub: &str,
        command: GroupCommand,
    ) -> BoxFuture<'_, Result<(), RemoteError>>;

    /// Invokes a connection for a client result on the node that holds it (this one included); resolves
    /// within about the invocation's timeout (the holding node times out first).
    fn invoke_client(
        &self,
        hub: &str,
        invocation: ClientInvocation,
    ) -> BoxFuture<'_, Result<Outcome, RemoteError>>;

    /// Adds every connection of `user`, on every node, to `group` or removes them from it (from all
    /// their groups with `None` and [`GroupAction::Remove`]).
    fn user_groups(
        &self,
        hub: &str,
        user: UserId,
        group: Option<GroupName>,
        action: GroupAction,
    ) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// Closes the connections `target` names on every node, with `reason` as the Close error.
    fn close(
        &self,
        hub: &str,
        target: Target,
        reason: String,
    ) -> BoxFuture<'_, Result<(), BackplaneError>>;
}

/// Presence: who is connected where, kept for every node (centrifuge's `PresenceManager`). Queries
/// answer for the whole cluster; changes are this node's own.
pub trait Presence: Send + Sync + 'static {
    /// Records a presence change of this node's connections.
    fn record(
        &self,
        hub: &str,
        change: PresenceChange,
    ) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// Online users on every node, with their number of connections, sorted by user id.
    fn online_users(&self, hub: &str) -> BoxFuture<'_, Result<Vec<(UserId, u64)>, BackplaneError>>;

    /// A user's connections on every node.
    fn user_connections(
        &self,
        hub: &str,
        user: &UserId,
    ) -> BoxFuture<'_, Result<Vec<ConnectionId>, BackplaneError>>;

    /// A group's members on every node.
    fn group_members(
        &self,
        hub: &str,
        group: &GroupName,
    ) -> BoxFuture<'_, Result<Vec<Member>, BackplaneError>>;

    /// Whether any node holds `connection`.
    fn connection_exists(
        &self,
        hub: &str,
        connection: &ConnectionId,
    ) -> BoxFuture<'_, Result<bool, BackplaneError>>;

    /// The address (`host:port`) live node `node` advertised for requests relayed to it, if any: the
    /// address comes from the nodes themselves, never from a request.
    fn node_address(&self, node: &str) -> BoxFuture<'_, Result<Option<String>, BackplaneError>> {
        let _ = node;
        Box::pin(async { Ok(None) })
    }
}

/// The seam between hubs and the nodes they share connections with: a [`Broker`] and a [`Presence`].
/// Every type that is both is a backplane.
pub trait Backplane: Broker + Presence {}

impl<T: Broker + Presence> Backplane for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_tags_are_read_from_connection_ids() {
        assert_eq!(node_of(&ConnectionId::from("n1.abc")), Some("n1"));
        assert_eq!(node_of(&ConnectionId::from("abc")), None);
        assert_eq!(node_of(&ConnectionId::from(".abc")), None);
    }
}
