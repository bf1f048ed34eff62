//! The hub protocol on one connection, from handshake to close (protocol notes §2, §4):
//!
//! 1. Handshake within the handshake timeout; the reply is `{}` or an error, then close.
//! 2. The connection joins the hub's registry; `on_connected` runs.
//! 3. The receive loop parses messages from the accumulated input and dispatches them. Invocations
//!    take a slot of `maximum_parallel_invocations_per_client`; when none is free the loop waits (and
//!    reads nothing), as .NET does. The client timeout applies only while waiting for input and only after
//!    the client's first Ping, so it is paused during dispatch.
//! 4. At the end the Close message is queued, `on_disconnected` runs and the connection leaves the
//!    registry.
//!
//! Keep-alive pings are written by the transport's writer when it has been idle for the keep-alive
//! interval (see `Outbound::next_batch`).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hubcast_backplane::{Interest, PresenceChange};

use hubcast_protocol::handshake::{self, HandshakeError, HandshakeRequest};
use hubcast_protocol::{
    Arguments, HubMessage, Invocation, MessageReader, Outcome, Protocol, RawValue, Transport,
    encode_message,
};
use std::sync::Mutex;
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use super::BindRequest;
use super::context::Caller;
use super::context::InvocationScope;
use super::error::{self, BindingError};
use super::handler::Bound;
use super::limits::Bucket;
use super::params::{Binder, UploadItem};
use super::registry::HubConnection;
use super::runtime::HubRuntime;
use super::streams::{self, ActiveStreams, StreamSink};
use crate::close::CloseReason;
use crate::connection::{Attachment, Connection, Inbound, InboundEnd, RequestInfo};
use hubcast_protocol::stateful::{ReceivedSequence, ReplayBuffer};

/// Everything one session needs, borrowed by its steps.
struct Session {
    hub: Arc<HubRuntime>,
    connection: Arc<Connection>,
    hub_connection: Arc<HubConnection>,
    caller: Arc<Caller>,
    protocol: Protocol,
    /// Parallel-invocation slots (`maximum_parallel_invocations_per_client`).
    slots: Arc<Semaphore>,
    streams: Arc<ActiveStreams>,
    /// Cancelled when the connection ends: the parent of every invocation's cancellation.
    lifetime: CancellationToken,
    /// Stateful reconnect's count of received sequenced messages, when it is on.
    sequence: Option<Mutex<ReceivedSequence>>,
    /// Invocation rate limits of this connection.
    limits: Mutex<CallLimits>,
}

/// Token buckets of one connection: the hub's, and per method.
#[derive(Debug, Default)]
struct CallLimits {
    hub: Option<Bucket>,
    methods: std::collections::HashMap<String, Bucket>,
    refused_in_a_row: u32,
}

/// What the rate limits say about a call.
enum Admission {
    Admitted,
    Refused,
    /// Refused too many times in a row: the connection closes.
    Abusive,
}

