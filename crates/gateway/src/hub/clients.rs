//! Sending to clients, managing groups and reading presence. Every send is encoded once per protocol the
//! hub offers and published through the backplane, which gets it to every node holding a recipient (this
//! one included). Group changes and client results for a connection of another node go to that node
//! through the backplane; presence listings cover every node.

use std::sync::Arc;

use hubcast_backplane::{
    BackplaneError, ClientInvocation, ConnectionId, GroupAction, GroupCommand, GroupName, Member,
    Outcome, Publish, RemoteError, SerializedMessage, Target, UserId,
};
use hubcast_protocol::{ArgumentList, HubMessage, Invocation, Protocol, encode_message};
use serde::Serialize;

use crate::runtime::limits::MAX_GROUP_NAME;
use crate::runtime::{HubShared, InvocationScope};

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The arguments could not be serialized.
    #[error("failed to serialize the message: {0}")]
    Encode(String),
    /// The backplane refused the publish.
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
}

/// Why a group operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// No node holds a connection with that id.
    #[error("connection '{0}' does not exist")]
    UnknownConnection(ConnectionId),
    /// Group names are 1 to 1024 characters.
    #[error("group names must be 1 to 1024 characters long")]
    InvalidName,
    /// The connection is in `max_groups_per_connection` groups already.
    #[error("the connection is in too many groups")]
    TooManyGroups,
    /// The node holding the connection did not answer in time.
    #[error("the node holding the connection did not answer in time")]
    Timeout,
    /// The backplane could not carry the change.
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
}

impl From<RemoteError> for GroupError {
    fn from(error: RemoteError) -> Self {
        match error {
            RemoteError::UnknownConnection(id) | RemoteError::Disconnected(id) => {
                Self::UnknownConnection(id)
            }
            RemoteError::TooManyGroups => Self::TooManyGroups,
            RemoteError::Timeout => Self::Timeout,
            RemoteError::Backplane(error) => Self::Backplane(error),
        }
    }
}

/// A handle on a hub, for sending from anywhere (hub methods, background tasks, the control API).
#[derive(Clone)]
pub struct HubContext {
    shared: Arc<HubShared>,
}

impl HubContext {
    pub(crate) fn new(shared: Arc<HubShared>) -> Self {
        Self { shared }
    }

    /// The hub's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    fn proxy(&self, target: Target, excluded: Vec<ConnectionId>) -> ClientProxy {
        ClientProxy {
            shared: self.shared.clone(),
            target,
            excluded,
            scope: None,
        }
    }

    /// Every connection.
    pub fn all(&self) -> ClientProxy {
        self.proxy(Target::All, Vec::new())
    }

    /// Every connection but these.
    pub fn all_except(&self, excluded: Vec<ConnectionId>) -> ClientProxy {
        self.proxy(Target::All, excluded)
    }

    /// One connection.
    pub fn client(&self, id: ConnectionId) -> ClientProxy {
        self.proxy(Target::Connections(vec![id]), Vec::new())
    }

    /// Some connections.
    pub fn clients(&self, ids: Vec<ConnectionId>) -> ClientProxy {
        self.proxy(Target::Connections(ids), Vec::new())
    }

    /// The members of a group.
    pub fn group(&self, group: impl Into<GroupName>) -> ClientProxy {
        self.proxy(Target::Groups(vec![group.into()]), Vec::new())
    }

    /// The members of several groups (each connection once).
    pub fn groups_of(&self, groups: Vec<GroupName>) -> ClientProxy {
        self.proxy(Target::Groups(groups), Vec::new())
    }

    /// The members of a group but these connections.
    pub fn group_except(
        &self,
        group: impl Into<GroupName>,
        excluded: Vec<ConnectionId>,
    ) -> ClientProxy {
        self.proxy(Target::Groups(vec![group.into()]), excluded)
    }

    /// Every connection of a user.
    pub fn user(&self, user: impl Into<UserId>) -> ClientProxy {
        self.proxy(Target::Users(vec![user.into()]), Vec::new())
    }

    /// Every connection of several users.
    pub fn users(&self, users: Vec<UserId>) -> ClientProxy {
        self.proxy(Target::Users(users), Vec::new())
    }

    /// Every connection of several users but these connections.
    pub fn users_except(&self, users: Vec<UserId>, excluded: Vec<ConnectionId>) -> ClientProxy {
        self.proxy(Target::Users(users), excluded)
    }

    /// Group membership.
    pub fn groups(&self) -> Groups {
        Groups {
            shared: self.shared.clone(),
        }
    }

    /// Online users on every node with their number of connections, sorted by user id.
    pub async fn online_users(&self) -> Result<Vec<(UserId, u64)>, BackplaneError> {
        self.shared.backplane.online_users(&self.shared.name).await
    }

    /// A user's connections on every node.
    pub async fn user_connections(
        &self,
        user: &UserId,
    ) -> Result<Vec<ConnectionId>, BackplaneError> {
        self.shared
            .backplane
            .user_connections(&self.shared.name, user)
            .await
    }

    /// A group's members on every node.
    pub async fn group_members(&self, group: &GroupName) -> Result<Vec<Member>, BackplaneError> {
        self.shared
            .backplane
            .group_members(&self.shared.name, group)
            .await
    }

    /// Connections of this hub on this node.
    pub fn local_connection_count(&self) -> usize {
        self.shared.registry.len()
    }

    /// Closes every connection of `user` on every node with `reason` as the Close error
    /// (`allowReconnect: false`).
    pub async fn close_user(&self, user: &UserId, reason: &str) -> Result<(), BackplaneError> {
        self.close(Target::Users(vec![user.clone()]), reason).await
    }

    /// Closes the connections `target` names on every node with `reason` as the Close error
    /// (`allowReconnect: false`).
    pub async fn close(&self, target: Target, reason: &str) -> Result<(), BackplaneError> {
        self.shared
            .backplane
            .close(&self.shared.name, target, reason.to_owned())
            .await
    }
}

