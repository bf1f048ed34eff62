//! The engine that runs hubs on connections, below the typed Hub API (`crate::hub`), which it never
//! names: what it runs ([`app`]: a hub with its state erased, bound calls, the caller), the session of
//! one connection ([`session`]: handshake, dispatch, admission, stateful reconnect), the local registry
//! of connections, groups and users ([`registry`]), server-to-client streams ([`streams`]), rate limits
//! ([`limits`]), binding arguments ([`binder`]) and the error texts clients see ([`error`]).
//!
//! This file: a hub as the gateway runs it ([`HubRuntime`]): the hub, its options, its local registry
//! and the backplane it publishes through. It owns the local side of group membership and client
//! results, which a hub method on this node and a command from another node (through [`LocalNode`])
//! share.

pub(crate) mod app;
pub(crate) mod binder;
pub(crate) mod error;
pub(crate) mod limits;
pub(crate) mod registry;
mod session;
pub(crate) mod streams;

use std::sync::{Arc, Weak};

use hubcast_backplane::{
    Backplane, BackplaneError, BoxFuture, ClientInvocation, ConnectionId, GroupAction,
    GroupCommand, GroupName, Interest, LocalConnection, LocalHub, Member, Outcome, PresenceChange,
    Publish, RemoteError, Target, UserId,
};

use crate::config::HubOptions;
use crate::connection::{Connection, Inbound};
use crate::metrics::HubMetrics;
pub(crate) use app::{
    BindRequest, Bound, BoundCall, BoundStream, Caller, HubApp, InvocationScope, ItemStream,
};
pub use binder::Binder;
pub(crate) use binder::UploadItem;
pub use error::{BindingError, HubError};
pub use limits::{LocalRateLimiter, RateLimiter};
use registry::{HubConnection, Membership, Registry};

/// What every connection and send of a hub shares.
pub(crate) struct HubShared {
    pub(crate) name: Arc<str>,
    pub(crate) options: HubOptions,
    pub(crate) backplane: Arc<dyn Backplane>,
    pub(crate) registry: Arc<Registry>,
    /// Per-user rate limits (shared beyond this connection).
    pub(crate) limiter: Arc<dyn RateLimiter>,
    /// The hub's metric series.
    pub(crate) metrics: HubMetrics,
    /// Numbers the server's client-result invocations (`s1`, `s2`, …: never a client stream id).
    result_ids: std::sync::atomic::AtomicU64,
}

impl HubShared {
    /// A new client-result invocation id, unique on this node (and across nodes, with a node tag).
    pub(crate) fn next_result_id(&self) -> String {
        let n = self
            .result_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        match self.backplane.node_tag() {
            Some(tag) => format!("s{tag}.{n}"),
            None => format!("s{n}"),
        }
    }

    /// Records a presence change; a failure is logged (the backplane republishes presence when it can).
    pub(crate) async fn presence(&self, change: PresenceChange) {
        if let Err(error) = self.backplane.record(&self.name, change).await {
            tracing::warn!(%error, hub = %self.name, "presence update failed");
        }
    }

    /// Tells the backplane this node now holds (or no longer holds) a member of `interest`.
    pub(crate) async fn interest(&self, interest: Interest, subscribe: bool) {
        let result = if subscribe {
            self.backplane.subscribe(&self.name, interest).await
        } else {
            self.backplane.unsubscribe(&self.name, interest).await
        };
        if let Err(error) = result {
            tracing::warn!(%error, subscribe, "backplane interest update failed");
        }
    }

    /// Adds or removes a connection of this node to or from a group.
    pub(crate) async fn group_local(&self, command: &GroupCommand) -> Result<(), RemoteError> {
        let GroupCommand {
            connection,
            group,
            action,
        } = command;
        let member = self
            .registry
            .get(connection)
            .ok_or_else(|| RemoteError::UnknownConnection(connection.clone()))?
            .member();
        let changed = match action {
            GroupAction::Add => {
                let limit = self.options.max_groups_per_connection;
                self.registry.add_to_group(connection, group, limit)?
            }
            GroupAction::Remove => self
                .registry
                .remove_from_group(connection, group)
                .ok_or_else(|| RemoteError::UnknownConnection(connection.clone()))?,
        };
        let Membership::Changed { edge } = changed else {
            return Ok(());
        };
        let subscribe = *action == GroupAction::Add;
        if edge {
            self.interest(Interest::Group(group.clone()), subscribe)
                .await;
        }
        let change = if subscribe {
            PresenceChange::Joined(member, group.clone())
        } else {
            PresenceChange::Left(member, group.clone())
        };
        self.presence(change).await;
        Ok(())
    }