pub(super) async fn run(hub: Arc<HubRuntime>, connection: Arc<Connection>, mut inbound: Inbound) {
    let shared = hub.shared.clone();
    let options = &shared.options;
    let transport = match connection.attachment() {
        Attachment::WebSocket => Transport::WebSockets,
        Attachment::ServerSentEvents => Transport::ServerSentEvents,
        Attachment::LongPolling { .. } | Attachment::None => Transport::LongPolling,
    };

    let handshake = tokio::select! {
        _ = connection.abort.cancelled() => {
            connection.outbound.finish(None, false);
            return;
        }
        result = tokio::time::timeout(
            options.handshake_timeout,
            read_handshake(&connection, &mut inbound, options.max_message_size()),
        ) => result,
    };
    let (request, rest) = match handshake {
        Ok(Ok(done)) => done,
        Ok(Err(HandshakeEnd::Transport(end))) => {
            tracing::debug!(connection_id = %connection.id, ?end, "transport ended during handshake");
            connection.outbound.finish(None, false);
            return;
        }
        Ok(Err(HandshakeEnd::Refused(error))) => {
            return refuse(&hub, &connection, &error, options.enable_detailed_errors);
        }
        Err(_elapsed) => return refuse(&hub, &connection, &HandshakeError::Canceled, false),
    };
    let protocol = match request.select(&options.supported_protocols, transport_formats(transport))
    {
        Ok(protocol) => protocol,
        Err(error) => return refuse(&hub, &connection, &error, options.enable_detailed_errors),
    };
    connection.set_binary(protocol == Protocol::MessagePack);
    if connection
        .outbound
        .push(Bytes::from_static(handshake::HANDSHAKE_OK))
        .is_err()
    {
        return;
    }
    if transport != Transport::LongPolling {
        connection.set_keep_alive(
            hubcast_protocol::ping(protocol),
            options.keep_alive_interval,
        );
    }

    let caller = Arc::new(Caller {
        connection_id: connection.id.clone(),
        user: connection.user().cloned(),
        request: connection
            .request()
            .unwrap_or_else(|| Arc::new(RequestInfo::empty())),
        transport,
        protocol,
    });
    // Stateful reconnect: negotiated, asked for with handshake version 2, and over WebSockets.
    let stateful = transport == Transport::WebSockets
        && connection.stateful_negotiated()
        && request.version >= 2;
    connection.set_resumable(stateful);
    let hub_connection = Arc::new(HubConnection::new(
        connection.id.clone(),
        caller.user.as_ref().map(|u| u.id.clone()),
        protocol,
        connection.clone(),
        stateful.then(|| ReplayBuffer::new(options.stateful_reconnect_buffer_size)),
    ));
    let session = Session {
        slots: Arc::new(Semaphore::new(
            options.maximum_parallel_invocations_per_client,
        )),
        hub,
        connection,
        hub_connection,
        caller,
        protocol,
        streams: Arc::new(ActiveStreams::default()),
        lifetime: CancellationToken::new(),
        sequence: stateful.then(|| Mutex::new(ReceivedSequence::default())),
        limits: Mutex::new(CallLimits {
            hub: (options.invocation_rate > 0.0)
                .then(|| Bucket::new(options.invocation_rate, options.invocation_burst)),
            ..CallLimits::default()
        }),
    };
    let reader = MessageReader::with_buffer(protocol, options.max_message_size(), rest);
    let reason = session.connected(reader, &mut inbound).await;
    let transport_lost = reason == CloseReason::TransportLost;
    session.disconnected(reason).await;
    if transport == Transport::WebSockets && !transport_lost && inbound.may_continue() {
        // Let the client finish the WebSocket close handshake before the socket is dropped.
        let drain = async { while inbound.next(&session.connection).await.is_ok() {} };
        let _ = tokio::time::timeout(options.websocket_close_timeout, drain).await;
    }
}

/// How the handshake read ended without a request.
enum HandshakeEnd {
    Transport(InboundEnd),
    Refused(HandshakeError),
}

async fn read_handshake(
    connection: &Connection,
    inbound: &mut Inbound,
    max: Option<usize>,
) -> Result<(HandshakeRequest, BytesMut), HandshakeEnd> {
    let mut buf = BytesMut::new();
    loop {
        let (chunk, _) = inbound
            .next(connection)
            .await
            .map_err(HandshakeEnd::Transport)?;
        buf.extend_from_slice(&chunk);
        if let Some(request) =
            handshake::parse_request(&mut buf, max).map_err(HandshakeEnd::Refused)?
        {
            return Ok((request, buf));
        }
    }
}

/// Sends a handshake error reply and ends the connection.
fn refuse(hub: &HubRuntime, connection: &Connection, error: &HandshakeError, detailed: bool) {
    hub.shared.metrics.handshake_failures.inc();
    tracing::debug!(connection_id = %connection.id, %error, "handshake refused");
    let text = if detailed {
        error.detailed()
    } else {
        error.to_string()
    };
    connection
        .outbound
        .finish(Some(Bytes::from(handshake::encode_error(&text))), false);
}

fn transport_formats(transport: Transport) -> &'static [hubcast_protocol::TransferFormat] {
    transport.transfer_formats()
}

impl Session {
    /// Registers the connection, runs `on_connected`, then the receive loop; returns why it ended.
    async fn connected(&self, mut reader: MessageReader, inbound: &mut Inbound) -> CloseReason {
        let shared = &self.hub.shared;
        if shared.registry.add(self.hub_connection.clone())
            && let Some(user) = &self.hub_connection.user
        {
            shared.interest(Interest::User(user.clone()), true).await;
        }
        shared
            .presence(PresenceChange::Connected(self.hub_connection.member()))
            .await;
        let transport = self.caller.transport.name();
        self.hub
            .shared
            .metrics
            .connects
            .with_label_values(&[&*shared.name, transport])
            .inc();
        self.connection_gauge().inc();
        let connected = error::catch_panic(
            self.hub.app.on_connected(self.caller.clone(), shared),
            "on_connected",
        )
        .await;
        if let Err(error) = connected {
            let detailed = shared.options.enable_detailed_errors;
            let detail = error.detail(detailed).unwrap_or_default();
            tracing::debug!(connection_id = %self.connection.id, %error, "on_connected failed");
            return CloseReason::ConnectedHandlerFailed(detail);
        }
        self.receive_loop(&mut reader, inbound).await
    }

