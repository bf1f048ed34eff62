//! Transport-level connections (ASP.NET's `HttpConnectionContext`): created by negotiate (or by a
//! WebSocket without an id), looked up by their secret token on every later request, bound to one
//! transport, and dropped when their application ends or their transport goes away for too long.
//!
//! A connection owns its [`Outbound`] queue and an abort token; the application running on it (a hub
//! session or a raw connection handler) reads from an [`Inbound`] and writes to the queue.

mod inbound;
mod manager;
mod mount;
pub(crate) mod outbound;
mod request;

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hubcast_backplane::ConnectionId;
use hubcast_protocol::Transport;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use inbound::{Inbound, InboundEnd, WsRead};
pub(crate) use manager::{ConnectionManager, heartbeat_period};
pub(crate) use mount::Mount;
pub use outbound::PushError;
pub(crate) use outbound::{Batch, Outbound};
pub use request::RequestInfo;

use crate::close::CloseReason;

/// What is attached to a connection right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attachment {
    /// Negotiated, no transport request yet.
    None,
    /// A WebSocket is open.
    WebSocket,
    /// A Server-Sent Events response is open.
    ServerSentEvents,
    /// Long polling; `polling` tells whether a poll request is waiting now.
    LongPolling { polling: bool, generation: u64 },
}

#[derive(Debug)]
struct TransportState {
    attachment: Attachment,
    /// When the connection last had no transport request attached (for the disconnect timeout).
    idle_since: Option<Instant>,
}

/// The channel POSTed bytes travel through to the application.
enum InboundSlot {
    Unopened,
    /// `receiver` waits here when bytes were POSTed before the transport started the application.
    Open {
        sender: mpsc::Sender<Bytes>,
        receiver: Option<mpsc::Receiver<Bytes>>,
    },
    Closed,
}

/// One transport-level connection.
pub(crate) struct Connection {
    pub(crate) id: ConnectionId,
    /// The user that created it (counted against `max_connections_per_user`).
    pub(crate) owner: Option<hubcast_backplane::UserId>,
    /// The client address that created it (counted against `max_connections_per_ip`).
    pub(crate) address: Option<std::net::IpAddr>,
    pub(crate) token: Arc<str>,
    /// The path it was negotiated on, with its options.
    pub(crate) mount: Arc<Mount>,
    pub(crate) outbound: Outbound,
    /// Cancelled to make the application end (client gone, inactivity, slow consumer, shutdown).
    pub(crate) abort: CancellationToken,
    state: Mutex<TransportState>,
    /// Where POSTed bytes go (SSE and long polling).
    inbound: Mutex<InboundSlot>,
    request: OnceLock<Arc<RequestInfo>>,
    /// The user authenticated by the request that attached the transport.
    user: OnceLock<crate::auth::User>,
    /// WebSocket frames are Binary (MessagePack, or a raw handler writing binary) rather than Text.
    binary: AtomicBool,
    /// The code of the WebSocket close frame (1000 unless the client broke the protocol).
    websocket_close_code: AtomicU16,
    /// Why the connection is being closed, set once by whoever closes it first.
    close_reason: OnceLock<CloseReason>,
    /// The framed Ping and its period, once a hub handshake has chosen the protocol.
    keep_alive: OnceLock<(Bytes, Duration)>,
    /// Signalled when a new long poll supersedes the waiting one.
    pub(crate) poll_changed: Notify,
    /// Stateful reconnect was negotiated (`useStatefulReconnect`, allowed by the hub).
    stateful_negotiated: AtomicBool,
    /// The session runs stateful reconnect: a lost WebSocket may be replaced by the client's next one.
    resumable: AtomicBool,
    /// Signalled when the WebSocket is lost or replaced while resumable; `lost_flag` says it really was.
    pub(crate) lost: Notify,
    lost_flag: AtomicBool,
    /// While the session waits for the client to come back, where the new WebSocket goes.
    resume_slot: Mutex<Option<oneshot::Sender<Resumed>>>,
    /// The current WebSocket writer and what stops it.
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// A reconnecting client's socket, handed to the session that waits for it: calling it starts the
/// socket's writer on the connection and returns its read half. The transport layer makes it, so the
/// session resumes without naming the transport.
pub(crate) type Resumed = Box<dyn FnOnce(&Arc<Connection>) -> Box<WsRead> + Send>;

impl Connection {
    pub(crate) fn new(
        id: ConnectionId,
        token: Arc<str>,
        mount: Arc<Mount>,
        owner: Option<hubcast_backplane::UserId>,
        address: Option<std::net::IpAddr>,
    ) -> Self {
        let limit = mount.options.transport_max_buffer_size;
        Self {
            id,
            owner,
            address,
            token,
            mount,
            outbound: Outbound::new(limit),
            abort: CancellationToken::new(),
            state: Mutex::new(TransportState {
                attachment: Attachment::None,
                idle_since: Some(Instant::now()),
            }),
            inbound: Mutex::new(InboundSlot::Unopened),
            request: OnceLock::new(),
            user: OnceLock::new(),
            binary: AtomicBool::new(false),
            websocket_close_code: AtomicU16::new(1000),
            close_reason: OnceLock::new(),
            keep_alive: OnceLock::new(),
            poll_changed: Notify::new(),
            stateful_negotiated: AtomicBool::new(false),
            resumable: AtomicBool::new(false),
            lost: Notify::new(),
            lost_flag: AtomicBool::new(false),
            resume_slot: Mutex::new(None),
            writer: Mutex::new(None),
        }
    }

