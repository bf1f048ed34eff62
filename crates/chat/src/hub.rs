//! The chat hub of the seed (`ChatHub`, mapped at `/hubs/chat`): broadcast chat, typing, rooms, direct
//! messages, presence and history. Method names, argument order and client events are the seed's, so its
//! `chat.js` and console client work unchanged:
//!
//! | method | effect |
//! |---|---|
//! | `SendMessage(message)` | all: `ReceiveMessage(user, message, utc)` |
//! | `SetTyping(isTyping)` | others: `Typing(user, isTyping)` (at most every 500 ms per user) |
//! | `JoinRoom(room)` / `LeaveRoom(room)` | the room: `ReceiveMessage("SYSTEM", "<user> joined <room>" / "left <room>", utc)` |
//! | `SendToRoom(room, message)` | stored, then the room: `ReceiveMessage(user, message, utc)` |
//! | `SendDirect(toUser, message)` | stored, then every connection of `toUser` and the sender's others |
//! | `OnlineUsers()` | sorted user ids |
//! | `RecentMessages(room, take)` / `RecentMessagesBefore(room, beforeId, take)` | history, oldest first |
//! | `StreamTime()` | a stream of ISO-8601 times, one a second, until cancelled |
//! | `UploadChunks(stream)` | an upload stream of base64 or text chunks (at most 10 MiB): the caller gets `UploadProgress(bytes)` as it goes; resolves to `{bytes, sha256}` |
//! | `UploadFile(name, contentType, stream)` | a file as a stream of base64 chunks (each chunk base64 on its own and within the hub's maximum message size: up to 16 KiB of file per chunk fits the default 32 KiB; at most 10 MiB in all), kept with the history: `UploadProgress(bytes)` as it goes; resolves to `{id, name, contentType, bytes, sha256, url}`, the file then served at `url` (`/uploads/<id>`, see [`crate::files`]) |
//! | `RoomMembers(room)` | sorted user ids of the room's members |
//! | `MarkRead(room, messageId)` | the room: `ReadReceipt(user, room, messageId)`; for a direct conversation's key, its two users |
//! | `@user` in `SendToRoom` | that user: `Mentioned(fromUser, room, messageId)` |
//! | `KickUser(userId)` (Admin) | closes the user's connections with a reason |
//! | `MuteUser(userId, minutes)` (Admin) | the user's sends fail until then |
//! | `DeleteMessage(id)` (Admin or author) | all: `MessageDeleted(id)` |
//!
//! Every line a client hears as `ReceiveMessage(user, message, utc)` (the seed's event, kept for its
//! clients) also goes out as `ChatMessage({id, room, fromUser, content, utc, kind})` to the same
//! recipients, for clients that need more than the seed's three arguments (the chat page): `kind` is
//! `room` or `direct` (stored: `id` is the history id, `room` the room or the direct conversation's
//! key), `broadcast` (`SendMessage`, not stored) or `system` (joins and departures; `room` set for a
//! room's). A direct message's `ChatMessage` also reaches the sender's own connections. A client
//! listens to one of the two.
//!
//! Moderation actions are written to the audit log (tracing target `hubcast::audit`, no message text).
//!
//! Presence: the first connection of a user announces `SYSTEM: <user> joined` to all, the last one
//! `<user> left` (once per user, not per tab).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use hubcast_gateway::hub::{ClientProxy, ClientStream};
use hubcast_gateway::{Context, GroupName, Hub, HubError};
use hubcast_http::throttle::LogThrottle;
use hubcast_protocol::dotnet::DateTime;

use unicode_normalization::UnicodeNormalization;
use unicode_security::MixedScript;

use crate::store::{
    MessageStore, StoreError, StoredFile, StoredMessage, direct_room, direct_users,
};

/// Longest message accepted, in characters.
pub const MAX_MESSAGE: usize = 4000;
/// Largest upload accepted by `UploadChunks`, in bytes.
pub const MAX_UPLOAD: u64 = 10 * 1024 * 1024;

/// A line as the `ChatMessage` event carries it (the shape of a [`StoredMessage`], plus its kind).
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveMessage<'a> {
    /// The history id (stored lines only).
    pub id: Option<i64>,
    /// The room, or the direct conversation's key ([`crate::direct_room`]); none for broadcasts and
    /// presence lines.
    pub room: Option<&'a str>,
    /// The author, `SYSTEM` for joins and departures.
    pub from_user: &'a str,
    /// The text.
    pub content: &'a str,
    /// When it was sent.
    pub utc: DateTime,
    /// What it is.
    pub kind: LineKind,
}

