//! # hubcast-backplane
//!
//! Every send a hub makes (to all, a group, a user, some connections) goes through a [`Backplane`], so
//! that one node and many nodes behave the same and hubs never know which backplane runs underneath.
//!
//! The split of work: each gateway node keeps its own local index of connections, groups and users and
//! exposes it to the backplane as a [`LocalDelivery`]. The backplane's job is only to get a [`Publish`]
//! to every node that may hold a recipient; each node then resolves the target against its local index.
//! Messages travel already encoded ([`SerializedMessage`]), so a receiving node never re-encodes.
//!
//! [`MemoryBackplane`] is the single-process implementation: it hands a publish straight to every node
//! attached in the same process (one in production; several in multi-node tests).

mod ids;
mod memory;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use hubcast_protocol::SerializedMessage;
pub use ids::{ConnectionId, GroupName, UserId};
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

/// What a node subscribes to beyond its hubs' broadcast channel: the backplane needs to route group,
/// user and connection sends to a node only while that node holds a member.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Interest {
    /// A group with at least one local member.
    Group(GroupName),
    /// A user with at least one local connection.
    User(UserId),
    /// A local connection.
    Connection(ConnectionId),
}

/// A node's view of its own connections, which the backplane calls to deliver what it received.
pub trait LocalDelivery: Send + Sync {
    /// Delivers `publish` to the local connections its target names, except the excluded ones.
    fn deliver(&self, publish: &Publish);
}

/// Why a backplane operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackplaneError {
    /// The backplane cannot reach its store (Redis down, say); the send was not delivered to other nodes.
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
    /// A hub was used before it was attached.
    #[error("hub '{0}' is not attached to the backplane")]
    UnknownHub(String),
}

/// The seam between hubs and the transport that carries their sends between nodes.
pub trait Backplane: Send + Sync + 'static {
    /// Attaches a node's local connections of `hub`: from now on publishes for that hub reach `local`.
    fn attach(
        &self,
        hub: &str,
        local: Arc<dyn LocalDelivery>,
    ) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// Sends a message to its target on every node (this one included).
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
}
