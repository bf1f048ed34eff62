//! Binding a call's arguments to a method's parameters. Ordinary parameters are deserialized from the
//! Invocation's `arguments`; [`ClientStream`] parameters are fed by client-to-server streams named in its
//! `streamIds` (the JS client's `Subject`, the .NET client's `ChannelReader`/`IAsyncEnumerable`).

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use hubcast_protocol::RawValue;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::error::{BindingError, HubError};

/// One item of an upload stream as the receive loop forwards it: a value, or the client's error.
pub(crate) type UploadItem = Result<RawValue, String>;

/// What binding reads from: the raw arguments, the stream ids, and where new upload streams go.
pub struct Binder<'a> {
    args: std::slice::Iter<'a, RawValue>,
    stream_ids: std::slice::Iter<'a, String>,
    in_use: &'a (dyn Fn(&str) -> bool + Sync),
    capacity: usize,
    opened: Vec<(String, mpsc::Sender<UploadItem>)>,
}

impl<'a> Binder<'a> {
    pub(crate) fn new(
        args: &'a [RawValue],
        stream_ids: &'a [String],
        in_use: &'a (dyn Fn(&str) -> bool + Sync),
        capacity: usize,
    ) -> Self {
        Self {
            args: args.iter(),
            stream_ids: stream_ids.iter(),
            in_use,
            capacity,
            opened: Vec::new(),
        }
    }

    /// Arguments and stream ids not bound yet.
    /// Every argument not bound yet.
    pub(crate) fn take_all(&mut self) -> Vec<RawValue> {
        self.args.by_ref().cloned().collect()
    }

    pub(crate) fn remaining(&self) -> (usize, usize) {
        (self.args.len(), self.stream_ids.len())
    }

    /// The upload streams opened by a successful binding, for the receive loop to feed.
    pub(crate) fn into_opened(self) -> Vec<(String, mpsc::Sender<UploadItem>)> {
        self.opened
    }
}

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
            .args
            .next()
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
        let id = binder.stream_ids.next().ok_or(BindingError::StreamCount {
            provided: 0,
            expected: 1,
        })?;
        if (binder.in_use)(id) || binder.opened.iter().any(|(open, _)| open == id) {
            return Err(BindingError::IdInUse(id.clone()));
        }
        let (sender, receiver) = mpsc::channel(binder.capacity.max(1));
        binder.opened.push((id.clone(), sender));
        Ok(Self {
            receiver,
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