    async fn receive_loop(&self, reader: &mut MessageReader, inbound: &mut Inbound) -> CloseReason {
        let options = &self.hub.shared.options;
        let mut client_pinged = false;
        // Only stateful connections acknowledge (and pay for a timer).
        let mut acks = self
            .sequence
            .as_ref()
            .map(|_| tokio::time::interval(Duration::from_secs(1)));
        let expires = self
            .caller
            .user
            .as_ref()
            .and_then(|user| user.expires_at)
            .filter(|_| options.close_on_authentication_expiration);
        loop {
            loop {
                match reader.next_message() {
                    Ok(Some(message)) => {
                        if let Some(reason) = self.dispatch(message, &mut client_pinged).await {
                            return reason;
                        }
                        // A frame of thousands of records must not keep the writer (and every
                        // other task of this worker) waiting until it is all processed.
                        tokio::task::consume_budget().await;
                    }
                    Ok(None) => break,
                    Err(error) => return CloseReason::ProtocolError(error.to_string()),
                }
            }
            let timeout = (client_pinged && self.caller.transport != Transport::LongPolling)
                .then_some(options.client_timeout_interval);
            let resumable = self.sequence.is_some() && self.connection.is_resumable();
            tokio::select! {
                biased;
                _ = self.connection.abort.cancelled() => return self.aborted(),
                _ = expiry(expires), if expires.is_some() => return CloseReason::AuthenticationExpired,
                _ = self.connection.lost.notified(), if resumable => {
                    if self.connection.take_lost() && !self.resume(reader, inbound).await {
                        return CloseReason::TransportLost;
                    }
                }
                _ = tick(&mut acks), if resumable => self.send_ack(),
                read = with_timeout(timeout, inbound.next(&self.connection)) => match read {
                    None => return CloseReason::ClientTimeout,
                    Some(Ok((chunk, _))) => {
                        self.hub.shared.metrics.bytes_in.inc_by(chunk.len() as u64);
                        reader.push(&chunk)
                    }
                    Some(Err(InboundEnd::Failed(detail))) if resumable => {
                        tracing::debug!(connection_id = %self.connection.id, %detail, "socket lost; waiting for a stateful reconnect");
                        if !self.resume(reader, inbound).await {
                            return CloseReason::TransportLost;
                        }
                    }
                    Some(Err(end)) => return end.close_reason(),
                },
            }
        }
    }

    /// Waits (at most the disconnect timeout) for the client's next WebSocket, then replays what it
    /// has not acknowledged after a `Sequence`. False when it did not come back or cannot be resumed.
    async fn resume(&self, reader: &mut MessageReader, inbound: &mut Inbound) -> bool {
        let options = &self.hub.shared.options;
        self.connection.take_lost();
        let (slot, socket) = oneshot::channel();
        self.connection.await_socket(slot);
        self.connection.stop_writer();
        let socket = tokio::select! {
            _ = self.connection.abort.cancelled() => return false,
            socket = tokio::time::timeout(options.disconnect_timeout, socket) => match socket {
                Ok(Ok(socket)) => socket,
                _ => return false,
            },
        };
        let naming = options.json_naming_policy;
        let replayed = self.hub_connection.replay_after_reconnect(|first| {
            let message: HubMessage<Arguments, RawValue> = HubMessage::Sequence(first);
            encode_message(self.protocol, &message, naming).ok()
        });
        if replayed.is_none() {
            tracing::debug!(connection_id = %self.connection.id, "messages were lost to the replay bound: not resuming");
            return false;
        }
        // Bytes of a message cut off by the drop are useless; the client resends whole messages.
        *reader = MessageReader::new(self.protocol, options.max_message_size());
        *inbound = Inbound::websocket(socket(&self.connection));
        // Whatever the old socket reported while going away is handled.
        self.connection.take_lost();
        tracing::debug!(connection_id = %self.connection.id, "resumed after a stateful reconnect");
        true
    }

