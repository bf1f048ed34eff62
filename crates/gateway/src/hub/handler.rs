//! Typed hub methods: any async function `(Context<S>, T1, …, Tn) -> Result<R, HubError>` whose
//! parameters are `Deserialize` and whose result is `Serialize` is a hub method. Arguments are bound
//! straight from the raw protocol values (no intermediate tree) and the result is encoded straight into
//! the caller's protocol.

use std::future::Future;
use std::sync::Arc;

use hubcast_backplane::BoxFuture;
use hubcast_protocol::{Arguments, NamingPolicy, Protocol, RawValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::Context;
use super::error::{BindingError, HubError};

/// A bound call, ready to run: resolves to the encoded result.
pub(crate) type BoundCall = BoxFuture<'static, Result<RawValue, HubError>>;

/// Implemented for async functions usable as hub methods (up to eight parameters after the context).
pub trait Handler<S, Args>: Clone + Send + Sync + 'static {
    /// Binds `args` and starts the call; the result is encoded in `protocol`.
    fn bind(
        &self,
        context: Context<S>,
        args: &Arguments,
        protocol: Protocol,
        naming: NamingPolicy,
    ) -> Result<BoundCall, BindingError>;
}

/// Encodes a method's result for the caller.
fn encode_result<R: Serialize>(
    result: &R,
    protocol: Protocol,
    naming: NamingPolicy,
) -> Result<RawValue, HubError> {
    RawValue::encode(protocol, result, naming)
        .map_err(|e| HubError::internal("SerializationException", e.to_string()))
}

/// Binds one argument.
fn bind_arg<T: DeserializeOwned>(raw: Option<&RawValue>) -> Result<T, BindingError> {
    let raw = raw.ok_or_else(|| BindingError::Type("missing argument".into()))?;
    raw.deserialize().map_err(|e| BindingError::Type(e.0))
}

macro_rules! count {
    () => { 0usize };
    ($head:ident $($tail:ident)*) => { 1usize + count!($($tail)*) };
}

macro_rules! impl_handler {
    ($($arg:ident),*) => {
        impl<S, F, Fut, R, $($arg,)*> Handler<S, ($($arg,)*)> for F
        where
            S: Send + Sync + 'static,
            F: Fn(Context<S>, $($arg,)*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = Result<R, HubError>> + Send + 'static,
            R: Serialize + Send + 'static,
            $($arg: DeserializeOwned + Send + 'static,)*
        {
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn bind(
                &self,
                context: Context<S>,
                args: &Arguments,
                protocol: Protocol,
                naming: NamingPolicy,
            ) -> Result<BoundCall, BindingError> {
                let expected = count!($($arg)*);
                if args.len() != expected {
                    return Err(BindingError::Count { provided: args.len(), expected });
                }
                let mut raw = args.iter();
                $(let $arg: $arg = bind_arg(raw.next())?;)*
                let handler = self.clone();
                Ok(Box::pin(async move {
                    let result = handler(context, $($arg,)*).await?;
                    encode_result(&result, protocol, naming)
                }))
            }
        }
    };
}

impl_handler!();
impl_handler!(T1);
impl_handler!(T1, T2);
impl_handler!(T1, T2, T3);
impl_handler!(T1, T2, T3, T4);
impl_handler!(T1, T2, T3, T4, T5);
impl_handler!(T1, T2, T3, T4, T5, T6);
impl_handler!(T1, T2, T3, T4, T5, T6, T7);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8);

/// A handler with its argument types erased, as the method table stores it.
pub(crate) trait ErasedMethod<S>: Send + Sync {
    fn bind(
        &self,
        context: Context<S>,
        args: &Arguments,
        protocol: Protocol,
        naming: NamingPolicy,
    ) -> Result<BoundCall, BindingError>;
}

pub(crate) struct Method<H, Args> {
    handler: H,
    _args: std::marker::PhantomData<fn(Args)>,
}

impl<H, Args> Method<H, Args> {
    pub(crate) fn erase<S>(handler: H) -> Arc<dyn ErasedMethod<S>>
    where
        H: Handler<S, Args>,
        S: 'static,
        Args: 'static,
    {
        Arc::new(Self {
            handler,
            _args: std::marker::PhantomData,
        })
    }
}

impl<S, H: Handler<S, Args>, Args> ErasedMethod<S> for Method<H, Args> {
    fn bind(
        &self,
        context: Context<S>,
        args: &Arguments,
        protocol: Protocol,
        naming: NamingPolicy,
    ) -> Result<BoundCall, BindingError> {
        self.handler.bind(context, args, protocol, naming)
    }
}