/// What a [`LiveMessage`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    /// `SendToRoom`.
    Room,
    /// `SendDirect`.
    Direct,
    /// `SendMessage`.
    Broadcast,
    /// A join or a departure.
    System,
}

impl LiveMessage<'_> {
    /// Sends the line to `to` in both shapes: the seed's `ReceiveMessage` and `ChatMessage`.
    async fn post(&self, to: &ClientProxy) -> Result<(), HubError> {
        to.send("ReceiveMessage", &(self.from_user, self.content, self.utc))
            .await?;
        to.send("ChatMessage", &(self,)).await?;
        Ok(())
    }
}

/// A file kept by `UploadFile`, as its caller gets it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedFile {
    /// The id in its URL.
    pub id: String,
    /// The file name kept (directories dropped).
    pub name: String,
    /// The content type kept.
    pub content_type: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Where it is served: `/uploads/<id>`.
    pub url: String,
}

/// The result of `UploadChunks`.
#[derive(Debug, serde::Serialize)]
pub struct Upload {
    /// Bytes received.
    pub bytes: u64,
    /// Their SHA-256, hex.
    pub sha256: String,
}

/// Longest room name accepted, in characters.
pub const MAX_ROOM: usize = 64;
const TYPING_EVERY: Duration = Duration::from_millis(500);

/// What the chat hub shares between connections.
pub struct Chat {
    store: Arc<dyn MessageStore>,
    /// Store failures by operation (`hubcast_history_errors_total`).
    store_errors: prometheus::IntCounterVec,
    /// 1 while the history store answers (`hubcast_history_up`), set by [`HistoryProbe::check`].
    history_up: prometheus::IntGauge,
    /// When each user last had a typing event relayed.
    typing: Mutex<HashMap<String, Instant>>,
}

/// Checks whether the history store answers, and shows it in `hubcast_history_up`.
#[derive(Clone)]
pub struct HistoryProbe {
    store: Arc<dyn MessageStore>,
    up: prometheus::IntGauge,
}

impl HistoryProbe {
    /// Asks the store (within `timeout`); the error says why it does not answer.
    pub async fn check(&self, timeout: Duration) -> Result<(), crate::StoreError> {
        let answer = match tokio::time::timeout(timeout, self.store.ping()).await {
            Ok(answer) => answer,
            Err(_) => Err(crate::StoreError(format!(
                "the history store did not answer within {timeout:?}"
            ))),
        };
        self.up.set(i64::from(answer.is_ok()));
        answer
    }
}

/// Entries of the typing map above which those older than [`TYPING_EVERY`] are dropped.
const TYPING_PRUNE_AT: usize = 256;

impl Chat {
    /// A chat keeping its history in `store`.
    pub fn new(store: Arc<dyn MessageStore>) -> Self {
        let opts = prometheus::Opts::new(
            "hubcast_history_errors_total",
            "Chat history operations that failed (disk full, database unreachable), by operation",
        );
        let store_errors = prometheus::IntCounterVec::new(opts, &["operation"])
            .unwrap_or_else(|e| unreachable!("a static metric definition: {e}"));
        // The failure series exist at 0 from the start, for dashboards and alerts.
        for operation in STORE_OPERATIONS {
            store_errors.with_label_values(&[operation]);
        }
        let history_up = prometheus::IntGauge::new(
            "hubcast_history_up",
            "1 while the chat history store answers, 0 while it does not",
        )
        .unwrap_or_else(|e| unreachable!("a static metric definition: {e}"));
        Self {
            store,
            store_errors,
            history_up,
            typing: Mutex::new(HashMap::new()),
        }
    }

