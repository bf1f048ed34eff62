//! # hubcast-chat
//!
//! The chat application of the seed documents: the chat hub ([`hub`]), its message stores ([`store`]: the trait; [`sqlite`], [`postgres`]) and the download route of uploaded files ([`files`]).

pub mod files;
pub mod hub;
pub mod postgres;
pub mod sqlite;
pub mod store;
pub mod tls;

pub use hub::{Chat, HistoryProbe, chat_hub};
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::SqliteStore;
pub use store::{MessageStore, NoStore, StoreError, StoredFile, StoredMessage, direct_room};
pub use tls::TlsMode;