    /// The next batch for the transport to write (see [`Outbound::next_batch`]), counted as sent.
    pub(crate) async fn next_batch(&self, into: Option<&mut Vec<u8>>) -> Batch {
        let batch = self.outbound.next_batch(into).await;
        let bytes = match &batch {
            Batch::Data(payload) => payload.len(),
            Batch::Appended(bytes) => *bytes,
            Batch::Idle | Batch::Done => 0,
        };
        if bytes > 0 {
            self.mount.metrics.bytes_out.inc_by(bytes as u64);
        }
        batch
    }

    /// Records that negotiate agreed on stateful reconnect.
    pub(crate) fn set_stateful_negotiated(&self) {
        self.stateful_negotiated.store(true, Ordering::Relaxed);
    }

    /// Whether negotiate agreed on stateful reconnect.
    pub(crate) fn stateful_negotiated(&self) -> bool {
        self.stateful_negotiated.load(Ordering::Relaxed)
    }

    /// Turns stateful reconnect on or off for the running session.
    pub(crate) fn set_resumable(&self, resumable: bool) {
        self.resumable.store(resumable, Ordering::Relaxed);
    }

    /// Whether a lost WebSocket may be replaced.
    pub(crate) fn is_resumable(&self) -> bool {
        self.resumable.load(Ordering::Relaxed)
    }

    /// The transport failed (a write error or timeout): a resumable session waits for the client to
    /// come back; any other ends.
    pub(crate) fn transport_failed(&self) {
        if self.is_resumable() {
            self.socket_lost();
        } else {
            self.close_transport_lost();
        }
    }

    /// Tells a resumable session its socket is gone (or being replaced).
    pub(crate) fn socket_lost(&self) {
        self.lost_flag.store(true, Ordering::SeqCst);
        self.lost.notify_one();
    }

    /// Whether the socket was reported lost since the last call.
    pub(crate) fn take_lost(&self) -> bool {
        self.lost_flag.swap(false, Ordering::SeqCst)
    }

    /// Offers the session a place for the client's next WebSocket.
    pub(crate) fn await_socket(&self, slot: oneshot::Sender<Resumed>) {
        *self.resume_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(slot);
    }

    /// Takes the place the session offered, if it is waiting.
    pub(crate) fn take_socket_slot(&self) -> Option<oneshot::Sender<Resumed>> {
        self.resume_slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Installs the writer of a new WebSocket, stopping the previous one. A stopped writer is aborted
    /// where it waits or writes: its socket is gone, and what it had taken is in the replay buffer.
    pub(crate) fn set_writer(&self, handle: JoinHandle<()>) {
        let previous = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(handle);
        if let Some(previous) = previous {
            previous.abort();
        }
    }

    /// Stops the current writer (the socket is gone).
    pub(crate) fn stop_writer(&self) {
        if let Some(writer) = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            writer.abort();
        }
    }

    /// Takes the current writer's handle, to wait for its last frames.
    pub(crate) fn take_writer(&self) -> Option<JoinHandle<()>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Asks the application to end for `reason` (the first reason given wins).
    pub(crate) fn close_with(&self, reason: CloseReason) {
        let _ = self.close_reason.set(reason);
        self.abort.cancel();
    }

    /// The transport went away.
    pub(crate) fn close_transport_lost(&self) {
        self.close_with(CloseReason::TransportLost);
    }

    /// Why the connection was closed, if it was.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason.get().cloned()
    }

    /// Starts keep-alive pings on the transports that send them.
    pub(crate) fn set_keep_alive(&self, ping: Bytes, period: Duration) {
        let _ = self.keep_alive.set((ping, period));
    }