    /// Adds the chat's series to `registry` (the process's, served at `/metrics`).
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.store_errors.clone()))?;
        registry.register(Box::new(self.history_up.clone()))
    }

    /// `GET /uploads/<id>`: the files `UploadFile` kept (see [`crate::files`]).
    pub fn files_route(&self) -> hubcast_http::RouteHandler {
        crate::files::route(
            self.store.clone(),
            self.store_errors.with_label_values(&["download"]),
        )
    }

    /// A handle that checks the history store (readiness), kept by whoever watches it.
    pub fn history_probe(&self) -> HistoryProbe {
        HistoryProbe {
            store: self.store.clone(),
            up: self.history_up.clone(),
        }
    }

    /// Whether a typing event of `name` is relayed: a stop always (and it forgets the user), a start at
    /// most every [`TYPING_EVERY`]. The map holds only users who started typing lately: once it has
    /// [`TYPING_PRUNE_AT`] entries, the stale ones are dropped.
    fn typing_due(&self, name: &str, is_typing: bool) -> bool {
        let mut typing = self.typing.lock().unwrap_or_else(|p| p.into_inner());
        if !is_typing {
            typing.remove(name);
            return true;
        }
        if typing
            .get(name)
            .is_some_and(|at| at.elapsed() < TYPING_EVERY)
        {
            return false;
        }
        if typing.len() >= TYPING_PRUNE_AT {
            typing.retain(|_, at| at.elapsed() < TYPING_EVERY);
        }
        typing.insert(name.to_owned(), Instant::now());
        true
    }
}

type Ctx = Context<Chat>;

/// The caller's name: the user id, or the connection id for anonymous callers.
fn user(ctx: &Ctx) -> String {
    ctx.user_id()
        .map(ToString::to_string)
        .unwrap_or_else(|| ctx.connection_id().to_string())
}

fn now() -> DateTime {
    DateTime(Utc::now())
}

/// The role of moderators.
pub const ADMIN: &str = "Admin";

fn is_admin(ctx: &Ctx) -> bool {
    ctx.user()
        .is_some_and(|u| u.roles.iter().any(|r| r == ADMIN))
}

/// Refuses sends of a muted user (mutes live in the store, so every node sharing it sees them).
async fn check_not_muted(ctx: &Ctx) -> Result<(), HubError> {
    let name = user(ctx);
    let until = store(ctx, "muted_until", |store| store.muted_until(&name)).await?;
    match until {
        Some(until) => Err(HubError::new(format!(
            "You are muted until {}.",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))),
        None => Ok(()),
    }
}

/// The users a message mentions (`@name`).
fn mentions(message: &str) -> Vec<String> {
    let mut names: Vec<String> = message
        .split_whitespace()
        .filter_map(|word| word.strip_prefix('@'))
        .map(|name| name.trim_end_matches(|c: char| !c.is_alphanumeric() && c != '_' && c != '-'))
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn check_message(message: &str) -> Result<(), HubError> {
    if message.trim().is_empty() {
        return Err(HubError::new("Message is empty."));
    }
    if message.chars().count() > MAX_MESSAGE {
        return Err(HubError::new(format!(
            "Message is longer than {MAX_MESSAGE} characters."
        )));
    }
    if message
        .chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c))
    {
        return Err(HubError::new("Message contains control characters."));
    }
    Ok(())
}

/// The explicit bidirectional formatting characters (embeddings, overrides, isolates, marks), which can
/// make a name or a message read differently from what it is (Trojan Source).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// A room name, NFKC-normalised (full-width `ｌｏｂｂｙ` is `lobby`), or why it is refused: 1 to
/// [`MAX_ROOM`] letters, digits, `-`, `_` or `.`, of one script (no Cyrillic `а` inside a Latin
/// `admin`), and not a non-ASCII look-alike of an ASCII name (an all-Cyrillic `аdmіn`).
fn check_room(room: &str) -> Result<String, HubError> {
    let normalized: String = room.nfkc().collect();
    let well_formed = !normalized.is_empty()
        && normalized.chars().count() <= MAX_ROOM
        && normalized
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !well_formed {
        return Err(HubError::new(format!(
            "Room names are 1 to {MAX_ROOM} letters, digits, '-', '_' or '.'."
        )));
    }
    let looks_ascii =
        !normalized.is_ascii() && unicode_security::skeleton(&normalized).all(|c| c.is_ascii());
    if !normalized.as_str().is_single_script() || looks_ascii {
        return Err(HubError::new(
            "Room names must not mix scripts or imitate another name.",
        ));
    }
    Ok(normalized)
}

/// Longest user id `SendDirect` accepts, in characters.
pub const MAX_USER: usize = 128;

