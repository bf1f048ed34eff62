//! # hubcast-chat
//!
//! The chat application of the seed documents: the chat hub ([`hub`]) and its message store ([`store`]).

pub mod hub;
pub mod postgres;
pub mod store;

pub use hub::{Chat, chat_hub};
pub use postgres::PostgresStore;
pub use store::{MessageStore, NoStore, SqliteStore, StoreError, StoredMessage, direct_room};