/// Targets relative to a calling connection, plus every absolute target of [`HubContext`].
pub struct CallerClients {
    hub: HubContext,
    caller: ConnectionId,
    scope: Option<Arc<InvocationScope>>,
}

impl CallerClients {
    pub(crate) fn new(
        hub: HubContext,
        caller: ConnectionId,
        scope: Option<Arc<InvocationScope>>,
    ) -> Self {
        Self { hub, caller, scope }
    }

    /// The calling connection. [`ClientProxy::invoke`] on it gives the caller's invocation slot back
    /// while it waits, so a hub with one slot per client does not deadlock on the answer.
    pub fn caller(&self) -> ClientProxy {
        ClientProxy {
            scope: self.scope.clone(),
            ..self.hub.client(self.caller.clone())
        }
    }

    /// One connection (as [`HubContext::client`], with the same slot handling as [`caller`](Self::caller)).
    pub fn client(&self, id: ConnectionId) -> ClientProxy {
        ClientProxy {
            scope: self.scope.clone(),
            ..self.hub.client(id)
        }
    }

    /// Every connection but the caller.
    pub fn others(&self) -> ClientProxy {
        self.hub.all_except(vec![self.caller.clone()])
    }

    /// The members of a group but the caller.
    pub fn others_in_group(&self, group: impl Into<GroupName>) -> ClientProxy {
        self.hub.group_except(group, vec![self.caller.clone()])
    }
}

impl std::ops::Deref for CallerClients {
    type Target = HubContext;

    fn deref(&self) -> &HubContext {
        &self.hub
    }
}

/// A send target: call [`send`](Self::send) to invoke a client method on every recipient, or
/// [`invoke`](Self::invoke) to call one client and wait for its result.
pub struct ClientProxy {
    shared: Arc<HubShared>,
    target: Target,
    excluded: Vec<ConnectionId>,
    scope: Option<Arc<InvocationScope>>,
}

impl ClientProxy {
    /// Encodes `message` for every protocol the hub offers.
    fn encode<A: Serialize + ?Sized>(
        &self,
        message: &HubMessage<&A, ()>,
    ) -> Result<SerializedMessage, String> {
        let mut json = None;
        let mut msgpack = None;
        for &protocol in &self.shared.options.supported_protocols {
            let bytes = encode_message(protocol, message, self.shared.options.json_naming_policy)
                .map_err(|e| e.0)?;
            match protocol {
                Protocol::Json => json = Some(bytes),
                Protocol::MessagePack => msgpack = Some(bytes),
            }
        }
        Ok(SerializedMessage::from_encoded(json, msgpack))
    }

    /// Invokes `method` with `args` (a tuple, one element per argument: `&(text,)` for one; see
    /// [`ArgumentList`]) on every recipient. The message is encoded once per protocol the hub offers,
    /// whatever the number of recipients.
    pub async fn send<A: ArgumentList + ?Sized>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<(), SendError> {
        let message: HubMessage<&A, ()> = HubMessage::Invocation(Invocation::new(method, args));
        let publish = Publish {
            hub: self.shared.name.clone(),
            target: self.target.clone(),
            excluded: self.excluded.clone(),
            message: Arc::new(self.encode(&message).map_err(SendError::Encode)?),
        };
        self.shared.backplane.publish(publish).await?;
        Ok(())
    }
}

/// Why a client result could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientResultError {
    /// Only a single connection can be invoked for a result.
    #[error("client results need a single connection as the target")]
    NotSingleConnection,
    /// The connection is not on this node (or does not exist).
    #[error("Connection '{0}' does not exist.")]
    NoSuchConnection(ConnectionId),
    /// The connection closed before answering.
    #[error("Connection '{0}' disconnected.")]
    Disconnected(ConnectionId),
    /// The client answered with an error (e.g. `Client didn't provide a result.`).
    #[error("{0}")]
    Client(String),
    /// No answer within the timeout.
    #[error("Invocation canceled by the server.")]
    Timeout,
    /// The answer did not fit the expected type.
    #[error("the client's result could not be read: {0}")]
    Decode(String),
    /// The invocation could not be encoded or queued.
    #[error("{0}")]
    Send(String),
}

