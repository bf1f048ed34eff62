//! The connection's driver: [`connect`] (negotiate with redirects, transport fallback, handshake) and
//! one task per started connection that owns the transport, parses what arrives, completes pending
//! calls, runs handlers, keeps the connection alive, and on loss resumes it (stateful reconnect) or
//! reconnects it (automatic reconnect) or closes it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use hubcast_protocol::handshake::{HandshakeResponse, parse_response};
use hubcast_protocol::{
    Completion, HandshakeRequest, Headers, HubMessage, Invocation, MessageReader,
    NegotiateResponse, Outcome, Protocol, RawValue, StreamItem, TransferFormat, Transport,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::builder::{Config, RetryContext};
use crate::connection::{Command, HubConnectionState, Inner, lock};
use crate::error::{Error, Result};
use crate::http::{HubUrl, status_error};
use crate::stateful::{Received, Stateful};
use crate::transport::{self, Incoming, Link, Target};

/// A connected transport that has completed the handshake.
pub(crate) struct Session {
    link: Link,
    connection_id: Option<String>,
    /// The connection token, kept for a stateful resume.
    token: Option<String>,
    /// The URL after redirects.
    url: HubUrl,
    access_token: Option<String>,
    stateful: bool,
    /// Bytes that arrived right behind the handshake response.
    leftover: Bytes,
}

/// How many negotiate redirects are followed (as the JS client).
const MAX_REDIRECTS: usize = 100;
const ACK_INTERVAL: Duration = Duration::from_secs(1);
const INVOCATION_CANCELED_NO_RESULT: &str = "Client didn't provide a result.";

/// Negotiates (following redirects), opens the first transport that works in the server's order,
/// and completes the handshake.
pub(crate) async fn connect(config: &Config) -> Result<Session> {
    let mut access_token = match &config.token {
        Some(factory) => Some(factory().await?),
        None => None,
    };
    let mut url = config.url.clone();
    if config.skip_negotiation {
        let link = open(
            config,
            Transport::WebSockets,
            &url,
            None,
            access_token.as_deref(),
        )
        .await?;
        return handshake(config, link, false, None, None, url, access_token).await;
    }
    let mut negotiated = None;
    for _ in 0..MAX_REDIRECTS {
        let response = negotiate(config, &url, access_token.as_deref()).await?;
        let Some(redirect) = response.url else {
            negotiated = Some(response);
            break;
        };
        url = HubUrl::parse(&redirect)?;
        if let Some(token) = response.access_token {
            access_token = Some(token);
        }
    }
    let mut negotiated =
        Some(negotiated.ok_or_else(|| Error::Negotiate("too many redirects".to_owned()))?);
    let offered: Vec<Transport> = negotiated
        .as_ref()
        .and_then(|n| n.available_transports.as_ref())
        .map(|list| {
            list.iter()
                .filter(|t| {
                    t.transfer_formats
                        .iter()
                        .any(|f| f == format_name(config.protocol))
                })
                .filter_map(|t| Transport::from_name(&t.transport))
                .filter(|t| config.transports.contains(t))
                .collect()
        })
        .unwrap_or_default();
    let mut failures = Vec::new();
    for kind in offered {
        // A transport that failed to start leaves a dead connection behind: negotiate a new one.
        let response = match negotiated.take() {
            Some(response) => response,
            None => negotiate(config, &url, access_token.as_deref()).await?,
        };
        let Some(token) = response.connection_token.or(response.connection_id.clone()) else {
            return Err(Error::Negotiate(
                "no connection id in the response".to_owned(),
            ));
        };
        if response.use_stateful_reconnect && !config.stateful {
            return Err(Error::Negotiate(
                "Client didn't negotiate Stateful Reconnect but the server did.".to_owned(),
            ));
        }
        let stateful = response.use_stateful_reconnect && kind == Transport::WebSockets;
        match open(config, kind, &url, Some(&token), access_token.as_deref()).await {
            Ok(link) => {
                return handshake(
                    config,
                    link,
                    stateful,
                    response.connection_id,
                    Some(token),
                    url,
                    access_token,
                )
                .await;
            }
            Err(error) => {
                tracing::debug!(transport = %kind, %error, "transport failed to start");
                failures.push(format!("{kind}: {error}"));
            }
        }
    }
    if failures.is_empty() {
        failures.push("the server offers no transport this client may use".to_owned());
    }
    Err(Error::NoTransport(failures))
}

fn format_name(protocol: Protocol) -> &'static str {
    match protocol.transfer_format() {
        TransferFormat::Text => "Text",
        TransferFormat::Binary => "Binary",
    }
}

