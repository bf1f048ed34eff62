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
//! Keep-alive pings are written by the transport's writer when the connection manager's heartbeat
//! finds nothing was sent for the keep-alive interval (see `Outbound::keep_alive_tick`).
//!
//! This file runs the steps in order; `handshake` reads and answers the handshake, `dispatch` handles
//! each received message (an invocation is checked, bound and started in named steps), `admission`
//! applies the rate limits, `stateful` keeps stateful reconnect's sequence numbers and resumes.

mod admission;
mod dispatch;
mod handshake;
mod stateful;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hubcast_backplane::{Interest, PresenceChange};

use hubcast_protocol::handshake::{HANDSHAKE_OK, HandshakeError};
use hubcast_protocol::{
    Arguments, HubMessage, MessageReader, Protocol, RawValue, Transport, encode_message,
};
use std::sync::Mutex;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::error;
use super::registry::HubConnection;
use super::streams::ActiveStreams;
use super::{Caller, HubRuntime};
use crate::close::CloseReason;
use crate::connection::{Attachment, Connection, Inbound, InboundEnd, RequestInfo};
use admission::CallLimits;
use handshake::{HandshakeEnd, read_handshake, refuse, transport_formats};
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
        .push(Bytes::from_static(HANDSHAKE_OK))
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
        limits: Mutex::new(CallLimits::new(options)),
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
