//! [`SqliteStore`]: the embedded history, one file with a WAL journal and the schema created at start.
//! A send completes only after its message is committed, so a process killed right after a completed
//! send loses nothing.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use hubcast_backplane::BoxFuture;

use crate::store::{
    MessageStore, StoreError, StoredFile, StoredMessage, in_force, to_stored_precision,
};

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
    CREATE TABLE IF NOT EXISTS files (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        data BLOB NOT NULL
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

    fn put_file(&self, file: StoredFile) -> BoxFuture<'_, Result<(), StoreError>> {
        self.run(move |db| {
            db.execute(
                "INSERT INTO files (id, owner, name, content_type, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![file.id, file.owner, file.name, file.content_type, file.data],
            )?;
            Ok(())
        })
    }

    fn file(&self, id: &str) -> BoxFuture<'_, Result<Option<StoredFile>, StoreError>> {
        let id = id.to_owned();
        self.run(move |db| {
            use rusqlite::OptionalExtension as _;
            let found = db
                .query_row(
                    "SELECT id, owner, name, content_type, data FROM files WHERE id = ?1",
                    [id],
                    |row| {
                        Ok(StoredFile {
                            id: row.get(0)?,
                            owner: row.get(1)?,
                            name: row.get(2)?,
                            content_type: row.get(3)?,
                            data: row.get(4)?,
                        })
                    },
                )
                .optional()?;
            Ok(found)
        })
    }
}