    fn received(&self) -> Option<std::sync::MutexGuard<'_, ReceivedSequence>> {
        self.sequence
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Acknowledges what was received since the last Ack (every second).
    fn send_ack(&self) {
        let Some(id) = self.received().and_then(|mut received| received.ack_due()) else {
            return;
        };
        let message: HubMessage<Arguments, RawValue> = HubMessage::Ack(id);
        if let Ok(bytes) = encode_message(
            self.protocol,
            &message,
            self.hub.shared.options.json_naming_policy,
        ) {
            let _ = self.connection.outbound.push(bytes);
        }
    }

    /// Counts a received sequenced message; false for a duplicate resent after a reconnect.
    fn first_time(&self) -> bool {
        self.received()
            .is_none_or(|mut received| received.first_time())
    }

    fn aborted(&self) -> CloseReason {
        self.connection
            .close_reason()
            .unwrap_or(CloseReason::ServerShutdown)
    }

    /// The gauge of open connections of this hub, transport and protocol.
    fn connection_gauge(&self) -> prometheus::IntGauge {
        let labels = [
            &*self.hub.shared.name,
            self.caller.transport.name(),
            self.protocol.name(),
        ];
        self.hub
            .shared
            .metrics
            .connections
            .with_label_values(&labels)
    }

    /// Handles one message; `Some` ends the connection.
    async fn dispatch(&self, message: HubMessage, client_pinged: &mut bool) -> Option<CloseReason> {
        let counters = &self.hub.shared.metrics.messages_in;
        if let Some(counter) = counters.get(crate::metrics::message_type(&message)) {
            counter.inc();
        }
        if message.is_sequenced() && !self.first_time() {
            return None;
        }
        match message {
            HubMessage::Invocation(invocation) => return self.invoke(invocation, false).await,
            HubMessage::StreamInvocation(invocation) => return self.invoke(invocation, true).await,
            HubMessage::StreamItem(item) => {
                return self.upload_item(&item.invocation_id, Ok(item.item)).await;
            }
            HubMessage::Completion(completion) => {
                let id = completion.invocation_id;
                if let Some(sender) = self.streams.upload(&id) {
                    // The end of an upload stream; an error reaches the method as a HubException.
                    if let Outcome::Error(error) = completion.outcome {
                        let _ = sender.send(Err(error)).await;
                    }
                    self.streams.end_upload(&id);
                } else if !self.hub_connection.complete_result(&id, completion.outcome) {
                    tracing::debug!(connection_id = %self.connection.id, "completion for an unknown invocation ignored");
                }
            }
            HubMessage::CancelInvocation(cancel) => {
                self.streams.cancel(&cancel.invocation_id);
            }
            HubMessage::Ping => *client_pinged = true,
            HubMessage::Close(close) => {
                tracing::debug!(connection_id = %self.connection.id, error = ?close.error, "client sent Close");
                return Some(CloseReason::ClientClosed);
            }
            HubMessage::Ack(id) => self.hub_connection.acknowledge(id),
            HubMessage::Sequence(id) => {
                if let Some(Err(error)) = self.received().map(|mut r| r.sequence(id)) {
                    return Some(CloseReason::ProtocolError(error.into()));
                }
            }
        }
        None
    }

    /// Feeds an upload stream, waiting while its buffer is full (which pauses this receive loop).
    async fn upload_item(&self, id: &str, item: UploadItem) -> Option<CloseReason> {
        let sender = self.streams.upload(id)?;
        tokio::select! {
            _ = self.connection.abort.cancelled() => return Some(self.aborted()),
            sent = sender.send(item) => {
                if sent.is_err() {
                    // The method stopped reading: later items are dropped.
                    self.streams.end_upload(id);
                }
            }
        }
        None
    }

