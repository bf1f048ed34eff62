//! The Hub API: declare a hub's methods as typed async functions, its `on_connected` and
//! `on_disconnected` handlers and its shared state; the gateway runs it on every connection of its path.
//!
//! ```
//! use hubcast_gateway::hub::{Context, Hub, HubError};
//!
//! #[derive(Default)]
//! struct Chat;
//!
//! async fn send_message(ctx: Context<Chat>, user: String, message: String) -> Result<(), HubError> {
//!     ctx.clients().all().send("ReceiveMessage", &(user, message)).await?;
//!     Ok(())
//! }
//!
//! let hub = Hub::builder("chat", Chat)
//!     .method("SendMessage", send_message)
//!     .method("Echo", |_ctx: Context<Chat>, text: String| async move { Ok(text) })
//!     .build();
//! assert_eq!(hub.name(), "chat");
//! ```

mod clients;
mod context;
mod handler;
mod params;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use hubcast_backplane::BoxFuture;
use hubcast_protocol::RawValue;

pub use clients::{
    CallerClients, ClientProxy, ClientResultError, DEFAULT_CLIENT_RESULT_TIMEOUT, GroupError,
    Groups, HubContext, SendError,
};
pub use context::{Context, User};
pub use handler::{Handler, StreamHandler};
pub use params::{ClientStream, Param};

use crate::runtime::{BindRequest, Bound, Caller, HubApp, HubShared, InvocationScope};
pub use crate::runtime::{Binder, BindingError, HubError, LocalRateLimiter, RateLimiter};
use handler::ErasedMethod;

type Lifecycle<S> =
    Arc<dyn Fn(Context<S>) -> BoxFuture<'static, Result<(), HubError>> + Send + Sync>;
type Disconnected<S> =
    Arc<dyn Fn(Context<S>, Option<String>) -> BoxFuture<'static, ()> + Send + Sync>;
type Fallback<S> = Arc<
    dyn Fn(
            Context<S>,
            String,
            Vec<RawValue>,
        ) -> BoxFuture<'static, Result<serde_json::Value, HubError>>
        + Send
        + Sync,
>;

/// A hub: named methods over shared state `S`.
pub struct Hub<S> {
    name: String,
    state: Arc<S>,
    methods: HashMap<String, Arc<dyn ErasedMethod<S>>>,
    /// Roles required per method (lower-cased name): the caller needs one of them.
    roles: HashMap<String, Vec<String>>,
    /// Invocation rates per method (lower-cased name): calls a second, burst.
    rates: HashMap<String, (f64, f64)>,
    on_connected: Option<Lifecycle<S>>,
    on_disconnected: Option<Disconnected<S>>,
    /// Called for every method the hub does not declare.
    fallback: Option<Fallback<S>>,
    /// What is wrong with the declaration (settings for methods it does not declare); the gateway
    /// refuses to build with such a hub.
    problems: Vec<String>,
}

impl<S: Send + Sync + 'static> Hub<S> {
    /// Starts declaring a hub named `name` (the name the backplane and control API use).
    pub fn builder(name: impl Into<String>, state: S) -> HubBuilder<S> {
        HubBuilder {
            hub: Hub {
                name: name.into(),
                state: Arc::new(state),
                methods: HashMap::new(),
                roles: HashMap::new(),
                rates: HashMap::new(),
                on_connected: None,
                on_disconnected: None,
                fallback: None,
                problems: Vec::new(),
            },
        }
    }

    /// The hub's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Declares a [`Hub`].
pub struct HubBuilder<S> {
    hub: Hub<S>,
}

