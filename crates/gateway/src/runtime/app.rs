//! What the engine runs: a hub with its state type erased ([`HubApp`], which the Hub API's `Hub<S>`
//! implements), the bound invocations it hands back, and who is calling ([`Caller`],
//! [`InvocationScope`]). The engine names only these, never the typed API above it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use hubcast_backplane::{BoxFuture, ConnectionId};
use hubcast_protocol::{NamingPolicy, Protocol, RawValue, Transport};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{Binder, BindingError, HubError, HubShared};
use crate::auth::User;
use crate::connection::RequestInfo;

/// A bound call, ready to run: resolves to the encoded result.
pub(crate) type BoundCall = BoxFuture<'static, Result<RawValue, HubError>>;

/// The encoded items of a server-to-client stream.
pub(crate) type ItemStream = Pin<Box<dyn Stream<Item = Result<RawValue, HubError>> + Send>>;

/// A bound streaming call: resolves to its stream (or fails before producing one).
pub(crate) type BoundStream = BoxFuture<'static, Result<ItemStream, HubError>>;

/// A bound invocation of either kind.
pub(crate) enum Bound {
    Call(BoundCall),
    Stream(BoundStream),
}

/// The connection a call comes from.
#[derive(Debug)]
pub(crate) struct Caller {
    pub(crate) connection_id: ConnectionId,
    pub(crate) user: Option<User>,
    pub(crate) request: Arc<RequestInfo>,
    pub(crate) transport: Transport,
    pub(crate) protocol: Protocol,
}

/// One running invocation: its cancellation (a CancelInvocation, or the connection ending) and the
/// parallel-invocation slot it holds, which it gives back while it waits for a client result.
#[derive(Debug)]
pub(crate) struct InvocationScope {
    pub(crate) cancel: CancellationToken,
    slot: Mutex<Option<OwnedSemaphorePermit>>,
    slots: Option<Arc<Semaphore>>,
}

impl InvocationScope {
    pub(crate) fn new(cancel: CancellationToken, slots: Option<Arc<Semaphore>>) -> Self {
        Self {
            cancel,
            slot: Mutex::new(None),
            slots,
        }
    }

    /// Records the slot the invocation runs in.
    pub(crate) fn hold(&self, permit: OwnedSemaphorePermit) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(permit);
    }

    /// Gives the slot back (so the receive loop can read the client's answer); returns whether one was
    /// held.
    pub(crate) fn release(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
    }

    /// Takes a slot again after [`release`](Self::release).
    pub(crate) async fn reacquire(&self) {
        if let Some(slots) = &self.slots
            && let Ok(permit) = slots.clone().acquire_owned().await
        {
            self.hold(permit);
        }
    }
}

/// What the runtime needs of a hub, with its state type erased.
pub(crate) trait HubApp: Send + Sync + 'static {
    fn name(&self) -> &str;
    /// What is wrong with the declaration, if anything.
    fn problems(&self) -> &[String];
    /// `None` for an unknown method, else whether it streams. Methods are looked up by their lower-cased
    /// name (`key`), computed once per invocation.
    fn is_streaming(&self, key: &str) -> Option<bool>;
    /// Whether the hub declares the method (a fallback handles undeclared ones).
    fn is_declared(&self, key: &str) -> bool;
    /// Whether `user` may call the method (its required roles).
    fn authorized(&self, key: &str, user: Option<&User>) -> bool;
    /// The method's own invocation rate, if it has one.
    fn rate_limit(&self, key: &str) -> Option<(f64, f64)>;
    /// `None` for an unknown method.
    fn bind(&self, call: BindRequest<'_, '_>) -> Option<Result<Bound, BindingError>>;
    fn on_connected(
        &self,
        caller: Arc<Caller>,
        shared: &Arc<HubShared>,
    ) -> BoxFuture<'static, Result<(), HubError>>;
    fn on_disconnected(
        &self,
        caller: Arc<Caller>,
        shared: &Arc<HubShared>,
        error: Option<String>,
    ) -> BoxFuture<'static, ()>;
}

/// Everything binding one invocation needs.
pub(crate) struct BindRequest<'a, 'b> {
    pub(crate) caller: Arc<Caller>,
    pub(crate) shared: &'a Arc<HubShared>,
    /// The lower-cased method name.
    pub(crate) key: &'a str,
    /// The method name as the client called it.
    pub(crate) target: &'a str,
    pub(crate) binder: &'a mut Binder<'b>,
    pub(crate) protocol: Protocol,
    pub(crate) naming: NamingPolicy,
    pub(crate) scope: Arc<InvocationScope>,
}