    async fn invoke(&self, invocation: Invocation, streaming_call: bool) -> Option<CloseReason> {
        let shared = &self.hub.shared;
        let options = &shared.options;
        let detailed = options.enable_detailed_errors;
        let Invocation {
            invocation_id,
            target,
            arguments,
            stream_ids,
            ..
        } = invocation;
        // Boxed: the receive loop's future lives as long as the connection, and an inline reply
        // future at each refusal would grow it for every idle connection.
        let fail = |text: String| Box::pin(self.fail(invocation_id.as_deref(), text));
        let key = target.to_lowercase();
        let hub_name = self.hub.shared.name.clone();
        let method: Arc<str> = if self.hub.app.is_declared(&key) {
            Arc::from(key.as_str())
        } else {
            Arc::from("(undeclared)")
        };
        let count = |outcome: &str| {
            self.hub
                .shared
                .metrics
                .invocations
                .with_label_values(&[&*hub_name, &*method, outcome])
                .inc();
        };
        match self.hub.app.is_streaming(&key) {
            None => {
                count("unknown_method");
                fail(error::unknown_method(&target)).await;
                return None;
            }
            Some(true) if !streaming_call => {
                fail(error::streaming_needs_stream_invocation(&target)).await;
                return None;
            }
            Some(false) if streaming_call => {
                fail(error::not_streaming(&target)).await;
                return None;
            }
            Some(_) => {}
        }
        if !self.hub.app.authorized(&key, self.caller.user.as_ref()) {
            count("unauthorized");
            fail(error::unauthorized(&target)).await;
            return None;
        }
        let admission = self.admit(&key).await;
        if !matches!(admission, Admission::Admitted) {
            count("rate_limited");
            self.hub.shared.metrics.rate_limited.inc();
        }
        match admission {
            Admission::Admitted => {}
            Admission::Refused => {
                fail(error::rate_limited(&target)).await;
                return None;
            }
            Admission::Abusive => return Some(CloseReason::RateLimited),
        }
        if let Some(id) = invocation_id.as_deref().filter(|_| streaming_call)
            && self.streams.in_use(id)
        {
            fail(error::binding_failed(
                &target,
                &BindingError::IdInUse(id.to_owned()),
                detailed,
            ))
            .await;
            return None;
        }
        let scope = Arc::new(InvocationScope::new(
            self.lifetime.child_token(),
            Some(self.slots.clone()),
        ));
        let in_use = |id: &str| self.streams.in_use(id);
        let mut binder = Binder::new(
            &arguments.0,
            &stream_ids,
            &in_use,
            options.stream_buffer_capacity,
        );
        let bound = self.hub.app.bind(BindRequest {
            caller: self.caller.clone(),
            shared,
            key: &key,
            target: &target,
            binder: &mut binder,
            protocol: self.protocol,
            naming: options.json_naming_policy,
            scope: scope.clone(),
        });
        let bound = match bound {
            None => {
                fail(error::unknown_method(&target)).await;
                return None;
            }
            Some(Err(binding)) => {
                count("binding_failed");
                fail(error::binding_failed(&target, &binding, detailed)).await;
                return None;
            }
            Some(Ok(bound)) => bound,
        };
        self.streams.add_uploads(binder.into_opened());
        match bound {
            // Streams take no invocation slot.
            Bound::Stream(stream) => {
                // A StreamInvocation always has an id (the codec requires it).
                count("stream");
                let id = invocation_id?;
                let items = match streams::start(stream, &target, detailed).await {
                    Ok(items) => items,
                    Err(text) => {
                        Box::pin(self.complete(id, Outcome::Error(text))).await;
                        return None;
                    }
                };
                self.streams.start_server(id.clone(), scope.cancel.clone());
                tokio::spawn(streams::forward(
                    items,
                    self.sink(),
                    self.streams.clone(),
                    id,
                    scope.cancel.clone(),
                ));
            }
            Bound::Call(call) => {
                // Methods fed by upload streams take no slot either: they wait on this loop for items.
                if stream_ids.is_empty() {
                    let slot = tokio::select! {
                        _ = self.connection.abort.cancelled() => return Some(self.aborted()),
                        slot = self.slots.clone().acquire_owned() => slot.ok()?,
                    };
                    scope.hold(slot);
                }
                let sink = self.sink();
                let started = std::time::Instant::now();
                let seconds = self.hub.shared.metrics.invocation_seconds.clone();
                let invocations = self.hub.shared.metrics.invocations.clone();
                tokio::spawn(async move {
                    let result = error::catch_panic(call, "the hub method").await;
                    seconds.observe(started.elapsed().as_secs_f64());
                    let outcome = if result.is_ok() { "ok" } else { "error" };
                    invocations
                        .with_label_values(&[&*hub_name, &*method, outcome])
                        .inc();
                    if let Some(id) = invocation_id {
                        let outcome = match result {
                            Ok(value) => Outcome::Result(value),
                            Err(error) => Outcome::Error(error::invocation_failed(
                                &target,
                                &error,
                                sink.detailed,
                            )),
                        };
                        // The slot is held until the reply is queued: a caller that does not read its
                        // replies stops its own receive loop (at the next invocation), not the server.
                        sink.complete(id, outcome).await;
                    }
                    scope.release();
                });
            }
        }
        None
    }