fn check_recipient(user: &str) -> Result<(), HubError> {
    let valid = !user.trim().is_empty()
        && user.chars().count() <= MAX_USER
        && !user.chars().any(|c| c.is_control() || is_bidi_control(c));
    if valid {
        Ok(())
    } else {
        Err(HubError::new(format!(
            "The recipient is a user id of 1 to {MAX_USER} characters."
        )))
    }
}

/// Whether the caller's user has other connections on any node (`None`: presence is unavailable).
/// Anonymous callers never do.
async fn others_online(ctx: &Ctx) -> Option<bool> {
    let Some(user) = ctx.user_id() else {
        return Some(false);
    };
    match ctx.clients().user_connections(user).await {
        Ok(connections) => Some(connections.iter().any(|c| c != ctx.connection_id())),
        Err(error) => {
            tracing::warn!(%error, "presence unavailable: not announcing a join or leave");
            None
        }
    }
}

fn backplane_error(error: hubcast_gateway::BackplaneError) -> HubError {
    HubError::internal("BackplaneException", error.to_string())
}

/// The operations `hubcast_history_errors_total` counts.
const STORE_OPERATIONS: [&str; 7] = [
    "append",
    "read",
    "delete",
    "mute",
    "muted_until",
    "upload",
    "download",
];

/// Logs store failures at most once a second.
static STORE_LOG: LogThrottle = LogThrottle::new(Duration::from_secs(1));

/// The chat hub.
pub fn chat_hub(chat: Chat) -> Hub<Chat> {
    Hub::builder("chat", chat)
        .on_connected(announce_arrival)
        .on_disconnected(announce_departure)
        .method("SendMessage", send_message)
        .method("SetTyping", set_typing)
        .method("JoinRoom", join_room)
        .method("LeaveRoom", leave_room)
        .method("SendToRoom", send_to_room)
        .method("SendDirect", send_direct)
        .method("OnlineUsers", online_users)
        .method("RecentMessages", recent_messages)
        .method("RecentMessagesBefore", recent_messages_before)
        .method("RoomMembers", room_members)
        .method("UploadChunks", upload_chunks)
        .method("UploadFile", upload_file)
        .stream("StreamTime", stream_time)
        .method("MarkRead", mark_read)
        .method("KickUser", kick_user)
        .method("MuteUser", mute_user)
        .method("DeleteMessage", delete_message)
        .rate_limit("SendMessage", 5.0, 10.0)
        .rate_limit("SendToRoom", 5.0, 10.0)
        .rate_limit("SendDirect", 5.0, 10.0)
        .require_roles("KickUser", &[ADMIN])
        .require_roles("MuteUser", &[ADMIN])
        .build()
}

/// The first connection of a user announces it to all.
async fn announce_arrival(ctx: Ctx) -> Result<(), HubError> {
    if others_online(&ctx).await == Some(false) {
        let text = format!("{} joined", user(&ctx));
        system(None, &text).post(&ctx.clients().all()).await?;
    }
    Ok(())
}

/// A join or departure line, of `room` or (none) of the whole chat.
fn system<'a>(room: Option<&'a str>, text: &'a str) -> LiveMessage<'a> {
    LiveMessage {
        id: None,
        room,
        from_user: "SYSTEM",
        content: text,
        utc: now(),
        kind: LineKind::System,
    }
}

/// The last connection of a user announces its departure to all.
async fn announce_departure(ctx: Ctx, _error: Option<String>) {
    if others_online(&ctx).await == Some(false) {
        let text = format!("{} left", user(&ctx));
        let _ = system(None, &text).post(&ctx.clients().all()).await;
    }
}

async fn send_message(ctx: Ctx, message: String) -> Result<(), HubError> {
    check_message(&message)?;
    check_not_muted(&ctx).await?;
    let line = LiveMessage {
        id: None,
        room: None,
        from_user: &user(&ctx),
        content: &message,
        utc: now(),
        kind: LineKind::Broadcast,
    };
    line.post(&ctx.clients().all()).await
}

async fn set_typing(ctx: Ctx, is_typing: bool) -> Result<(), HubError> {
    let name = user(&ctx);
    if ctx.state().typing_due(&name, is_typing) {
        ctx.clients()
            .others()
            .send("Typing", &(name, is_typing))
            .await?;
    }
    Ok(())
}

async fn join_room(ctx: Ctx, room: String) -> Result<(), HubError> {
    let room = check_room(&room)?;
    ctx.groups().add(ctx.connection_id(), room.as_str()).await?;
    let text = format!("{} joined {room}", user(&ctx));
    system(Some(&room), &text)
        .post(&ctx.clients().group(room.as_str()))
        .await
}