async fn negotiate(
    config: &Config,
    url: &HubUrl,
    access_token: Option<&str>,
) -> Result<NegotiateResponse> {
    let (status, body) = config
        .http
        .fetch(
            Method::POST,
            &url.negotiate(config.stateful),
            access_token,
            Bytes::new(),
        )
        .await?;
    if status != StatusCode::OK {
        return Err(status_error(status, &body));
    }
    let response = NegotiateResponse::from_json(&body)
        .map_err(|e| Error::Negotiate(format!("unreadable response: {e}")))?;
    if let Some(error) = response.error {
        return Err(Error::Negotiate(error));
    }
    Ok(response)
}

async fn open(
    config: &Config,
    kind: Transport,
    url: &HubUrl,
    token: Option<&str>,
    access_token: Option<&str>,
) -> Result<Link> {
    transport::open(
        kind,
        Target {
            http: &config.http,
            url,
            token,
            access_token,
            binary: config.protocol == Protocol::MessagePack,
        },
    )
    .await
}

async fn handshake(
    config: &Config,
    mut link: Link,
    stateful: bool,
    connection_id: Option<String>,
    token: Option<String>,
    url: HubUrl,
    access_token: Option<String>,
) -> Result<Session> {
    let request = HandshakeRequest {
        protocol: config.protocol.name().to_owned(),
        version: if stateful { 2 } else { 1 },
    };
    link.send(Bytes::from(request.encode()));
    let reply = tokio::time::timeout(config.handshake_timeout, async {
        let mut buffer = BytesMut::new();
        loop {
            match link.incoming.recv().await {
                Some(Incoming::Data(bytes)) => buffer.extend_from_slice(&bytes),
                Some(Incoming::Closed { error, .. }) => {
                    return Err(Error::Handshake(
                        error.unwrap_or_else(|| "the server closed the connection".to_owned()),
                    ));
                }
                None => return Err(Error::Handshake("the transport ended".to_owned())),
            }
            match parse_response(&mut buffer) {
                Ok(Some(HandshakeResponse::Ok)) => return Ok(buffer.freeze()),
                Ok(Some(HandshakeResponse::Error(error))) => return Err(Error::Handshake(error)),
                Ok(None) => {}
                Err(error) => return Err(Error::Handshake(error.to_string())),
            }
        }
    })
    .await
    .map_err(|_| {
        Error::Handshake("Server timeout elapsed while waiting for the handshake.".to_owned())
    })?;
    match reply {
        Ok(leftover) => Ok(Session {
            link,
            connection_id,
            token,
            url,
            access_token,
            stateful,
            leftover,
        }),
        Err(error) => {
            link.close().await;
            Err(error)
        }
    }
}

/// Starts the driver task of a freshly connected session.
pub(crate) fn spawn(inner: Arc<Inner>, session: Session) {
    let (commands, receiver) = mpsc::unbounded_channel();
    *lock(&inner.commands) = Some(commands.clone());
    let mut driver = Driver {
        inner,
        own: commands,
        commands: receiver,
        reader: MessageReader::new(Protocol::Json, None),
        session,
        pending: HashMap::new(),
        stateful: None,
        last_sent: Instant::now(),
        last_received: Instant::now(),
    };
    driver.install_session();
    tokio::spawn(driver.run());
}

enum Pending {
    Invoke(oneshot::Sender<Result<RawValue>>),
    Stream(mpsc::UnboundedSender<Result<RawValue>>),
}

/// Why serving a session ended.
enum End {
    Stop(oneshot::Sender<()>),
    Lost {
        error: Error,
        /// Whether a stateful resume may be tried.
        resumable: bool,
        /// Whether automatic reconnect may run.
        reconnect: bool,
    },
}

