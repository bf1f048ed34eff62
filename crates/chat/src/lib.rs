//! # hubcast-chat
//!
//! The chat application of the seed documents: the chat hub ([`hub`]) and its message stores ([`store`]: the trait; [`sqlite`], [`postgres`]).

pub mod hub;
pub mod postgres;
pub mod sqlite;
pub mod store;
pub mod tls;

pub use hub::{Chat, HistoryProbe, chat_hub};
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::SqliteStore;
pub use store::{MessageStore, NoStore, StoreError, StoredMessage, direct_room};
pub use tls::TlsMode;