    /// Queues an Invocation that asks a local connection for a result and waits for the answer.
    pub(crate) async fn invoke_local(
        &self,
        connection: &HubConnection,
        invocation_id: String,
        bytes: bytes::Bytes,
        timeout: std::time::Duration,
    ) -> Result<Outcome, RemoteError> {
        let answer = connection.expect_result(invocation_id.clone());
        connection.push(bytes);
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => {
                connection.forget_result(&invocation_id);
                Err(RemoteError::Timeout)
            }
            Ok(Err(_)) => Err(RemoteError::Disconnected(connection.id.clone())),
            Ok(Ok(outcome)) => Ok(outcome),
        }
    }
}

/// The hub's local side as the backplane sees it. The registry is held directly; the rest of the hub
/// weakly, since the hub holds the backplane that holds this.
struct LocalNode {
    shared: Weak<HubShared>,
    registry: Arc<Registry>,
    metrics: HubMetrics,
}

impl LocalNode {
    fn shared(&self) -> Result<Arc<HubShared>, RemoteError> {
        self.shared.upgrade().ok_or_else(|| {
            RemoteError::Backplane(BackplaneError::Unavailable("the hub stopped".into()))
        })
    }
}

impl LocalHub for LocalNode {
    fn deliver(&self, publish: &Publish) {
        let started = std::time::Instant::now();
        let delivered = self.registry.deliver(publish);
        self.metrics.messages_out.inc_by(delivered);
        self.metrics
            .fanout_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    fn group_command(&self, command: GroupCommand) -> BoxFuture<'_, Result<(), RemoteError>> {
        Box::pin(async move { self.shared()?.group_local(&command).await })
    }

    fn invoke_client(
        &self,
        invocation: ClientInvocation,
    ) -> BoxFuture<'_, Result<Outcome, RemoteError>> {
        Box::pin(async move {
            let shared = self.shared()?;
            let unknown = || RemoteError::UnknownConnection(invocation.connection.clone());
            let connection = shared
                .registry
                .get(&invocation.connection)
                .ok_or_else(unknown)?;
            let bytes = invocation
                .message
                .get(connection.protocol)
                .map_err(|_| unknown())?
                .clone();
            shared
                .invoke_local(
                    &connection,
                    invocation.invocation_id,
                    bytes,
                    invocation.timeout,
                )
                .await
        })
    }

    fn close(&self, target: &Target, reason: &str) -> usize {
        self.registry.close(target, reason)
    }

    fn user_groups(
        &self,
        user: &UserId,
        group: Option<&GroupName>,
        action: GroupAction,
    ) -> BoxFuture<'_, ()> {
        let (user, group) = (user.clone(), group.cloned());
        Box::pin(async move {
            let Ok(shared) = self.shared() else {
                return;
            };
            for connection in shared.registry.of_user(&user) {
                let groups = match &group {
                    Some(group) => vec![group.clone()],
                    None => shared.registry.groups_of(&connection.id),
                };
                for group in groups {
                    let command = GroupCommand {
                        connection: connection.id.clone(),
                        group,
                        action,
                    };
                    if let Err(error) = shared.group_local(&command).await {
                        tracing::debug!(%error, "a user's group change skipped a connection");
                    }
                }
            }
        })
    }

    fn has_connection(&self, connection: &ConnectionId) -> bool {
        self.registry.get(connection).is_some()
    }

    fn snapshot(&self) -> Vec<LocalConnection> {
        self.registry.snapshot()
    }

    fn local_users(&self) -> Vec<(UserId, usize)> {
        self.registry.users()
    }

    fn local_group_members(&self, group: &GroupName) -> Vec<Member> {
        self.registry.group_members(group)
    }

    fn local_user_connections(&self, user: &UserId) -> Vec<ConnectionId> {
        let connections = self.registry.of_user(user);
        connections.iter().map(|c| c.id.clone()).collect()
    }
}

/// A running hub.
pub(crate) struct HubRuntime {
    pub(crate) app: Arc<dyn HubApp>,
    pub(crate) shared: Arc<HubShared>,
}

impl HubRuntime {
    /// Attaches the hub's registry to the backplane.
    pub(crate) async fn start(
        app: Arc<dyn HubApp>,
        options: HubOptions,
        backplane: Arc<dyn Backplane>,
        limiter: Arc<dyn RateLimiter>,
        metrics: &crate::metrics::GatewayMetrics,
    ) -> Result<Arc<Self>, BackplaneError> {
        let shared = Arc::new(HubShared {
            name: Arc::from(app.name()),
            options,
            backplane: backplane.clone(),
            registry: Arc::new(Registry::default()),
            limiter,
            metrics: metrics.hub(app.name()),
            result_ids: std::sync::atomic::AtomicU64::new(0),
        });
        let local = Arc::new(LocalNode {
            shared: Arc::downgrade(&shared),
            registry: shared.registry.clone(),
            metrics: shared.metrics.clone(),
        });
        backplane.attach(app.name(), local).await?;
        Ok(Arc::new(Self { app, shared }))
    }

    /// Runs the hub protocol on a connection until it ends.
    pub(crate) async fn run_session(
        self: Arc<Self>,
        connection: Arc<Connection>,
        inbound: Inbound,
    ) {
        session::run(self, connection, inbound).await;
    }
}