async fn leave_room(ctx: Ctx, room: String) -> Result<(), HubError> {
    let room = check_room(&room)?;
    ctx.groups()
        .remove(ctx.connection_id(), room.as_str())
        .await?;
    let text = format!("{} left {room}", user(&ctx));
    system(Some(&room), &text)
        .post(&ctx.clients().group(room.as_str()))
        .await
}

async fn send_to_room(ctx: Ctx, room: String, message: String) -> Result<(), HubError> {
    let room = check_room(&room)?;
    check_message(&message)?;
    check_not_muted(&ctx).await?;
    let name = user(&ctx);
    // Stored before anyone hears of it: a completed send is durable.
    let saved = store(&ctx, "append", |store| {
        store.append(&room, &name, &message, Utc::now())
    })
    .await?;
    let mentioned = mentions(&message);
    stored(&saved, LineKind::Room)
        .post(&ctx.clients().group(room.as_str()))
        .await?;
    for target in mentioned {
        ctx.clients()
            .user(target)
            .send("Mentioned", &(name.as_str(), room.as_str(), saved.id))
            .await?;
    }
    Ok(())
}

async fn send_direct(ctx: Ctx, to_user: String, message: String) -> Result<(), HubError> {
    check_recipient(&to_user)?;
    check_message(&message)?;
    check_not_muted(&ctx).await?;
    let name = user(&ctx);
    let conversation = direct_room(&name, &to_user);
    let saved = store(&ctx, "append", |store| {
        store.append(&conversation, &name, &message, Utc::now())
    })
    .await?;
    let line = stored(&saved, LineKind::Direct);
    // The seed's event skips the sending connection (its page shows its own line); ChatMessage does not.
    let users = vec![to_user.into(), name.as_str().into()];
    ctx.clients()
        .users_except(users.clone(), vec![ctx.connection_id().clone()])
        .send("ReceiveMessage", &(name.as_str(), message, saved.utc))
        .await?;
    ctx.clients()
        .users(users)
        .send("ChatMessage", &(line,))
        .await?;
    Ok(())
}

/// A stored message as a live line.
fn stored(message: &StoredMessage, kind: LineKind) -> LiveMessage<'_> {
    LiveMessage {
        id: Some(message.id),
        room: Some(&message.room),
        from_user: &message.from_user,
        content: &message.content,
        utc: message.utc,
        kind,
    }
}

async fn online_users(ctx: Ctx) -> Result<Vec<String>, HubError> {
    let online = ctx
        .clients()
        .online_users()
        .await
        .map_err(backplane_error)?;
    Ok(online
        .into_iter()
        .map(|(user, _)| user.to_string())
        .collect())
}

async fn recent_messages(
    ctx: Ctx,
    room: String,
    take: i64,
) -> Result<Vec<StoredMessage>, HubError> {
    history(&ctx, &room, None, take).await
}

async fn recent_messages_before(
    ctx: Ctx,
    room: String,
    before: i64,
    take: i64,
) -> Result<Vec<StoredMessage>, HubError> {
    history(&ctx, &room, Some(before), take).await
}

async fn room_members(ctx: Ctx, room: String) -> Result<Vec<String>, HubError> {
    let group = GroupName::from(check_room(&room)?);
    let members = ctx
        .clients()
        .group_members(&group)
        .await
        .map_err(backplane_error)?;
    let names: std::collections::BTreeSet<String> = members
        .into_iter()
        .map(|m| {
            m.user
                .map_or_else(|| m.connection.to_string(), |u| u.to_string())
        })
        .collect();
    Ok(names.into_iter().collect())
}

/// Receives an upload stream: each chunk as `decode` reads it, at most [`MAX_UPLOAD`] bytes in all,
/// handed to `keep`, with `UploadProgress(bytes)` to the caller after each. Returns the size and the
/// SHA-256 (hex).
async fn receive_upload(
    ctx: &Ctx,
    chunks: &mut ClientStream<String>,
    decode: impl Fn(&str) -> Result<Vec<u8>, HubError>,
    mut keep: impl FnMut(Vec<u8>),
) -> Result<(u64, String), HubError> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut total: u64 = 0;
    while let Some(chunk) = chunks.recv().await {
        let chunk = decode(&chunk?)?;
        total += chunk.len() as u64;
        if total > MAX_UPLOAD {
            return Err(HubError::new(format!(
                "Uploads are limited to {MAX_UPLOAD} bytes."
            )));
        }
        hasher.update(&chunk);
        keep(chunk);
        ctx.clients()
            .caller()
            .send("UploadProgress", &(total,))
            .await?;
    }
    let sha256: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    tracing::info!(target: "hubcast::audit", action = "upload", actor = %user(ctx), bytes = total, %sha256);
    Ok((total, sha256))
}