struct Driver {
    inner: Arc<Inner>,
    /// For handler tasks that answer client results.
    own: mpsc::UnboundedSender<Command>,
    commands: mpsc::UnboundedReceiver<Command>,
    reader: MessageReader,
    session: Session,
    pending: HashMap<String, Pending>,
    stateful: Option<Stateful>,
    last_sent: Instant,
    last_received: Instant,
}

impl Driver {
    fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Takes over a new session: fresh parser and stateful state, the id, state `Connected`.
    fn install_session(&mut self) {
        self.reader = MessageReader::new(self.config().protocol, None);
        self.reader.push(&self.session.leftover);
        self.stateful = self
            .session
            .stateful
            .then(|| Stateful::new(self.config().stateful_buffer));
        *lock(&self.inner.connection_id) = self.session.connection_id.clone();
        self.last_received = Instant::now();
        // The official clients ping right after the handshake.
        self.write(hubcast_protocol::ping(self.config().protocol));
        self.inner.set_state(HubConnectionState::Connected);
    }

    async fn run(mut self) {
        loop {
            let (error, resumable, reconnect) = match self.serve().await {
                End::Stop(done) => {
                    self.close(None).await;
                    let _ = done.send(());
                    return;
                }
                End::Lost {
                    error,
                    resumable,
                    reconnect,
                } => (error, resumable, reconnect),
            };
            tracing::debug!(%error, "connection lost");
            if resumable && self.resume().await {
                continue;
            }
            self.fail_pending();
            if !reconnect || self.config().reconnect.is_none() {
                self.close(Some(error)).await;
                return;
            }
            match self.reconnect(error).await {
                Ok(()) => {}
                Err(End::Stop(done)) => {
                    self.close(None).await;
                    let _ = done.send(());
                    return;
                }
                Err(End::Lost { error, .. }) => {
                    self.close(Some(error)).await;
                    return;
                }
            }
        }
    }

