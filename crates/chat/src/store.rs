//! The message store: room and direct-conversation history behind the [`MessageStore`] trait, the
//! message and error types every store shares, and the naming of direct conversations.
//!
//! The stores: [`SqliteStore`](crate::SqliteStore) (the embedded default, `sqlite.rs`),
//! [`PostgresStore`](crate::PostgresStore) (shared by several nodes, `postgres.rs`) and [`NoStore`]
//! (keeps nothing, `--history none`).

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use hubcast_backplane::BoxFuture;
use serde::Serialize;

/// One stored message, as the chat client reads it (camelCase).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredMessage {
    /// Increasing id (the order of the history).
    pub id: i64,
    /// The room, or the direct conversation's key (see [`direct_room`]).
    pub room: String,
    /// The author's user id.
    pub from_user: String,
    /// The text.
    pub content: String,
    /// When it was sent (ISO-8601 with `Z` in JSON, the timestamp extension in MessagePack).
    pub utc: hubcast_protocol::dotnet::DateTime,
}

/// A file sent with `UploadFile`, kept beside the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Random, unguessable (the download URL is `/uploads/<id>`).
    pub id: String,
    /// Who uploaded it.
    pub owner: String,
    /// The file name the uploader gave (no directories).
    pub name: String,
    /// The content type the uploader gave (`type/subtype`).
    pub content_type: String,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Why the store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message store: {0}")]
pub struct StoreError(pub String);

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self(error.to_string())
    }
}

/// Times are stored to the microsecond: appends hand back exactly what a later read returns.
pub(crate) fn to_stored_precision(utc: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(utc.timestamp_micros()).unwrap_or(utc)
}

/// The key of the direct conversation between two users (the same whoever writes).
pub fn direct_room(a: &str, b: &str) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    format!("dm:{}:{}", escape_user(first), escape_user(second))
}

/// A user id as it appears in a direct conversation's name: `%` and `:` percent-encoded, so the name
/// splits into its two users unambiguously (ids without them read as they are).
fn escape_user(user: &str) -> String {
    user.replace('%', "%25").replace(':', "%3A")
}

/// The two users of a direct conversation's name, if `room` is one.
pub fn direct_users(room: &str) -> Option<(String, String)> {
    let pair = room.strip_prefix("dm:")?;
    let (first, second) = pair.split_once(':')?;
    if second.contains(':') {
        return None;
    }
    let unescape = |s: &str| s.replace("%3A", ":").replace("%25", "%");
    Some((unescape(first), unescape(second)))
}

/// Where chat history lives.
pub trait MessageStore: Send + Sync + 'static {
    /// Stores a message; resolves once it is durable.
    fn append(
        &self,
        room: &str,
        from_user: &str,
        content: &str,
        utc: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<StoredMessage, StoreError>>;
    /// The newest `take` messages of `room`, oldest first; with `before`, only those with a smaller id.
    fn recent(
        &self,
        room: &str,
        before: Option<i64>,
        take: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>>;
    /// Deletes a message; returns it when it existed.
    fn delete(&self, id: i64) -> BoxFuture<'_, Result<Option<StoredMessage>, StoreError>>;
    /// One message by id.
    fn recent_by_id(&self, id: i64) -> BoxFuture<'_, Result<Option<StoredMessage>, StoreError>>;
    /// Mutes `user` until `until` (a time in the past lifts the mute). Shared by every node that shares
    /// the store.
    fn mute(&self, user: &str, until: DateTime<Utc>) -> BoxFuture<'_, Result<(), StoreError>>;
    /// When `user`'s mute ends, if it has not yet.
    fn muted_until(&self, user: &str) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>>;
    /// Keeps an uploaded file (committed before it resolves).
    fn put_file(&self, file: StoredFile) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The uploaded file with `id`, if there is one.
    fn file(&self, id: &str) -> BoxFuture<'_, Result<Option<StoredFile>, StoreError>>;
    /// Whether the store answers now (readiness and `hubcast_history_up`); stores kept in this process
    /// always do.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The mute still in force among `until`.
pub(crate) fn in_force(until: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    until.filter(|until| *until > Utc::now())
}

/// Keeps no history; mutes live in this process only.
#[derive(Debug, Default)]
pub struct NoStore {
    mutes: Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
}

impl MessageStore for NoStore {
    fn append(
        &self,
        room: &str,
        from_user: &str,
        content: &str,
        utc: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<StoredMessage, StoreError>> {
        let message = StoredMessage {
            id: 0,
            room: room.to_owned(),
            from_user: from_user.to_owned(),
            content: content.to_owned(),
            utc: utc.into(),
        };
        Box::pin(async move { Ok(message) })
    }

    fn recent(
        &self,
        _: &str,
        _: Option<i64>,
        _: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn delete(&self, _: i64) -> BoxFuture<'_, Result<Option<StoredMessage>, StoreError>> {
        Box::pin(async { Ok(None) })
    }

    fn recent_by_id(&self, _: i64) -> BoxFuture<'_, Result<Option<StoredMessage>, StoreError>> {
        Box::pin(async { Ok(None) })
    }

    fn mute(&self, user: &str, until: DateTime<Utc>) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut mutes = self.mutes.lock().unwrap_or_else(|p| p.into_inner());
        mutes.retain(|_, until| *until > Utc::now());
        mutes.insert(user.to_owned(), until);
        Box::pin(async { Ok(()) })
    }

    fn muted_until(&self, user: &str) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        let mutes = self.mutes.lock().unwrap_or_else(|p| p.into_inner());
        let until = in_force(mutes.get(user).copied());
        Box::pin(async move { Ok(until) })
    }

    fn put_file(&self, _: StoredFile) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async {
            Err(StoreError(
                "uploads are kept with the history, and this node keeps none (--history none)"
                    .into(),
            ))
        })
    }

    fn file(&self, _: &str) -> BoxFuture<'_, Result<Option<StoredFile>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
}
