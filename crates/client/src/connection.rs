//! [`HubConnection`]: the public face of a connection. Calls are encoded here, in the caller's task,
//! and handed to the connection's driver task ([`crate::driver`]) as commands; handlers registered
//! with `on` and `on_invoke` are called by the driver.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hubcast_protocol::{
    Arguments, CancelInvocation, Completion, Headers, HubMessage, Invocation, Outcome, Protocol,
    RawValue, StreamItem, encode_message,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot, watch};

use crate::args::{FromArguments, ToArguments, decode, encode};
use crate::builder::Config;
use crate::driver;
use crate::error::{Error, Result};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubConnectionState {
    /// Not started, or stopped, or closed after an error.
    Disconnected,
    /// `start` is running.
    Connecting,
    /// Connected: calls go out.
    Connected,
    /// Lost and trying to reconnect (automatic reconnect).
    Reconnecting,
}

pub(crate) type Handler = Arc<dyn Fn(&Arguments) + Send + Sync>;
pub(crate) type ResultFuture = Pin<Box<dyn Future<Output = Result<RawValue, String>> + Send>>;
pub(crate) type ResultHandler = Arc<dyn Fn(&Arguments, Protocol) -> ResultFuture + Send + Sync>;
type Callback<T> = Arc<dyn Fn(T) + Send + Sync>;

/// What callers ask of the driver.
pub(crate) enum Command {
    /// A sequenced hub message (send, stream item, completion).
    Send(Bytes),
    Invoke {
        id: String,
        bytes: Bytes,
        reply: oneshot::Sender<Result<RawValue>>,
    },
    Stream {
        id: String,
        bytes: Bytes,
        items: mpsc::UnboundedSender<Result<RawValue>>,
    },
    /// A stream dropped by its reader: send CancelInvocation and forget it.
    Cancel {
        id: String,
        bytes: Bytes,
    },
    Stop {
        done: oneshot::Sender<()>,
    },
}

/// State shared by the handle and the driver.
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) state: watch::Sender<HubConnectionState>,
    pub(crate) commands: Mutex<Option<mpsc::UnboundedSender<Command>>>,
    pub(crate) connection_id: Mutex<Option<String>>,
    next_id: AtomicU64,
    handlers: RwLock<HashMap<String, Vec<Handler>>>,
    results: RwLock<HashMap<String, ResultHandler>>,
    closed: RwLock<Vec<Callback<Option<Error>>>>,
    reconnecting: RwLock<Vec<Callback<Error>>>,
    reconnected: RwLock<Vec<Callback<Option<String>>>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    pub(crate) fn handlers(&self, target: &str) -> (Vec<Handler>, Option<ResultHandler>) {
        let key = target.to_lowercase();
        let handlers = read(&self.handlers).get(&key).cloned().unwrap_or_default();
        (handlers, read(&self.results).get(&key).cloned())
    }

    pub(crate) fn set_state(&self, state: HubConnectionState) {
        self.state.send_replace(state);
    }

    pub(crate) fn emit_closed(&self, error: Option<Error>) {
        for callback in read(&self.closed).iter() {
            callback(error.clone());
        }
    }

    pub(crate) fn emit_reconnecting(&self, error: &Error) {
        for callback in read(&self.reconnecting).iter() {
            callback(error.clone());
        }
    }

    pub(crate) fn emit_reconnected(&self) {
        let id = lock(&self.connection_id).clone();
        for callback in read(&self.reconnected).iter() {
            callback(id.clone());
        }
    }

    pub(crate) fn encode<A: hubcast_protocol::EncodeValue, V: hubcast_protocol::EncodeValue>(
        &self,
        message: &HubMessage<A, V>,
    ) -> Result<Bytes> {
        encode_message(self.config.protocol, message, self.config.naming).map_err(Error::value)
    }

    fn next_id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// Hands a command to the driver when connected.
    fn command(&self, command: Command) -> Result<()> {
        if *self.state.borrow() != HubConnectionState::Connected {
            return Err(Error::NotConnected);
        }
        lock(&self.commands)
            .as_ref()
            .ok_or(Error::NotConnected)?
            .send(command)
            .map_err(|_| Error::NotConnected)
    }
}

/// A connection to a SignalR hub. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct HubConnection {
    inner: Arc<Inner>,
}