async fn upload_chunks(ctx: Ctx, mut chunks: ClientStream<String>) -> Result<Upload, HubError> {
    let (bytes, sha256) = receive_upload(
        &ctx,
        &mut chunks,
        |chunk| Ok(chunk.as_bytes().to_vec()),
        drop,
    )
    .await?;
    Ok(Upload { bytes, sha256 })
}

async fn upload_file(
    ctx: Ctx,
    name: String,
    content_type: String,
    mut chunks: ClientStream<String>,
) -> Result<UploadedFile, HubError> {
    use base64::Engine as _;
    let name = crate::files::check_name(&name).map_err(HubError::new)?;
    let content_type = crate::files::check_content_type(&content_type).map_err(HubError::new)?;
    let mut data = Vec::new();
    let (bytes, sha256) = receive_upload(
        &ctx,
        &mut chunks,
        |chunk| {
            base64::engine::general_purpose::STANDARD
                .decode(chunk)
                .map_err(|_| HubError::new("Each chunk must be base64."))
        },
        |chunk| data.extend_from_slice(&chunk),
    )
    .await?;
    let id = hubcast_protocol::ids::random_id()
        .map_err(|e| HubError::internal("RandomException", e.to_string()))?;
    let file = StoredFile {
        id: id.clone(),
        owner: user(&ctx),
        name: name.clone(),
        content_type: content_type.clone(),
        data,
    };
    store(&ctx, "upload", |store| store.put_file(file)).await?;
    Ok(UploadedFile {
        url: format!("/uploads/{id}"),
        id,
        name,
        content_type,
        bytes,
        sha256,
    })
}

async fn stream_time(
    _: Ctx,
) -> Result<impl futures_util::Stream<Item = Result<String, HubError>>, HubError> {
    let ticks = tokio::time::interval(Duration::from_secs(1));
    Ok(futures_util::stream::unfold(
        ticks,
        |mut ticks| async move {
            ticks.tick().await;
            let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            Some((Ok(now), ticks))
        },
    ))
}

async fn mark_read(ctx: Ctx, room: String, message_id: i64) -> Result<(), HubError> {
    // A direct conversation: the receipt goes to its two users, if the caller is one of them.
    if let Some((first, second)) = direct_users(&room) {
        let name = user(&ctx);
        if name != first && name != second {
            return Err(HubError::new("Join the room first."));
        }
        ctx.clients()
            .users(vec![first.into(), second.into()])
            .send("ReadReceipt", &(name, room.as_str(), message_id))
            .await?;
        return Ok(());
    }
    let room = check_room(&room)?;
    // Receipts go to rooms the caller is in, not to any room it can name.
    if !ctx
        .groups()
        .contains_local(ctx.connection_id(), &GroupName::from(room.as_str()))
    {
        return Err(HubError::new("Join the room first."));
    }
    ctx.clients()
        .group(room.as_str())
        .send("ReadReceipt", &(user(&ctx), room.as_str(), message_id))
        .await?;
    Ok(())
}

async fn kick_user(ctx: Ctx, target: String) -> Result<usize, HubError> {
    let kicked = hubcast_gateway::UserId::from(target.as_str());
    let hub = ctx.hub_context();
    // Counted on every node before closing (presence); when it is unavailable, 0.
    let closed = hub.user_connections(&kicked).await.map_or(0, |c| c.len());
    let reason = format!("You were removed by {}.", user(&ctx));
    hub.close_user(&kicked, &reason)
        .await
        .map_err(backplane_error)?;
    tracing::info!(target: "hubcast::audit", action = "kick", actor = %user(&ctx), user = %target, connections = closed);
    Ok(closed)
}