    /// Serves the session until it ends.
    async fn serve(&mut self) -> End {
        let long_polling = self.session.link.kind == Transport::LongPolling;
        let (keep_alive, server_timeout) = (self.config().keep_alive, self.config().server_timeout);
        let mut acks = tokio::time::interval(ACK_INTERVAL);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Stop { done }) => {
                        let close = HubMessage::<(), ()>::Close(Default::default());
                        if let Ok(bytes) = self.inner.encode(&close) {
                            self.write(bytes);
                        }
                        return End::Stop(done);
                    }
                    Some(command) => self.command(command),
                    // Unreachable while the driver holds a sender itself.
                    None => {}
                },
                event = self.session.link.incoming.recv() => match event {
                    Some(Incoming::Data(bytes)) => {
                        self.last_received = Instant::now();
                        self.reader.push(&bytes);
                        if let Some(end) = self.drain_messages() {
                            return end;
                        }
                    }
                    Some(Incoming::Closed { graceful, error }) => {
                        let error = error.map_or(Error::ConnectionClosed, Error::Transport);
                        return End::Lost { error, resumable: !graceful, reconnect: true };
                    }
                    None => return End::Lost { error: Error::ConnectionClosed, resumable: true, reconnect: true },
                },
                _ = tokio::time::sleep_until(self.last_sent + keep_alive), if !long_polling => {
                    self.write(hubcast_protocol::ping(self.config().protocol));
                }
                _ = tokio::time::sleep_until(self.last_received + server_timeout), if !long_polling => {
                    return End::Lost { error: Error::ServerTimeout, resumable: false, reconnect: true };
                }
                _ = acks.tick(), if self.stateful.is_some() => {
                    if let Some(id) = self.stateful.as_mut().and_then(Stateful::ack_due)
                        && let Ok(bytes) = self.inner.encode(&HubMessage::<(), ()>::Ack(id))
                    {
                        self.write(bytes);
                    }
                }
            }
        }
    }

    /// Writes unsequenced bytes (pings, acks, close).
    fn write(&mut self, bytes: Bytes) {
        self.session.link.send(bytes);
        self.last_sent = Instant::now();
    }

    /// Writes a sequenced hub message, keeping it for a stateful resume.
    fn write_sequenced(&mut self, bytes: Bytes) {
        if let Some(stateful) = &mut self.stateful {
            stateful.sent(&bytes);
        }
        self.write(bytes);
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Send(bytes) => self.write_sequenced(bytes),
            Command::Invoke { id, bytes, reply } => {
                self.pending.insert(id, Pending::Invoke(reply));
                self.write_sequenced(bytes);
            }
            Command::Stream { id, bytes, items } => {
                self.pending.insert(id, Pending::Stream(items));
                self.write_sequenced(bytes);
            }
            Command::Cancel { id, bytes } => {
                if self.pending.remove(&id).is_some() {
                    self.write_sequenced(bytes);
                }
            }
            Command::Stop { done } => {
                let _ = done.send(());
            }
        }
    }

    fn drain_messages(&mut self) -> Option<End> {
        loop {
            match self.reader.next_message() {
                Ok(Some(message)) => {
                    if let Some(end) = self.dispatch(message) {
                        return Some(end);
                    }
                }
                Ok(None) => return None,
                Err(error) => {
                    return Some(End::Lost {
                        error: Error::Protocol(error.to_string()),
                        resumable: false,
                        reconnect: true,
                    });
                }
            }
        }
    }

    fn dispatch(&mut self, message: HubMessage) -> Option<End> {
        if message.is_sequenced()
            && let Some(stateful) = &mut self.stateful
            && stateful.received() == Received::Drop
        {
            return None;
        }
        match message {
            HubMessage::Invocation(invocation) => self.invoked(invocation),
            HubMessage::StreamItem(StreamItem {
                invocation_id,
                item,
                ..
            }) => {
                if let Some(Pending::Stream(items)) = self.pending.get(&invocation_id) {
                    let _ = items.send(Ok(item));
                }
            }
            HubMessage::Completion(Completion {
                invocation_id,
                outcome,
                ..
            }) => match (self.pending.remove(&invocation_id), outcome) {
                (Some(Pending::Invoke(reply)), Outcome::Result(value)) => {
                    let _ = reply.send(Ok(value));
                }
                (Some(Pending::Invoke(reply)), Outcome::Void) => {
                    let _ = reply.send(Ok(RawValue::new(
                        Protocol::Json,
                        Bytes::from_static(b"null"),
                    )));
                }
                (Some(Pending::Invoke(reply)), Outcome::Error(error)) => {
                    let _ = reply.send(Err(Error::Hub(error)));
                }
                (Some(Pending::Stream(items)), Outcome::Error(error)) => {
                    let _ = items.send(Err(Error::Hub(error)));
                }
                (Some(Pending::Stream(_)), _) | (None, _) => {}
            },
            HubMessage::Close(close) => {
                return Some(End::Lost {
                    error: Error::ServerClosed(close.error),
                    resumable: false,
                    reconnect: close.allow_reconnect,
                });
            }
            HubMessage::Ack(id) => {
                if let Some(stateful) = &mut self.stateful {
                    stateful.ack(id);
                }
            }
            HubMessage::Sequence(id) => {
                if let Some(stateful) = &mut self.stateful
                    && let Err(error) = stateful.sequence(id)
                {
                    return Some(End::Lost {
                        error: Error::Protocol(error.to_owned()),
                        resumable: false,
                        reconnect: true,
                    });
                }
            }
            HubMessage::Ping
            | HubMessage::StreamInvocation(_)
            | HubMessage::CancelInvocation(_) => {}
        }
        None
    }

    /// A server-to-client invocation: the `on` handlers, and for a client-result call the `on_invoke`
    /// handler, answered from a task of its own.
    fn invoked(&mut self, invocation: Invocation) {
        let (handlers, result) = self.inner.handlers(&invocation.target);
        for handler in &handlers {
            handler(&invocation.arguments);
        }
        let Some(id) = invocation.invocation_id else {
            if handlers.is_empty() {
                tracing::warn!(method = %invocation.target, "No client method with this name found.");
            }
            return;
        };
        let protocol = self.config().protocol;
        let pending = result.map(|handler| handler(&invocation.arguments, protocol));
        let inner = self.inner.clone();
        let own = self.own.clone();
        tokio::spawn(async move {
            let outcome = match pending {
                Some(answer) => match answer.await {
                    Ok(value) => Outcome::Result(value),
                    Err(error) => Outcome::Error(error),
                },
                None => Outcome::Error(INVOCATION_CANCELED_NO_RESULT.to_owned()),
            };
            let completion = HubMessage::<(), RawValue>::Completion(Completion {
                headers: Headers::new(),
                invocation_id: id,
                outcome,
            });
            if let Ok(bytes) = inner.encode(&completion) {
                let _ = own.send(Command::Send(bytes));
            }
        });
    }

    /// Stateful reconnect: one new WebSocket with the same connection token, no negotiate and no
    /// handshake; then our Sequence and everything unacknowledged.
    async fn resume(&mut self) -> bool {
        let Some(stateful) = &mut self.stateful else {
            return false;
        };
        if !stateful.resumable() {
            return false;
        }
        let (first, replay) = stateful.resume();
        let session = &self.session;
        let opened = open(
            self.config(),
            Transport::WebSockets,
            &session.url,
            session.token.as_deref(),
            session.access_token.as_deref(),
        )
        .await;
        let Ok(link) = opened else {
            return false;
        };
        self.session.link = link;
        self.reader = MessageReader::new(self.config().protocol, None);
        if let Ok(bytes) = self.inner.encode(&HubMessage::<(), ()>::Sequence(first)) {
            self.write(bytes);
        }
        for bytes in replay {
            self.write(bytes);
        }
        self.last_received = Instant::now();
        tracing::debug!("connection resumed (stateful reconnect)");
        true
    }

    fn fail_pending(&mut self) {
        for (_, pending) in self.pending.drain() {
            match pending {
                Pending::Invoke(reply) => {
                    let _ = reply.send(Err(Error::ConnectionClosed));
                }
                Pending::Stream(items) => {
                    let _ = items.send(Err(Error::ConnectionClosed));
                }
            }
        }
    }

    /// Automatic reconnect: waits each delay of the policy and connects anew, until it works, the
    /// policy gives up, or `stop` is called.
    async fn reconnect(&mut self, error: Error) -> Result<(), End> {
        self.inner.set_state(HubConnectionState::Reconnecting);
        self.inner.emit_reconnecting(&error);
        let started = Instant::now();
        let mut context = RetryContext {
            previous_retry_count: 0,
            elapsed: Duration::ZERO,
            reason: error,
        };
        let Some(policy) = self.config().reconnect.clone() else {
            return Err(End::Lost {
                error: context.reason,
                resumable: false,
                reconnect: false,
            });
        };
        loop {
            context.elapsed = started.elapsed();
            let Some(delay) = policy.next_retry_delay(&context) else {
                return Err(End::Lost {
                    error: context.reason,
                    resumable: false,
                    reconnect: false,
                });
            };
            self.while_disconnected(tokio::time::sleep(delay)).await?;
            let config = self.inner.config.clone();
            match self.while_disconnected(connect(&config)).await? {
                Ok(session) => {
                    self.session = session;
                    self.install_session();
                    self.inner.emit_reconnected();
                    return Ok(());
                }
                Err(error) => {
                    tracing::debug!(%error, "reconnect attempt failed");
                    context.previous_retry_count += 1;
                    context.reason = error;
                }
            }
        }
    }

    /// Waits for `work` while refusing calls; a `stop` interrupts it.
    async fn while_disconnected<F: Future>(&mut self, work: F) -> Result<F::Output, End> {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                output = &mut work => return Ok(output),
                Some(command) = self.commands.recv() => match command {
                    Command::Stop { done } => return Err(End::Stop(done)),
                    Command::Invoke { reply, .. } => { let _ = reply.send(Err(Error::NotConnected)); }
                    Command::Stream { items, .. } => { let _ = items.send(Err(Error::NotConnected)); }
                    Command::Send(_) | Command::Cancel { .. } => {}
                },
            }
        }
    }

    /// Ends the connection for good.
    async fn close(&mut self, error: Option<Error>) {
        self.fail_pending();
        self.session.link.close().await;
        lock(&self.inner.commands).take();
        self.inner.set_state(HubConnectionState::Disconnected);
        self.inner.emit_closed(error);
    }
}