    /// The keep-alive ping and period, once set.
    pub(crate) fn keep_alive(&self) -> Option<&(Bytes, Duration)> {
        self.keep_alive.get()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TransportState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current attachment.
    pub(crate) fn attachment(&self) -> Attachment {
        self.state().attachment
    }

    /// Binds the first transport. Fails with the attachment already present.
    pub(crate) fn attach(&self, transport: Transport) -> Result<(), Attachment> {
        let mut state = self.state();
        if state.attachment != Attachment::None {
            return Err(state.attachment);
        }
        state.attachment = match transport {
            Transport::WebSockets => Attachment::WebSocket,
            Transport::ServerSentEvents => Attachment::ServerSentEvents,
            Transport::LongPolling => Attachment::LongPolling {
                polling: false,
                generation: 0,
            },
        };
        state.idle_since = match transport {
            Transport::LongPolling => Some(Instant::now()),
            _ => None,
        };
        Ok(())
    }

    /// A long poll starts: returns its generation (a newer poll supersedes older ones).
    pub(crate) fn begin_poll(&self) -> u64 {
        let mut state = self.state();
        let generation = match state.attachment {
            Attachment::LongPolling { generation, .. } => generation + 1,
            _ => 0,
        };
        state.attachment = Attachment::LongPolling {
            polling: true,
            generation,
        };
        state.idle_since = None;
        generation
    }

    /// Whether `generation` is still the newest poll.
    pub(crate) fn is_current_poll(&self, generation: u64) -> bool {
        matches!(self.state().attachment, Attachment::LongPolling { generation: g, .. } if g == generation)
    }

    /// A long poll ended; the inactivity clock starts if it was the newest.
    pub(crate) fn end_poll(&self, generation: u64) {
        let mut state = self.state();
        if let Attachment::LongPolling {
            generation: current,
            ..
        } = state.attachment
            && current == generation
        {
            state.attachment = Attachment::LongPolling {
                polling: false,
                generation,
            };
            state.idle_since = Some(Instant::now());
        }
    }

    /// Whether a transport request is open now (a WebSocket, an SSE response or a waiting poll): what
    /// a shutdown waits for before exiting.
    pub(crate) fn has_open_request(&self) -> bool {
        match self.state().attachment {
            Attachment::WebSocket | Attachment::ServerSentEvents => true,
            Attachment::LongPolling { polling, .. } => polling,
            Attachment::None => false,
        }
    }

    /// How long the connection has been without a transport request, if it is.
    pub(crate) fn idle_for(&self, now: Instant) -> Option<std::time::Duration> {
        self.state()
            .idle_since
            .map(|since| now.saturating_duration_since(since))
    }

    fn inbound_slot(&self) -> std::sync::MutexGuard<'_, InboundSlot> {
        self.inbound.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// POSTed chunks buffered before a POST waits, from the application buffer size.
    fn inbound_capacity(&self) -> usize {
        (self.mount.options.application_max_buffer_size / (16 * 1024)).max(1)
    }

    /// The application's end of the POST channel, when the transport starts. Bytes POSTed before the
    /// transport started (signalrcore sends its handshake before the first long poll) are in it.
    pub(crate) fn open_inbound(&self) -> Inbound {
        let mut slot = self.inbound_slot();
        if let InboundSlot::Open { receiver, .. } = &mut *slot
            && let Some(receiver) = receiver.take()
        {
            return Inbound::channel(receiver);
        }
        let (sender, receiver) = mpsc::channel(self.inbound_capacity());
        *slot = InboundSlot::Open {
            sender,
            receiver: None,
        };
        Inbound::channel(receiver)
    }

    /// The sender for POSTed bytes; `None` once the application has ended.
    pub(crate) fn inbound_sender(&self) -> Option<mpsc::Sender<Bytes>> {
        let mut slot = self.inbound_slot();
        match &*slot {
            InboundSlot::Open { sender, .. } => Some(sender.clone()),
            InboundSlot::Closed => None,
            InboundSlot::Unopened => {
                let (sender, receiver) = mpsc::channel(self.inbound_capacity());
                *slot = InboundSlot::Open {
                    sender: sender.clone(),
                    receiver: Some(receiver),
                };
                Some(sender)
            }
        }
    }

    /// Closes the POST channel, so the application sees the end of input.
    pub(crate) fn close_inbound(&self) {
        *self.inbound_slot() = InboundSlot::Closed;
    }

    /// Records the request that attached the transport and its user (the first one wins, as in .NET).
    pub(crate) fn bind_request(
        &self,
        parts: &http::request::Parts,
        remote: std::net::SocketAddr,
        user: Option<crate::auth::User>,
    ) {
        let _ = self
            .request
            .set(Arc::new(RequestInfo::from_parts(parts, Some(remote))));
        if let Some(user) = user {
            let _ = self.user.set(user);
        }
    }

    /// The connection's user, if authenticated.
    pub(crate) fn user(&self) -> Option<&crate::auth::User> {
        self.user.get()
    }

    /// The transport request, once a transport is attached.
    pub(crate) fn request(&self) -> Option<Arc<RequestInfo>> {
        self.request.get().cloned()
    }

    /// Sets the code the WebSocket close frame will carry.
    pub(crate) fn set_websocket_close_code(&self, code: u16) {
        self.websocket_close_code.store(code, Ordering::Relaxed);
    }

    pub(crate) fn websocket_close_code(&self) -> u16 {
        self.websocket_close_code.load(Ordering::Relaxed)
    }

    pub(crate) fn set_binary(&self, binary: bool) {
        self.binary.store(binary, Ordering::Relaxed);
    }

    pub(crate) fn is_binary(&self) -> bool {
        self.binary.load(Ordering::Relaxed)
    }
}