/// How long [`ClientProxy::invoke`] waits for an answer.
pub const DEFAULT_CLIENT_RESULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl ClientProxy {
    /// Invokes `method` on the one target connection and waits for its result (at most
    /// [`DEFAULT_CLIENT_RESULT_TIMEOUT`]).
    pub async fn invoke<T, A>(&self, method: &str, args: &A) -> Result<T, ClientResultError>
    where
        T: serde::de::DeserializeOwned,
        A: ArgumentList + ?Sized,
    {
        self.invoke_timeout(method, args, DEFAULT_CLIENT_RESULT_TIMEOUT)
            .await
    }

    /// [`invoke`](Self::invoke) with an explicit timeout.
    pub async fn invoke_timeout<T, A>(
        &self,
        method: &str,
        args: &A,
        timeout: std::time::Duration,
    ) -> Result<T, ClientResultError>
    where
        T: serde::de::DeserializeOwned,
        A: ArgumentList + ?Sized,
    {
        let Target::Connections(ids) = &self.target else {
            return Err(ClientResultError::NotSingleConnection);
        };
        let [id] = ids.as_slice() else {
            return Err(ClientResultError::NotSingleConnection);
        };
        let invocation_id = self.shared.next_result_id();
        let message: HubMessage<&A, ()> = HubMessage::Invocation(Invocation {
            invocation_id: Some(invocation_id.clone()),
            ..Invocation::new(method, args)
        });
        let release = || self.scope.as_ref().is_some_and(|scope| scope.release());
        let (released, outcome) = match self.shared.registry.get(id) {
            Some(connection) => {
                let naming = self.shared.options.json_naming_policy;
                let bytes = encode_message(connection.protocol, &message, naming)
                    .map_err(|e| ClientResultError::Send(e.0))?;
                let released = release();
                let answer = self
                    .shared
                    .invoke_local(&connection, invocation_id, bytes, timeout);
                (released, answer.await)
            }
            None => {
                let invocation = ClientInvocation {
                    connection: id.clone(),
                    invocation_id,
                    message: Arc::new(self.encode(&message).map_err(ClientResultError::Send)?),
                    timeout,
                };
                let released = release();
                let remote = self
                    .shared
                    .backplane
                    .invoke_client(&self.shared.name, invocation);
                (released, remote.await)
            }
        };
        if released && let Some(scope) = &self.scope {
            scope.reacquire().await;
        }
        let outcome = outcome.map_err(|error| match error {
            RemoteError::UnknownConnection(id) => ClientResultError::NoSuchConnection(id),
            RemoteError::Disconnected(id) => ClientResultError::Disconnected(id),
            RemoteError::Timeout => ClientResultError::Timeout,
            RemoteError::TooManyGroups => ClientResultError::Send(error.to_string()),
            RemoteError::Backplane(error) => ClientResultError::Send(error.to_string()),
        })?;
        match outcome {
            Outcome::Result(raw) => raw
                .deserialize()
                .map_err(|e| ClientResultError::Decode(e.0)),
            Outcome::Void => Err(ClientResultError::Client(
                "Client didn't provide a result.".to_owned(),
            )),
            Outcome::Error(error) => Err(ClientResultError::Client(error)),
        }
    }
}

/// Adds connections to groups and removes them, on whichever node holds them.
pub struct Groups {
    shared: Arc<HubShared>,
}

impl Groups {
    /// Adds a connection to a group.
    pub async fn add(
        &self,
        connection: &ConnectionId,
        group: impl Into<GroupName>,
    ) -> Result<(), GroupError> {
        let group = group.into();
        if group.as_str().is_empty() || group.as_str().chars().count() > MAX_GROUP_NAME {
            return Err(GroupError::InvalidName);
        }
        self.apply(connection, group, GroupAction::Add).await
    }

    /// Whether a connection this node holds (the caller, say) is in `group`; false for connections
    /// of other nodes.
    pub fn contains_local(&self, connection: &ConnectionId, group: &GroupName) -> bool {
        self.shared.registry.groups_of(connection).contains(group)
    }

    /// Removes a connection from a group (a no-op when it is not a member).
    pub async fn remove(
        &self,
        connection: &ConnectionId,
        group: impl Into<GroupName>,
    ) -> Result<(), GroupError> {
        self.apply(connection, group.into(), GroupAction::Remove)
            .await
    }

    async fn apply(
        &self,
        connection: &ConnectionId,
        group: GroupName,
        action: GroupAction,
    ) -> Result<(), GroupError> {
        let command = GroupCommand {
            connection: connection.clone(),
            group,
            action,
        };
        // The backplane applies it on whichever node holds the connection, this one included.
        let backplane = &self.shared.backplane;
        Ok(backplane.group_command(&self.shared.name, command).await?)
    }
}
