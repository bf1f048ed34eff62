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

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use hubcast_backplane::Interest;
use hubcast_protocol::handshake::{self, HandshakeError, HandshakeRequest};
use hubcast_protocol::{
    Arguments, Completion, Headers, HubMessage, Invocation, MessageReader, Outcome, Protocol,
    RawValue, Transport, encode_message,
};
use tokio::sync::Semaphore;

use super::context::Caller;
use super::error::{self, HubError};
use super::registry::HubConnection;
use super::runtime::HubRuntime;
use crate::close::CloseReason;
use crate::connection::{Attachment, Connection, Inbound, InboundEnd, RequestInfo};
use crate::endpoint::inbound_end_reason;

/// Everything one session needs, borrowed by its steps.
struct Session {
    hub: Arc<HubRuntime>,
    connection: Arc<Connection>,
    hub_connection: Arc<HubConnection>,
    caller: Arc<Caller>,
    protocol: Protocol,
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
            return refuse(&connection, &error, options.enable_detailed_errors);
        }
        Err(_elapsed) => return refuse(&connection, &HandshakeError::Canceled, false),
    };
    let protocol = match request.select(&options.supported_protocols, transport_formats(transport))
    {
        Ok(protocol) => protocol,
        Err(error) => return refuse(&connection, &error, options.enable_detailed_errors),
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
        user: None,
        request: connection
            .request()
            .unwrap_or_else(|| Arc::new(RequestInfo::empty())),
        transport,
        protocol,
    });
    let hub_connection = Arc::new(HubConnection::new(
        connection.id.clone(),
        caller.user.as_ref().map(|u| u.id.clone()),
        protocol,
        connection.clone(),
    ));
    let session = Session {
        hub,
        connection,
        hub_connection,
        caller,
        protocol,
    };
    let reader = MessageReader::with_buffer(protocol, options.max_message_size(), rest);
    let reason = session.connected(reader, &mut inbound).await;
    let transport_lost = reason == CloseReason::TransportLost;
    session.disconnected(reason).await;
    if transport == Transport::WebSockets && !transport_lost {
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
fn refuse(connection: &Connection, error: &HandshakeError, detailed: bool) {
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
            self.subscribe(Interest::User(user.clone())).await;
        }
        self.subscribe(Interest::Connection(self.connection.id.clone()))
            .await;
        let connected = AssertUnwindSafe(self.hub.app.on_connected(self.caller.clone(), shared))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(HubError::internal(
                    "PanicException",
                    "on_connected panicked",
                ))
            });
        if let Err(error) = connected {
            let detailed = shared.options.enable_detailed_errors;
            let detail = error.detail(detailed).unwrap_or_default();
            tracing::debug!(connection_id = %self.connection.id, %error, "on_connected failed");
            return CloseReason::ConnectedHandlerFailed(detail);
        }
        self.receive_loop(&mut reader, inbound).await
    }

    async fn subscribe(&self, interest: Interest) {
        if let Err(error) = self
            .hub
            .shared
            .backplane
            .subscribe(&self.hub.shared.name, interest)
            .await
        {
            tracing::warn!(%error, "backplane subscribe failed");
        }
    }

    async fn unsubscribe(&self, interest: Interest) {
        if let Err(error) = self
            .hub
            .shared
            .backplane
            .unsubscribe(&self.hub.shared.name, interest)
            .await
        {
            tracing::warn!(%error, "backplane unsubscribe failed");
        }
    }

    async fn receive_loop(&self, reader: &mut MessageReader, inbound: &mut Inbound) -> CloseReason {
        let options = &self.hub.shared.options;
        let slots = Arc::new(Semaphore::new(
            options.maximum_parallel_invocations_per_client,
        ));
        let mut client_pinged = false;
        loop {
            loop {
                match reader.next_message() {
                    Ok(Some(message)) => {
                        if let Some(reason) =
                            self.dispatch(message, &slots, &mut client_pinged).await
                        {
                            return reason;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => return CloseReason::ProtocolError(error.to_string()),
                }
            }
            let timeout = (client_pinged && self.caller.transport != Transport::LongPolling)
                .then_some(options.client_timeout_interval);
            tokio::select! {
                biased;
                _ = self.connection.abort.cancelled() => {
                    return self.connection.close_reason().unwrap_or(CloseReason::ServerShutdown);
                }
                read = with_timeout(timeout, inbound.next(&self.connection)) => match read {
                    None => return CloseReason::ClientTimeout,
                    Some(Ok((chunk, _))) => reader.push(&chunk),
                    Some(Err(end)) => return inbound_end_reason(end),
                },
            }
        }
    }

    /// Handles one message; `Some` ends the connection.
    async fn dispatch(
        &self,
        message: HubMessage,
        slots: &Arc<Semaphore>,
        client_pinged: &mut bool,
    ) -> Option<CloseReason> {
        match message {
            HubMessage::Invocation(invocation) => return self.invoke(invocation, slots).await,
            HubMessage::StreamInvocation(invocation) => {
                let target = invocation.target;
                let shared = &self.hub.shared;
                let known = self
                    .hub
                    .app
                    .bind(
                        self.caller.clone(),
                        shared,
                        &target,
                        &Arguments::default(),
                        self.protocol,
                        shared.options.json_naming_policy,
                    )
                    .is_some();
                let text = if known {
                    error::not_streaming(&target)
                } else {
                    error::unknown_method(&target)
                };
                if let Some(id) = invocation.invocation_id {
                    self.complete(id, Outcome::Error(text));
                }
            }
            HubMessage::Ping => *client_pinged = true,
            HubMessage::Close(close) => {
                tracing::debug!(connection_id = %self.connection.id, error = ?close.error, "client sent Close");
                return Some(CloseReason::ClientClosed);
            }
            HubMessage::StreamItem(_)
            | HubMessage::Completion(_)
            | HubMessage::CancelInvocation(_)
            | HubMessage::Ack(_)
            | HubMessage::Sequence(_) => {
                tracing::trace!(connection_id = %self.connection.id, "ignoring a message with no pending invocation");
            }
        }
        None
    }

    async fn invoke(&self, invocation: Invocation, slots: &Arc<Semaphore>) -> Option<CloseReason> {
        let shared = &self.hub.shared;
        let options = &shared.options;
        let Invocation {
            invocation_id,
            target,
            arguments,
            stream_ids,
            ..
        } = invocation;
        let fail = |text: String| {
            if let Some(id) = &invocation_id {
                self.complete(id.clone(), Outcome::Error(text));
            }
        };
        if !stream_ids.is_empty() {
            let error = HubError::new(format!(
                "Client sent {} stream(s), Hub method expects 0.",
                stream_ids.len()
            ));
            fail(error::invocation_failed(
                &target,
                &error,
                options.enable_detailed_errors,
            ));
            return None;
        }
        let bound = self.hub.app.bind(
            self.caller.clone(),
            shared,
            &target,
            &arguments,
            self.protocol,
            options.json_naming_policy,
        );
        let call = match bound {
            None => {
                fail(error::unknown_method(&target));
                return None;
            }
            Some(Err(binding)) => {
                fail(error::binding_failed(
                    &target,
                    &binding,
                    options.enable_detailed_errors,
                ));
                return None;
            }
            Some(Ok(call)) => call,
        };
        let slot = tokio::select! {
            _ = self.connection.abort.cancelled() => {
                return Some(self.connection.close_reason().unwrap_or(CloseReason::ServerShutdown));
            }
            slot = slots.clone().acquire_owned() => slot.ok()?,
        };
        let hub_connection = self.hub_connection.clone();
        let protocol = self.protocol;
        let detailed = options.enable_detailed_errors;
        let naming = options.json_naming_policy;
        tokio::spawn(async move {
            let result = AssertUnwindSafe(call)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(HubError::internal(
                        "PanicException",
                        "the hub method panicked",
                    ))
                });
            drop(slot);
            let Some(id) = invocation_id else { return };
            let outcome = match result {
                Ok(value) => Outcome::Result(value),
                Err(error) => Outcome::Error(error::invocation_failed(&target, &error, detailed)),
            };
            if let Some(bytes) = completion(protocol, naming, id, outcome) {
                hub_connection.push(bytes);
            }
        });
        None
    }

    /// Queues a Completion for the caller.
    fn complete(&self, invocation_id: String, outcome: Outcome) {
        let naming = self.hub.shared.options.json_naming_policy;
        if let Some(bytes) = completion(self.protocol, naming, invocation_id, outcome) {
            self.hub_connection.push(bytes);
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
            .outbound
            .finish(bytes, reason == CloseReason::SlowConsumer);
        let error = close.and_then(|c| c.error);
        let _ = AssertUnwindSafe(
            self.hub
                .app
                .on_disconnected(self.caller.clone(), shared, error),
        )
        .catch_unwind()
        .await;
        let removed = shared.registry.remove(&self.connection.id);
        for group in removed.empty_groups {
            self.unsubscribe(Interest::Group(group)).await;
        }
        if removed.last_of_user
            && let Some(user) = &self.hub_connection.user
        {
            self.unsubscribe(Interest::User(user.clone())).await;
        }
        self.unsubscribe(Interest::Connection(self.connection.id.clone()))
            .await;
    }
}

fn completion(
    protocol: Protocol,
    naming: hubcast_protocol::NamingPolicy,
    invocation_id: String,
    outcome: Outcome,
) -> Option<Bytes> {
    let message: HubMessage<Arguments, RawValue> = HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id,
        outcome,
    });
    match encode_message(protocol, &message, naming) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            tracing::warn!(%error, "failed to encode a completion");
            None
        }
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