async fn mute_user(ctx: Ctx, target: String, minutes: i64) -> Result<(), HubError> {
    let until = Utc::now() + chrono::Duration::minutes(minutes.clamp(0, 7 * 24 * 60));
    store(&ctx, "mute", |store| store.mute(&target, until)).await?;
    tracing::info!(target: "hubcast::audit", action = "mute", actor = %user(&ctx), user = %target, minutes);
    Ok(())
}

async fn delete_message(ctx: Ctx, id: i64) -> Result<(), HubError> {
    let Some(message) = store(&ctx, "read", |store| store.recent_by_id(id)).await? else {
        return Err(HubError::new("No such message."));
    };
    if message.from_user != user(&ctx) && !is_admin(&ctx) {
        return Err(HubError::new(
            "Only the author or an admin can delete a message.",
        ));
    }
    store(&ctx, "delete", |store| store.delete(id)).await?;
    tracing::info!(target: "hubcast::audit", action = "delete", actor = %user(&ctx), message_id = id, author = %message.from_user);
    ctx.clients().all().send("MessageDeleted", &(id,)).await?;
    Ok(())
}

/// Runs one store operation; a failure is counted under `operation`, logged (throttled, with the
/// cause, never the message text) and turned into the hub error the caller gets.
async fn store<'a, T>(
    ctx: &'a Ctx,
    operation: &'static str,
    call: impl FnOnce(&'a dyn MessageStore) -> hubcast_gateway::BoxFuture<'a, Result<T, StoreError>>,
) -> Result<T, HubError> {
    let chat = ctx.state();
    call(chat.store.as_ref()).await.map_err(|error| {
        chat.store_errors.with_label_values(&[operation]).inc();
        if let Some(suppressed) = STORE_LOG.admit() {
            tracing::warn!(operation, %error, suppressed, "the chat history store failed");
        }
        HubError::internal("StoreException", error.to_string())
    })
}

/// A page of history, oldest first: at most `take` (1 to 200) messages, before `before` if given.
async fn history(
    ctx: &Ctx,
    room: &str,
    before: Option<i64>,
    take: i64,
) -> Result<Vec<StoredMessage>, HubError> {
    let take = take.clamp(1, 200) as usize;
    // Direct conversations are readable by their two users only.
    let room = if room.starts_with("dm:") {
        let name = user(ctx);
        match direct_users(room) {
            Some((a, b)) if a == name || b == name => room.to_owned(),
            _ => return Err(HubError::new("Not your conversation.")),
        }
    } else {
        check_room(room)?
    };
    store(ctx, "read", |store| store.recent(&room, before, take)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typing_map_forgets_stale_users() {
        let chat = Chat::new(Arc::new(crate::NoStore::default()));
        for i in 0..TYPING_PRUNE_AT {
            assert!(chat.typing_due(&format!("user{i}"), true));
        }
        assert!(
            !chat.typing_due("user0", true),
            "a start within 500 ms is not relayed"
        );
        std::thread::sleep(TYPING_EVERY);
        assert!(chat.typing_due("newcomer", true));
        assert_eq!(chat.typing.lock().unwrap().len(), 1);
        assert!(chat.typing_due("newcomer", false));
        assert!(chat.typing.lock().unwrap().is_empty());
    }

    #[test]
    fn direct_conversation_names_split_unambiguously() {
        for (a, b) in [
            ("boss:x", "zed"),
            ("boss", "x:zed"),
            ("a%3Ab", "c"),
            ("%", ":"),
            ("ann", "bob"),
        ] {
            let room = direct_room(a, b);
            let (first, second) = direct_users(&room).unwrap();
            let mut expected = [a, b];
            expected.sort();
            assert_eq!([first.as_str(), second.as_str()], expected, "{room}");
        }
        assert_ne!(direct_room("boss:x", "zed"), direct_room("boss", "x:zed"));
        assert_eq!(direct_room("ann", "bob"), "dm:ann:bob");
        assert_eq!(direct_users("dm:a:b:c"), None);
    }

    #[test]
    fn room_names() {
        assert_eq!(check_room("ｌｏｂｂｙ").unwrap(), "lobby");
        assert_eq!(check_room("잡담").unwrap(), "잡담");
        for bad in [
            "",
            "а dmin",
            "\u{0430}dmin",
            "\u{0441}\u{043E}\u{0440}\u{0435}",
            "lobby\u{202E}",
            "a/b",
        ] {
            assert!(check_room(bad).is_err(), "{bad:?}");
        }
    }
}
