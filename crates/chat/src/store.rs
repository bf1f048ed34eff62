//! The message store: room and direct-conversation history behind the [`MessageStore`] trait.
//!
//! [`SqliteStore`] is the embedded default (one file, WAL journal, schema created at start). A send
//! completes only after its message is committed, so a process killed right after a completed send
//! loses nothing. [`NoStore`] keeps nothing (`--history none`).

use std::path::Path;
use std::sync::{Arc, Mutex};

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
}

/// The mute still in force among `until`.
fn in_force(until: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
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
}

/// History in a SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<rusqlite::Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        room TEXT NOT NULL,
        from_user TEXT NOT NULL,
        content TEXT NOT NULL,
        utc_micros INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS messages_room_id ON messages (room, id);
    CREATE TABLE IF NOT EXISTS mutes (
        user TEXT PRIMARY KEY,
        until_micros INTEGER NOT NULL
    );
";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, in WAL mode with synchronous commits.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let connection = rusqlite::Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed message survives a power cut, not only a killed process.
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(SCHEMA)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` on the connection off the async threads.
    fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let connection = self.connection.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
                work(&connection)
            })
            .await
            .map_err(|e| StoreError(e.to_string()))?
        })
    }
}

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let micros: i64 = row.get(4)?;
    Ok(StoredMessage {
        id: row.get(0)?,
        room: row.get(1)?,
        from_user: row.get(2)?,
        content: row.get(3)?,
        utc: hubcast_protocol::dotnet::DateTime(
            DateTime::from_timestamp_micros(micros).unwrap_or_default(),
        ),
    })
}

fn by_id(db: &rusqlite::Connection, id: i64) -> Result<Option<StoredMessage>, StoreError> {
    use rusqlite::OptionalExtension as _;
    let found = db
        .query_row(
            "SELECT id, room, from_user, content, utc_micros FROM messages WHERE id = ?1",
            [id],
            row,
        )
        .optional()?;
    Ok(found)
}

impl MessageStore for SqliteStore {
    fn append(
        &self,
        room: &str,
        from_user: &str,
        content: &str,
        utc: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<StoredMessage, StoreError>> {
        let (room, from_user, content) =
            (room.to_owned(), from_user.to_owned(), content.to_owned());
        let utc = to_stored_precision(utc);
        self.run(move |db| {
            db.execute(
                "INSERT INTO messages (room, from_user, content, utc_micros) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![room, from_user, content, utc.timestamp_micros()],
            )?;
            Ok(StoredMessage {
                id: db.last_insert_rowid(),
                room,
                from_user,
                content,
                utc: utc.into(),
            })
        })
    }

    fn recent(
        &self,
        room: &str,
        before: Option<i64>,
        take: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        let room = room.to_owned();
        let take = i64::try_from(take).unwrap_or(i64::MAX);
        self.run(move |db| {
            let mut statement = db.prepare_cached(
                "SELECT id, room, from_user, content, utc_micros FROM messages
                 WHERE room = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            let mut messages = statement
                .query_map(
                    rusqlite::params![room, before.unwrap_or(i64::MAX), take],
                    row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            messages.reverse();
            Ok(messages)
        })
    }

    fn delete(&self, id: i64) -> BoxFuture<'_, Result<Option<StoredMessage>, StoreError>> {
        self.run(move |db| {
            let existing = by_id(db, id)?;
            db.execute("DELETE FROM messages WHERE id = ?1", [id])?;
            Ok(existing)
        })
    }

    fn recent_by_id(&self, id: i64) -> BoxFuture<'_, Result<Option<StoredMessage>, StoreError>> {
        self.run(move |db| by_id(db, id))
    }

    fn mute(&self, user: &str, until: DateTime<Utc>) -> BoxFuture<'_, Result<(), StoreError>> {
        let user = user.to_owned();
        self.run(move |db| {
            db.execute(
                "INSERT INTO mutes (user, until_micros) VALUES (?1, ?2)
                 ON CONFLICT (user) DO UPDATE SET until_micros = excluded.until_micros",
                rusqlite::params![user, until.timestamp_micros()],
            )?;
            Ok(())
        })
    }

    fn muted_until(&self, user: &str) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        let user = user.to_owned();
        self.run(move |db| {
            use rusqlite::OptionalExtension as _;
            let micros: Option<i64> = db
                .query_row(
                    "SELECT until_micros FROM mutes WHERE user = ?1",
                    [user],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(in_force(micros.and_then(DateTime::from_timestamp_micros)))
        })
    }
}
