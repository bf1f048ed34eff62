//! Binding a call's arguments to a method's parameters. Ordinary parameters are deserialized from the
//! Invocation's `arguments`; [`ClientStream`] parameters are fed by client-to-server streams named in its
//! `streamIds` (the JS client's `Subject`, the .NET client's `ChannelReader`/`IAsyncEnumerable`).

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::runtime::{Binder, BindingError, HubError, UploadItem};

/// A parameter type of a hub method.
pub trait Param: Sized + Send + 'static {
    /// Whether the parameter is fed by a client-to-server stream instead of an argument.
    const STREAM: bool = false;

    /// Takes the parameter's value from the binder.
    fn bind(binder: &mut Binder<'_>) -> Result<Self, BindingError>;
}

impl<T: DeserializeOwned + Send + 'static> Param for T {
    fn bind(binder: &mut Binder<'_>) -> Result<Self, BindingError> {
        let raw = binder
            .next_argument()
            .ok_or_else(|| BindingError::Type("missing argument".into()))?;
        raw.deserialize().map_err(|e| BindingError::Type(e.0))
    }
}

/// A client-to-server stream parameter: yields each item the client sends, then ends when the client
/// completes the stream (with `Err` when it completed it with an error). Items are buffered up to the
/// hub's `stream_buffer_capacity`; beyond it the connection's receive loop waits, as in .NET.
pub struct ClientStream<T> {
    receiver: mpsc::Receiver<UploadItem>,
    _item: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + Send + 'static> Param for ClientStream<T> {
    const STREAM: bool = true;

    fn bind(binder: &mut Binder<'_>) -> Result<Self, BindingError> {
        Ok(Self {
            receiver: binder.open_stream()?,
            _item: std::marker::PhantomData,
        })
    }
}

impl<T: DeserializeOwned> ClientStream<T> {
    /// The next item; `None` when the client completed the stream.
    pub async fn recv(&mut self) -> Option<Result<T, HubError>> {
        self.receiver.recv().await.map(decode)
    }
}

fn decode<T: DeserializeOwned>(item: UploadItem) -> Result<T, HubError> {
    match item {
        Ok(raw) => raw
            .deserialize()
            .map_err(|e| HubError::internal("InvalidDataException", e.0)),
        Err(error) => Err(HubError::new(error)),
    }
}

impl<T: DeserializeOwned> futures_util::Stream for ClientStream<T> {
    type Item = Result<T, HubError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx).map(|item| item.map(decode))
    }
}
