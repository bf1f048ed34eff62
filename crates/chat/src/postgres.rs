//! History in PostgreSQL, for several nodes sharing one history (`postgres://…`).
//!
//! Connections come from a pool (deadpool-postgres): each is checked before it is handed out, so one the
//! server ended (`pg_terminate_backend`, a failover, a pgbouncer restart) is dropped and replaced, and
//! the store recovers by itself. Getting a connection and each statement have timeouts, so during an
//! outage calls fail fast with a clear error instead of hanging. The tables are created on first use
//! (not at start: a node starts while the database is down, reports itself not ready, and catches up).
//! Every append is committed before the send completes.
//!
//! TLS follows libpq's `sslmode` (see [`TlsMode`]), with rustls.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Timeouts};
use hubcast_backplane::BoxFuture;
use tokio_postgres::Row;

use crate::store::{MessageStore, StoreError, StoredFile, StoredMessage, to_stored_precision};
use crate::tls::{self, TlsMode};

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        if let Some(db) = error.as_db_error() {
            return Self(format!("{error}: {}", db.message()));
        }
        // The cause says what failed: refused, timed out, which certificate problem.
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        Self(text)
    }
}

/// How to reach the database, beside its URL.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The password, instead of one in the URL.
    pub password: Option<String>,
    /// TLS: the URL's `sslmode` when this is `None` (default `prefer`, as libpq).
    pub tls: Option<TlsMode>,
    /// The CA certificates (PEM) the server's certificate must chain to; without one, the Mozilla
    /// roots (webpki-roots).
    pub ca_file: Option<PathBuf>,
    /// Connections at most.
    pub pool_size: usize,
    /// Connecting (TCP, TLS, authentication) may take this long.
    pub connect_timeout: Duration,
    /// Each statement may take this long (the server cancels it after that).
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            password: None,
            tls: None,
            ca_file: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// History in a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    /// Set once the tables exist.
    schema: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

/// Creates the tables when missing. Nodes starting together must not race on it (an advisory lock
/// serializes them; CREATE … IF NOT EXISTS alone can fail when run concurrently).
const SCHEMA: &str = "BEGIN;
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
     CREATE TABLE IF NOT EXISTS hubcast_files (
         id TEXT PRIMARY KEY,
         owner TEXT NOT NULL,
         name TEXT NOT NULL,
         content_type TEXT NOT NULL,
         data BYTEA NOT NULL
     );
     COMMIT;";

impl PostgresStore {
    /// Checks a `postgres://` URL (or libpq key-value string), with its TLS settings, without
    /// connecting.
    pub fn check(url: &str) -> Result<(), StoreError> {
        tls::split_url(url)?.0.parse::<tokio_postgres::Config>()?;
        Ok(())
    }

    /// The store over a pool of connections to `url`. Nothing is connected yet: the first call
    /// connects (and creates the tables when missing), so a node starts while the database is down.
    pub fn open(url: &str, options: &PostgresOptions) -> Result<Self, StoreError> {
        let (url, from_url) = tls::split_url(url)?;
        let mut config: tokio_postgres::Config = url.parse()?;
        if let Some(password) = &options.password {
            config.password(password);
        }
        let mode = options.tls.or(from_url.mode).unwrap_or(TlsMode::Prefer);
        let ca_file = options.ca_file.clone().or(from_url.ca_file);
        config.ssl_mode(mode.wire());
        config.connect_timeout(options.connect_timeout);
        config.options(format!(
            "-c statement_timeout={}",
            options.statement_timeout.as_millis()
        ));
        let manager = ManagerConfig {
            // A connection is tried before it is handed out: one the server ended is replaced.
            recycling_method: RecyclingMethod::Verified,
        };
        let manager = match tls::connector(mode, ca_file.as_deref())? {
            Some(connector) => Manager::from_config(config, connector, manager),
            None => Manager::from_config(config, tokio_postgres::NoTls, manager),
        };
        let wait = options.connect_timeout + options.statement_timeout;
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(wait),
                create: Some(options.connect_timeout),
                recycle: Some(options.statement_timeout),
            })
            .build()
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(Self {
            pool,
            schema: tokio::sync::OnceCell::new(),
        })
    }

    /// A connection from the pool, the tables created first if they are not yet.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        let client = self.pool.get().await.map_err(|error| {
            StoreError(match error {
                deadpool_postgres::PoolError::Backend(error) => StoreError::from(error).0,
                other => format!("the history database is unreachable: {other}"),
            })
        })?;
        self.schema
            .get_or_try_init(|| async {
                client.batch_execute(SCHEMA).await.map_err(StoreError::from)
            })
            .await?;
        Ok(client)
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
                .client()
                .await?
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
                .client()
                .await?
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
                .client()
                .await?
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
                .client()
                .await?
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
            self.client()
                .await?
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
                .client()
                .await?
                .query_opt(
                    "SELECT until FROM hubcast_mutes WHERE user_name = $1 AND until > now()",
                    &[&user],
                )
                .await?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn put_file(&self, file: StoredFile) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.client()
                .await?
                .execute(
                    "INSERT INTO hubcast_files (id, owner, name, content_type, data)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &file.id,
                        &file.owner,
                        &file.name,
                        &file.content_type,
                        &file.data,
                    ],
                )
                .await?;
            Ok(())
        })
    }

    fn file(&self, id: &str) -> BoxFuture<'_, Result<Option<StoredFile>, StoreError>> {
        let id = id.to_owned();
        Box::pin(async move {
            let row = self
                .client()
                .await?
                .query_opt(
                    "SELECT id, owner, name, content_type, data FROM hubcast_files WHERE id = $1",
                    &[&id],
                )
                .await?;
            Ok(row.map(|row| StoredFile {
                id: row.get(0),
                owner: row.get(1),
                name: row.get(2),
                content_type: row.get(3),
                data: row.get(4),
            }))
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.client().await?.simple_query("SELECT 1").await?;
            Ok(())
        })
    }
}