impl<S: Send + Sync + 'static> HubBuilder<S> {
    /// Adds a method. Clients call it by `name`, matched case-insensitively.
    pub fn method<H, Args>(mut self, name: &str, handler: H) -> Self
    where
        H: Handler<S, Args>,
        Args: 'static,
    {
        self.hub
            .methods
            .insert(name.to_lowercase(), handler::unary(handler));
        self
    }

    /// Adds a streaming method: it resolves to a `Stream` of `Result<item, HubError>`, which clients
    /// consume with `stream()` (a StreamInvocation). The stream is dropped when the client cancels it
    /// or disconnects; `Context::cancellation` tells the method too.
    pub fn stream<H, Args>(mut self, name: &str, handler: H) -> Self
    where
        H: StreamHandler<S, Args>,
        Args: 'static,
    {
        self.hub
            .methods
            .insert(name.to_lowercase(), handler::streaming(handler));
        self
    }

    /// Requires the caller of `method` to have one of `roles`; others get
    /// `Failed to invoke 'X' because user is unauthorized`.
    pub fn require_roles(mut self, method: &str, roles: &[&str]) -> Self {
        self.hub.roles.insert(
            method.to_lowercase(),
            roles.iter().map(|r| (*r).to_owned()).collect(),
        );
        self
    }

    /// Limits each connection to `per_second` calls of `method` (with `burst` at once), on top of the
    /// hub's `invocation_rate`.
    pub fn rate_limit(mut self, method: &str, per_second: f64, burst: f64) -> Self {
        self.hub
            .rates
            .insert(method.to_lowercase(), (per_second, burst));
        self
    }

    /// Runs when a connection has completed its handshake, before its messages are read. An error
    /// closes the connection (`allowReconnect: false`).
    pub fn on_connected<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Context<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HubError>> + Send + 'static,
    {
        self.hub.on_connected = Some(Arc::new(move |ctx| Box::pin(handler(ctx))));
        self
    }

    /// Runs when a connection ends, with the error that ended it, if any.
    pub fn on_disconnected<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Context<S>, Option<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hub.on_disconnected = Some(Arc::new(move |ctx, error| Box::pin(handler(ctx, error))));
        self
    }

    /// Handles every method the hub does not declare: `handler` gets the target as the client called it
    /// and the raw arguments, and its JSON value is the result (encoded in the caller's protocol).
    /// Clients cannot stream to or from such methods.
    pub fn fallback<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Context<S>, String, Vec<RawValue>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<serde_json::Value, HubError>> + Send + 'static,
    {
        self.hub.fallback = Some(Arc::new(move |ctx, target, args| {
            Box::pin(handler(ctx, target, args))
        }));
        self
    }

    /// Finishes the declaration. A `require_roles` or `rate_limit` naming a method the hub does not
    /// declare (a typo) is recorded, and the gateway refuses to build with the hub
    /// ([`BuildError::Hub`](crate::BuildError::Hub)). A hub with a [`fallback`](Self::fallback) may
    /// name undeclared methods: the fallback serves them.
    pub fn build(mut self) -> Hub<S> {
        let hub = &mut self.hub;
        if hub.fallback.is_none() {
            let undeclared = |settings: &str, key: &String| {
                (!hub.methods.contains_key(key))
                    .then(|| format!("{settings} names '{key}', which the hub does not declare"))
            };
            let mut problems: Vec<String> = hub
                .roles
                .keys()
                .filter_map(|key| undeclared("require_roles", key))
                .chain(
                    hub.rates
                        .keys()
                        .filter_map(|key| undeclared("rate_limit", key)),
                )
                .collect();
            problems.sort();
            hub.problems = problems;
        }
        self.hub
    }
}

impl<S: Send + Sync + 'static> Hub<S> {
    fn context(
        &self,
        caller: Arc<Caller>,
        shared: &Arc<HubShared>,
        scope: Option<Arc<InvocationScope>>,
    ) -> Context<S> {
        Context {
            caller,
            state: self.state.clone(),
            hub: shared.clone(),
            scope,
        }
    }
}

impl<S: Send + Sync + 'static> HubApp for Hub<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn problems(&self) -> &[String] {
        &self.problems
    }

    fn is_streaming(&self, key: &str) -> Option<bool> {
        match self.methods.get(key) {
            Some(method) => Some(method.is_streaming()),
            None => self.fallback.as_ref().map(|_| false),
        }
    }

    fn is_declared(&self, key: &str) -> bool {
        self.methods.contains_key(key)
    }

    fn authorized(&self, key: &str, user: Option<&User>) -> bool {
        match self.roles.get(key) {
            None => true,
            Some(required) => {
                user.is_some_and(|user| user.roles.iter().any(|role| required.contains(role)))
            }
        }
    }

    fn rate_limit(&self, key: &str) -> Option<(f64, f64)> {
        self.rates.get(key).copied()
    }

    fn bind(&self, call: BindRequest<'_, '_>) -> Option<Result<Bound, BindingError>> {
        let context = self.context(call.caller, call.shared, Some(call.scope));
        if let Some(method) = self.methods.get(call.key) {
            return Some(method.bind(context, call.binder, call.protocol, call.naming));
        }
        let fallback = self.fallback.as_ref()?;
        let (_, streams) = call.binder.remaining();
        if streams > 0 {
            return Some(Err(BindingError::StreamCount {
                provided: streams,
                expected: 0,
            }));
        }
        let (protocol, naming) = (call.protocol, call.naming);
        let running = fallback(context, call.target.to_owned(), call.binder.take_all());
        Some(Ok(Bound::Call(Box::pin(async move {
            let value = running.await?;
            RawValue::encode(protocol, &value, naming)
                .map_err(|e| HubError::internal("SerializationException", e.to_string()))
        }))))
    }

    fn on_connected(
        &self,
        caller: Arc<Caller>,
        shared: &Arc<HubShared>,
    ) -> BoxFuture<'static, Result<(), HubError>> {
        match &self.on_connected {
            Some(handler) => handler(self.context(caller, shared, None)),
            None => Box::pin(async { Ok(()) }),
        }
    }

    fn on_disconnected(
        &self,
        caller: Arc<Caller>,
        shared: &Arc<HubShared>,
        error: Option<String>,
    ) -> BoxFuture<'static, ()> {
        match &self.on_disconnected {
            Some(handler) => handler(self.context(caller, shared, None), error),
            None => Box::pin(async {}),
        }
    }
}
