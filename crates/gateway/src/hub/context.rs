//! The caller context a hub method or lifecycle handler receives: who is calling (connection, user,
//! HTTP request, transport) and handles to send to clients and manage groups.

use std::sync::Arc;

use hubcast_backplane::{ConnectionId, UserId};
use hubcast_protocol::{Protocol, Transport};
use tokio_util::sync::CancellationToken;

use super::clients::{CallerClients, Groups, HubContext};
pub use crate::auth::User;
use crate::connection::RequestInfo;
use crate::runtime::{Caller, HubShared, InvocationScope};

/// What a hub method knows about its call.
pub struct Context<S> {
    pub(crate) caller: Arc<Caller>,
    pub(crate) state: Arc<S>,
    pub(crate) hub: Arc<HubShared>,
    pub(crate) scope: Option<Arc<InvocationScope>>,
}

impl<S> Clone for Context<S> {
    fn clone(&self) -> Self {
        Self {
            caller: self.caller.clone(),
            state: self.state.clone(),
            hub: self.hub.clone(),
            scope: self.scope.clone(),
        }
    }
}

impl<S> Context<S> {
    /// The caller's connection id.
    pub fn connection_id(&self) -> &ConnectionId {
        &self.caller.connection_id
    }

    /// The caller's user, when authenticated.
    pub fn user(&self) -> Option<&User> {
        self.caller.user.as_ref()
    }

    /// The caller's user id, when authenticated.
    pub fn user_id(&self) -> Option<&UserId> {
        self.caller.user.as_ref().map(|u| &u.id)
    }

    /// The HTTP request that opened the caller's transport (headers, query, cookies).
    pub fn request(&self) -> &RequestInfo {
        &self.caller.request
    }

    /// The caller's transport.
    pub fn transport(&self) -> Transport {
        self.caller.transport
    }

    /// The caller's hub protocol.
    pub fn protocol(&self) -> Protocol {
        self.caller.protocol
    }

    /// The hub's shared state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Cancelled when the client cancels this invocation (CancelInvocation of a stream) or the
    /// connection ends; never cancelled outside an invocation.
    pub fn cancellation(&self) -> CancellationToken {
        self.scope
            .as_ref()
            .map(|scope| scope.cancel.clone())
            .unwrap_or_default()
    }

    /// Send targets relative to the caller (caller, others, …) and every other target.
    pub fn clients(&self) -> CallerClients {
        CallerClients::new(
            self.hub_context(),
            self.caller.connection_id.clone(),
            self.scope.clone(),
        )
    }

    /// Group membership.
    pub fn groups(&self) -> Groups {
        self.hub_context().groups()
    }

    /// A handle on the hub usable outside this call (spawned tasks, timers).
    pub fn hub_context(&self) -> HubContext {
        HubContext::new(self.hub.clone())
    }
}