    /// Takes a token of the hub's bucket and the method's, if they have them.
    /// `key` is the lower-cased method name.
    async fn admit(&self, key: &str) -> Admission {
        let shared = &self.hub.shared;
        let options = &shared.options;
        let per_method = self.hub.app.rate_limit(key);
        let user_ok = match self
            .caller
            .user
            .as_ref()
            .filter(|_| options.user_invocation_rate > 0.0)
        {
            Some(user) => {
                let key = format!("{}:{}", shared.name, user.id);
                shared
                    .limiter
                    .try_acquire(
                        &key,
                        options.user_invocation_rate,
                        options.user_invocation_burst,
                    )
                    .await
            }
            None => true,
        };
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        if user_ok && limits.hub.is_none() && per_method.is_none() {
            return Admission::Admitted;
        }
        let now = std::time::Instant::now();
        let hub_ok = user_ok
            && limits
                .hub
                .as_mut()
                .is_none_or(|bucket| bucket.try_take(now));
        let method_ok = per_method.is_none_or(|(rate, burst)| {
            limits
                .methods
                .entry(key.to_owned())
                .or_insert_with(|| Bucket::new(rate, burst))
                .try_take(now)
        });
        if hub_ok && method_ok {
            limits.refused_in_a_row = 0;
            return Admission::Admitted;
        }
        limits.refused_in_a_row += 1;
        let close_after = options.close_after_rate_limited;
        if close_after > 0 && limits.refused_in_a_row >= close_after {
            Admission::Abusive
        } else {
            Admission::Refused
        }
    }

    fn sink(&self) -> StreamSink {
        let options = &self.hub.shared.options;
        StreamSink {
            connection: self.hub_connection.clone(),
            protocol: self.protocol,
            naming: options.json_naming_policy,
            detailed: options.enable_detailed_errors,
        }
    }

    /// Queues a Completion for the caller, waiting for room in its queue.
    async fn complete(&self, invocation_id: String, outcome: Outcome) {
        self.sink().complete(invocation_id, outcome).await;
    }

    /// Answers a refused invocation with its error, if it expects an answer.
    async fn fail(&self, invocation_id: Option<&str>, text: String) {
        if let Some(id) = invocation_id {
            self.complete(id.to_owned(), Outcome::Error(text)).await;
        }
    }

    /// Sends the Close, runs `on_disconnected` and leaves the registry.
    async fn disconnected(&self, reason: CloseReason) {
        let shared = &self.hub.shared;
        let detailed = shared.options.enable_detailed_errors;
        tracing::debug!(connection_id = %self.connection.id, reason = reason.label(), "connection closing");
        let close = reason.close_message(detailed);
        let bytes = close.as_ref().and_then(|close| {
            let message: HubMessage<Arguments, RawValue> = HubMessage::Close(close.clone());
            encode_message(self.protocol, &message, shared.options.json_naming_policy).ok()
        });
        self.connection
            .set_websocket_close_code(reason.websocket_code());
        self.connection
            .outbound
            .finish(bytes, reason == CloseReason::SlowConsumer);
        self.lifetime.cancel();
        self.streams.close_all();
        self.hub_connection.abandon_results();
        let error = close.and_then(|c| c.error);
        let disconnected = self
            .hub
            .app
            .on_disconnected(self.caller.clone(), shared, error);
        let run = async move {
            disconnected.await;
            Ok(())
        };
        let _ = error::catch_panic(run, "on_disconnected").await;
        let removed = shared.registry.remove(&self.connection.id);
        self.connection_gauge().dec();
        self.hub
            .shared
            .metrics
            .disconnects
            .with_label_values(&[&*shared.name, reason.label()])
            .inc();
        shared
            .presence(PresenceChange::Disconnected(self.hub_connection.member()))
            .await;
        for group in removed.empty_groups {
            shared.interest(Interest::Group(group), false).await;
        }
        if removed.last_of_user
            && let Some(user) = &self.hub_connection.user
        {
            shared.interest(Interest::User(user.clone()), false).await;
        }
    }
}

/// Resolves when `expires_at` (seconds since the Unix epoch) has passed; never without one.
async fn expiry(expires_at: Option<u64>) {
    let Some(expires_at) = expires_at else {
        return std::future::pending().await;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(expires_at.saturating_sub(now))).await;
}

/// The next tick of an optional interval (never, without one).
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Awaits `future`, giving up after `limit` when one is given (`None` = timed out).
async fn with_timeout<F: std::future::Future>(
    limit: Option<Duration>,
    future: F,
) -> Option<F::Output> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}
