//! Typed hub methods. Any async function `(Context<S>, P1, …, Pn) -> Result<R, HubError>` whose
//! parameters are [`Param`]s (any `Deserialize` type, or a [`ClientStream`](super::ClientStream)) and whose
//! result is `Serialize` is a method ([`Handler`]); one that resolves to a `Stream` of
//! `Result<R, HubError>` is a streaming method ([`StreamHandler`]). Arguments are bound straight from the
//! raw protocol values (no intermediate tree) and results and items are encoded straight into the
//! caller's protocol.

use std::future::Future;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use hubcast_protocol::{NamingPolicy, Protocol, RawValue};
use serde::Serialize;

use super::context::Context;
use super::params::Param;
use crate::runtime::{Binder, BindingError, Bound, BoundCall, BoundStream, HubError, ItemStream};

/// Implemented for async functions usable as hub methods (up to eight parameters after the context).
pub trait Handler<S, Args>: Clone + Send + Sync + 'static {
    /// Binds the arguments and starts the call; the result is encoded in `protocol`.
    fn bind(
        &self,
        context: Context<S>,
        binder: &mut Binder<'_>,
        protocol: Protocol,
        naming: NamingPolicy,
    ) -> Result<BoundCall, BindingError>;
}

/// Implemented for async functions usable as streaming hub methods.
pub trait StreamHandler<S, Args>: Clone + Send + Sync + 'static {
    /// Binds the arguments and starts the call; items are encoded in `protocol`.
    fn bind(
        &self,
        context: Context<S>,
        binder: &mut Binder<'_>,
        protocol: Protocol,
        naming: NamingPolicy,
    ) -> Result<BoundStream, BindingError>;
}

/// Encodes a result or item for the caller.
fn encode<R: Serialize>(
    value: &R,
    protocol: Protocol,
    naming: NamingPolicy,
) -> Result<RawValue, HubError> {
    RawValue::encode(protocol, value, naming)
        .map_err(|e| HubError::internal("SerializationException", e.to_string()))
}

/// Checks the numbers of arguments and streams before binding any.
fn check_counts(binder: &Binder<'_>, params: usize, streams: usize) -> Result<(), BindingError> {
    let (provided_args, provided_streams) = binder.remaining();
    if provided_streams != streams {
        return Err(BindingError::StreamCount {
            provided: provided_streams,
            expected: streams,
        });
    }
    if provided_args != params - streams {
        return Err(BindingError::Count {
            provided: provided_args,
            expected: params - streams,
        });
    }
    Ok(())
}

macro_rules! count {
    () => { 0usize };
    ($head:ident $($tail:ident)*) => { 1usize + count!($($tail)*) };
}

macro_rules! impl_handlers {
    ($($arg:ident),*) => {
        impl<S, F, Fut, R, $($arg,)*> Handler<S, ($($arg,)*)> for F
        where
            S: Send + Sync + 'static,
            F: Fn(Context<S>, $($arg,)*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = Result<R, HubError>> + Send + 'static,
            R: Serialize + Send + 'static,
            $($arg: Param,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn bind(
                &self,
                context: Context<S>,
                binder: &mut Binder<'_>,
                protocol: Protocol,
                naming: NamingPolicy,
            ) -> Result<BoundCall, BindingError> {
                check_counts(binder, count!($($arg)*), 0 $(+ usize::from(<$arg as Param>::STREAM))*)?;
                $(let $arg = <$arg as Param>::bind(binder)?;)*
                let handler = self.clone();
                Ok(Box::pin(async move {
                    let result = handler(context, $($arg,)*).await?;
                    encode(&result, protocol, naming)
                }))
            }
        }

        impl<S, F, Fut, St, R, $($arg,)*> StreamHandler<S, ($($arg,)*)> for F
        where
            S: Send + Sync + 'static,
            F: Fn(Context<S>, $($arg,)*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = Result<St, HubError>> + Send + 'static,
            St: Stream<Item = Result<R, HubError>> + Send + 'static,
            R: Serialize + Send + 'static,
            $($arg: Param,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn bind(
                &self,
                context: Context<S>,
                binder: &mut Binder<'_>,
                protocol: Protocol,
                naming: NamingPolicy,
            ) -> Result<BoundStream, BindingError> {
                check_counts(binder, count!($($arg)*), 0 $(+ usize::from(<$arg as Param>::STREAM))*)?;
                $(let $arg = <$arg as Param>::bind(binder)?;)*
                let handler = self.clone();
                Ok(Box::pin(async move {
                    let stream = handler(context, $($arg,)*).await?;
                    let items: ItemStream = Box::pin(
                        stream.map(move |item| item.and_then(|value| encode(&value, protocol, naming))),
                    );
                    Ok(items)
                }))
            }
        }
    };
}

impl_handlers!();
impl_handlers!(T1);
impl_handlers!(T1, T2);
impl_handlers!(T1, T2, T3);
impl_handlers!(T1, T2, T3, T4);
impl_handlers!(T1, T2, T3, T4, T5);
impl_handlers!(T1, T2, T3, T4, T5, T6);
impl_handlers!(T1, T2, T3, T4, T5, T6, T7);
impl_handlers!(T1, T2, T3, T4, T5, T6, T7, T8);

/// A method with its argument types erased, as the method table stores it.
pub(crate) trait ErasedMethod<S>: Send + Sync {
    fn bind(
        &self,
        context: Context<S>,
        binder: &mut Binder<'_>,
        protocol: Protocol,
        naming: NamingPolicy,
    ) -> Result<Bound, BindingError>;

    /// Whether clients must call it with a StreamInvocation.
    fn is_streaming(&self) -> bool;
}

struct Unary<H, Args> {
    handler: H,
    _args: std::marker::PhantomData<fn(Args)>,
}

struct Streaming<H, Args> {
    handler: H,
    _args: std::marker::PhantomData<fn(Args)>,
}

pub(crate) fn unary<S: 'static, Args: 'static, H: Handler<S, Args>>(
    handler: H,
) -> Arc<dyn ErasedMethod<S>> {
    Arc::new(Unary {
        handler,
        _args: std::marker::PhantomData,
    })
}

pub(crate) fn streaming<S: 'static, Args: 'static, H: StreamHandler<S, Args>>(
    handler: H,
) -> Arc<dyn ErasedMethod<S>> {
    Arc::new(Streaming {
        handler,
        _args: std::marker::PhantomData,
    })
}

impl<S, H: Handler<S, Args>, Args> ErasedMethod<S> for Unary<H, Args> {
    fn bind(
        &self,
        context: Context<S>,
        binder: &mut Binder<'_>,
        protocol: Protocol,
        naming: NamingPolicy,
    ) -> Result<Bound, BindingError> {
        self.handler
            .bind(context, binder, protocol, naming)
            .map(Bound::Call)
    }

    fn is_streaming(&self) -> bool {
        false
    }
}

impl<S, H: StreamHandler<S, Args>, Args> ErasedMethod<S> for Streaming<H, Args> {
    fn bind(
        &self,
        context: Context<S>,
        binder: &mut Binder<'_>,
        protocol: Protocol,
        naming: NamingPolicy,
    ) -> Result<Bound, BindingError> {
        self.handler
            .bind(context, binder, protocol, naming)
            .map(Bound::Stream)
    }

    fn is_streaming(&self) -> bool {
        true
    }
}
