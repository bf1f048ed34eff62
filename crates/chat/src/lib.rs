//! # hubcast-chat
//!
//! The chat application of the seed documents. This crate owns its message store (history of rooms and
//! direct conversations); the chat hub itself builds on it.

pub mod store;

pub use store::{MessageStore, NoStore, SqliteStore, StoreError, StoredMessage, direct_room};