impl HubConnection {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: watch::Sender::new(HubConnectionState::Disconnected),
                commands: Mutex::new(None),
                connection_id: Mutex::new(None),
                next_id: AtomicU64::new(0),
                handlers: RwLock::default(),
                results: RwLock::default(),
                closed: RwLock::default(),
                reconnecting: RwLock::default(),
                reconnected: RwLock::default(),
            }),
        }
    }

    /// Negotiates, opens a transport and completes the handshake. Only from `Disconnected`.
    pub async fn start(&self) -> Result<()> {
        let started = self.inner.state.send_if_modified(|state| {
            let idle = *state == HubConnectionState::Disconnected;
            if idle {
                *state = HubConnectionState::Connecting;
            }
            idle
        });
        if !started {
            return Err(Error::Config(
                "The HubConnection can only be started from the Disconnected state.".to_owned(),
            ));
        }
        match driver::connect(&self.inner.config).await {
            Ok(session) => {
                driver::spawn(self.inner.clone(), session);
                Ok(())
            }
            Err(error) => {
                self.inner.set_state(HubConnectionState::Disconnected);
                Err(error)
            }
        }
    }

    /// Stops the connection (a Close message, then the transport), failing pending calls. Stopping
    /// interrupts a reconnect. The `on_closed` callbacks run with no error.
    pub async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        let sent = lock(&self.inner.commands)
            .take()
            .is_some_and(|commands| commands.send(Command::Stop { done }).is_ok());
        if sent {
            let _ = stopped.await;
        }
    }

    /// The current state.
    pub fn state(&self) -> HubConnectionState {
        *self.inner.state.borrow()
    }

    /// A receiver of state changes (for waiting on `Connected`, `Reconnecting`, …).
    pub fn state_changes(&self) -> watch::Receiver<HubConnectionState> {
        self.inner.state.subscribe()
    }

    /// The connection id the server assigned (`None` before start and with skip-negotiation).
    pub fn connection_id(&self) -> Option<String> {
        lock(&self.inner.connection_id).clone()
    }

    /// Calls `handler` whenever the server invokes `method` (case-insensitive). Several handlers per
    /// method are called in registration order. Arguments that don't decode into `A` are logged and
    /// skipped. Handlers run on the connection's task: keep them short (spawn longer work).
    pub fn on<A, F>(&self, method: &str, handler: F)
    where
        A: FromArguments,
        F: Fn(A) + Send + Sync + 'static,
    {
        let method_name = method.to_owned();
        let handler: Handler = Arc::new(move |arguments: &Arguments| {
            match A::from_arguments(arguments) {
                Ok(args) => handler(args),
                Err(error) => {
                    tracing::warn!(method = %method_name, %error, "handler arguments did not decode");
                }
            }
        });
        write(&self.inner.handlers)
            .entry(method.to_lowercase())
            .or_default()
            .push(handler);
    }

    /// Answers the server's client-result invocations of `method` (`InvokeAsync` on the server).
    /// One per method; a later registration replaces the earlier one. An `Err(text)` reaches the
    /// server as the error. Without a handler the server gets "Client didn't provide a result.".
    pub fn on_invoke<A, R, F, Fut>(&self, method: &str, handler: F)
    where
        A: FromArguments + Send + 'static,
        R: Serialize,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, String>> + Send + 'static,
    {
        let naming = self.inner.config.naming;
        let handler = Arc::new(handler);
        let wrapped: ResultHandler = Arc::new(move |arguments: &Arguments, protocol: Protocol| {
            let args = A::from_arguments(arguments);
            let handler = handler.clone();
            Box::pin(async move {
                let result = handler(args.map_err(|e| e.to_string())?).await?;
                encode(protocol, &result, naming).map_err(|e| e.to_string())
            })
        });
        write(&self.inner.results).insert(method.to_lowercase(), wrapped);
    }

    /// Removes every handler of `method`.
    pub fn off(&self, method: &str) {
        let key = method.to_lowercase();
        write(&self.inner.handlers).remove(&key);
        write(&self.inner.results).remove(&key);
    }

    /// Called when the connection closes for good: stopped (`None`), or lost without (further)
    /// reconnecting (`Some(error)`).
    pub fn on_closed(&self, callback: impl Fn(Option<Error>) + Send + Sync + 'static) {
        write(&self.inner.closed).push(Arc::new(callback));
    }

    /// Called when the connection is lost and automatic reconnect starts.
    pub fn on_reconnecting(&self, callback: impl Fn(Error) + Send + Sync + 'static) {
        write(&self.inner.reconnecting).push(Arc::new(callback));
    }

    /// Called after a successful automatic reconnect, with the new connection id.
    pub fn on_reconnected(&self, callback: impl Fn(Option<String>) + Send + Sync + 'static) {
        write(&self.inner.reconnected).push(Arc::new(callback));
    }

    fn invocation<A: ToArguments>(
        &self,
        method: &str,
        args: &A,
        id: Option<String>,
        stream_ids: Vec<String>,
    ) -> Result<Invocation<Arguments>> {
        let config = &self.inner.config;
        Ok(Invocation {
            headers: Headers::new(),
            invocation_id: id,
            target: method.to_owned(),
            arguments: args.to_arguments(config.protocol, config.naming)?,
            stream_ids,
        })
    }

    /// Invokes `method` and waits for its result (use `()` for methods that return nothing).
    pub async fn invoke<R: DeserializeOwned>(
        &self,
        method: &str,
        args: impl ToArguments,
    ) -> Result<R> {
        self.invoke_with_streams::<R, (), _>(
            method,
            args,
            Vec::<futures_util::stream::Empty<()>>::new(),
        )
        .await
    }

    /// Invokes `method` with client-to-server streams: each stream in `uploads` is one of the method's
    /// stream parameters (after the ordinary arguments), sent item by item as it produces them.
    pub async fn invoke_with_streams<R, T, S>(
        &self,
        method: &str,
        args: impl ToArguments,
        uploads: Vec<S>,
    ) -> Result<R>
    where
        R: DeserializeOwned,
        T: Serialize + Send + 'static,
        S: Stream<Item = T> + Send + 'static,
    {
        let id = self.inner.next_id();
        let stream_ids: Vec<String> = uploads.iter().map(|_| self.inner.next_id()).collect();
        let message = self.invocation(method, &args, Some(id.clone()), stream_ids.clone())?;
        let bytes = self
            .inner
            .encode(&HubMessage::<_, ()>::Invocation(message))?;
        let (reply, result) = oneshot::channel();
        self.inner.command(Command::Invoke { id, bytes, reply })?;
        self.upload(stream_ids, uploads);
        let value = result.await.map_err(|_| Error::ConnectionClosed)??;
        decode(&value)
    }

    /// Invokes `method` without waiting for (or getting) a result; returns once queued.
    pub async fn send(&self, method: &str, args: impl ToArguments) -> Result<()> {
        self.send_with_streams::<(), _>(method, args, Vec::<futures_util::stream::Empty<()>>::new())
            .await
    }

    /// [`send`](Self::send) with client-to-server streams (see [`invoke_with_streams`](Self::invoke_with_streams)).
    pub async fn send_with_streams<T, S>(
        &self,
        method: &str,
        args: impl ToArguments,
        uploads: Vec<S>,
    ) -> Result<()>
    where
        T: Serialize + Send + 'static,
        S: Stream<Item = T> + Send + 'static,
    {
        let stream_ids: Vec<String> = uploads.iter().map(|_| self.inner.next_id()).collect();
        let message = self.invocation(method, &args, None, stream_ids.clone())?;
        let bytes = self
            .inner
            .encode(&HubMessage::<_, ()>::Invocation(message))?;
        self.inner.command(Command::Send(bytes))?;
        self.upload(stream_ids, uploads);
        Ok(())
    }

    /// Calls a streaming hub method; its items arrive as a Rust [`Stream`]. Dropping the stream before
    /// it ends cancels the call on the server.
    pub async fn stream<T: DeserializeOwned>(
        &self,
        method: &str,
        args: impl ToArguments,
    ) -> Result<HubStream<T>> {
        let id = self.inner.next_id();
        let message = self.invocation(method, &args, Some(id.clone()), Vec::new())?;
        let bytes = self
            .inner
            .encode(&HubMessage::<_, ()>::StreamInvocation(message))?;
        let cancel =
            self.inner
                .encode(&HubMessage::<(), ()>::CancelInvocation(CancelInvocation {
                    headers: Headers::new(),
                    invocation_id: id.clone(),
                }))?;
        let (items, receiver) = mpsc::unbounded_channel();
        self.inner.command(Command::Stream {
            id: id.clone(),
            bytes,
            items,
        })?;
        Ok(HubStream {
            id,
            cancel,
            items: receiver,
            inner: self.inner.clone(),
            done: false,
            item: PhantomData,
        })
    }

    /// Sends each upload stream's items, then its completion, from a task of its own.
    fn upload<T, S>(&self, ids: Vec<String>, uploads: Vec<S>)
    where
        T: Serialize + Send + 'static,
        S: Stream<Item = T> + Send + 'static,
    {
        for (id, upload) in ids.into_iter().zip(uploads) {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                let mut upload = std::pin::pin!(upload);
                let mut error = None;
                while let Some(item) = upload.next().await {
                    let message = HubMessage::<(), _>::StreamItem(StreamItem {
                        headers: Headers::new(),
                        invocation_id: id.clone(),
                        item,
                    });
                    match inner.encode(&message) {
                        Ok(bytes) => {
                            if inner.command(Command::Send(bytes)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            error = Some(e.to_string());
                            break;
                        }
                    }
                }
                let done = HubMessage::<(), ()>::Completion(Completion {
                    headers: Headers::new(),
                    invocation_id: id,
                    outcome: error.map_or(Outcome::Void, Outcome::Error),
                });
                if let Ok(bytes) = inner.encode(&done) {
                    let _ = inner.command(Command::Send(bytes));
                }
            });
        }
    }
}

/// The items of a server-to-client stream ([`HubConnection::stream`]). Ends after the server's
/// completion; yields one `Err` if the hub method failed or the connection was lost.
pub struct HubStream<T> {
    id: String,
    cancel: Bytes,
    items: mpsc::UnboundedReceiver<Result<RawValue>>,
    inner: Arc<Inner>,
    done: bool,
    item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Stream for HubStream<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.items.poll_recv(cx) {
            Poll::Ready(Some(Ok(value))) => Poll::Ready(Some(decode(&value))),
            Poll::Ready(Some(Err(error))) => {
                self.done = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for HubStream<T> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.inner.command(Command::Cancel {
                id: std::mem::take(&mut self.id),
                bytes: self.cancel.clone(),
            });
        }
    }
}
