//! History in PostgreSQL, for several nodes sharing one history (`--history postgres://…`). The table is
//! created at start when missing; every append is committed before the send completes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hubcast_backplane::BoxFuture;
use tokio_postgres::{Client, NoTls, Row};

use crate::store::{MessageStore, StoreError, StoredMessage, to_stored_precision};

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => Self(format!("{error}: {}", db.message())),
            None => Self(error.to_string()),
        }
    }
}

/// History in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    client: Arc<Client>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Checks a `postgres://` URL (or libpq key-value string) without connecting.
    pub fn check(config: &str) -> Result<(), StoreError> {
        config.parse::<tokio_postgres::Config>()?;
        Ok(())
    }

    /// Connects (a `postgres://` URL or a libpq key-value string) and creates the table if missing.
    pub async fn connect(config: &str, password: Option<&str>) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = config.parse()?;
        if let Some(password) = password {
            config.password(password);
        }
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::error!(%error, "history database connection ended");
            }
        });
        client
            // Nodes starting together must not race on creating the tables (an advisory lock
            // serializes them; CREATE … IF NOT EXISTS alone can fail when run concurrently).
            .batch_execute(
                "BEGIN;
                 SELECT pg_advisory_xact_lock(7243801);
                 CREATE TABLE IF NOT EXISTS hubcast_messages (
                     id BIGSERIAL PRIMARY KEY,
                     room TEXT NOT NULL,
                     from_user TEXT NOT NULL,
                     content TEXT NOT NULL,
                     utc TIMESTAMPTZ NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS hubcast_messages_room_id ON hubcast_messages (room, id);
                 CREATE TABLE IF NOT EXISTS hubcast_mutes (
                     user_name TEXT PRIMARY KEY,
                     until TIMESTAMPTZ NOT NULL
                 );
                 COMMIT;",
            )
            .await?;
        Ok(Self {
            client: Arc::new(client),
        })
    }
}

fn message(row: &Row) -> StoredMessage {
    let utc: DateTime<Utc> = row.get(4);
    StoredMessage {
        id: row.get(0),
        room: row.get(1),
        from_user: row.get(2),
        content: row.get(3),
        utc: utc.into(),
    }
}

const COLUMNS: &str = "id, room, from_user, content, utc";

impl MessageStore for PostgresStore {
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
        Box::pin(async move {
            let row = self
                .client
                .query_one(
                    &format!("INSERT INTO hubcast_messages (room, from_user, content, utc) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"),
                    &[&room, &from_user, &content, &utc],
                )
                .await?;
            Ok(message(&row))
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
        Box::pin(async move {
            let rows = self
                .client
                .query(
                    &format!("SELECT {COLUMNS} FROM hubcast_messages WHERE room = $1 AND id < $2 ORDER BY id DESC LIMIT $3"),
                    &[&room, &before.unwrap_or(i64::MAX), &take],
                )
                .await?;
            Ok(rows.iter().rev().map(message).collect())
        })
    }

    fn delete(&self, id: i64) -> BoxFuture<'_, Result<Option<StoredMessage>, StoreError>> {
        Box::pin(async move {
            let row = self
                .client
                .query_opt(
                    &format!("DELETE FROM hubcast_messages WHERE id = $1 RETURNING {COLUMNS}"),
                    &[&id],
                )
                .await?;
            Ok(row.as_ref().map(message))
        })
    }

    fn recent_by_id(&self, id: i64) -> BoxFuture<'_, Result<Option<StoredMessage>, StoreError>> {
        Box::pin(async move {
            let row = self
                .client
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM hubcast_messages WHERE id = $1"),
                    &[&id],
                )
                .await?;
            Ok(row.as_ref().map(message))
        })
    }

    fn mute(&self, user: &str, until: DateTime<Utc>) -> BoxFuture<'_, Result<(), StoreError>> {
        let user = user.to_owned();
        Box::pin(async move {
            self.client
                .execute(
                    "INSERT INTO hubcast_mutes (user_name, until) VALUES ($1, $2)
                     ON CONFLICT (user_name) DO UPDATE SET until = EXCLUDED.until",
                    &[&user, &until],
                )
                .await?;
            Ok(())
        })
    }

    fn muted_until(&self, user: &str) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        let user = user.to_owned();
        Box::pin(async move {
            let row = self
                .client
                .query_opt(
                    "SELECT until FROM hubcast_mutes WHERE user_name = $1 AND until > now()",
                    &[&user],
                )
                .await?;
            Ok(row.map(|row| row.get(0)))
        })
    }
}
