//! The message stores, SQLite and PostgreSQL (the local server: `HUBCAST_TEST_POSTGRES`, default
//! `host=127.0.0.1 user=postgres dbname=test`): history order and paging, deletion, direct-conversation
//! keys, durability across a reopen, mutes and uploaded files shared through the store.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chrono::Utc;
use hubcast_chat::{
    MessageStore, NoStore, PostgresOptions, PostgresStore, SqliteStore, StoredFile, direct_room,
};

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hubcast-chat-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("history.db")
}

/// A room name no other run uses (the PostgreSQL table is shared).
fn room(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

async fn postgres() -> PostgresStore {
    let config = std::env::var("HUBCAST_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".to_owned());
    let store = PostgresStore::open(&config, &PostgresOptions::default()).unwrap();
    store
        .ping()
        .await
        .expect("the local PostgreSQL (see the module doc)");
    store
}

async fn paging(store: &dyn MessageStore) {
    let lobby = room("lobby");
    for i in 0..10 {
        store
            .append(&lobby, "ann", &format!("m{i}"), Utc::now())
            .await
            .unwrap();
    }
    store
        .append(&room("other"), "bob", "elsewhere", Utc::now())
        .await
        .unwrap();
    let recent = store.recent(&lobby, None, 3).await.unwrap();
    assert_eq!(
        recent
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["m7", "m8", "m9"]
    );
    let older = store.recent(&lobby, Some(recent[0].id), 3).await.unwrap();
    assert_eq!(
        older.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
        ["m4", "m5", "m6"]
    );
    assert!(
        store
            .recent(&room("nobody"), None, 50)
            .await
            .unwrap()
            .is_empty()
    );
    // Deletion, and reading one message.
    let gone = recent[2].clone();
    assert_eq!(
        store.recent_by_id(gone.id).await.unwrap(),
        Some(gone.clone())
    );
    assert_eq!(store.delete(gone.id).await.unwrap(), Some(gone.clone()));
    assert_eq!(store.recent_by_id(gone.id).await.unwrap(), None);
    assert_eq!(store.delete(gone.id).await.unwrap(), None);
    assert_eq!(
        store.recent(&lobby, None, 1).await.unwrap()[0].content,
        "m8"
    );
}

#[tokio::test]
async fn sqlite_history_is_oldest_first_and_pages_backwards() {
    paging(&SqliteStore::open(temp_db("paging")).unwrap()).await;
}

#[tokio::test]
async fn postgres_history_is_oldest_first_and_pages_backwards() {
    paging(&postgres().await).await;
}

#[tokio::test]
async fn postgres_messages_survive_a_new_connection() {
    let lobby = room("durable");
    let sent = postgres()
        .await
        .append(&lobby, "ann", "kept", Utc::now())
        .await
        .unwrap();
    assert_eq!(
        postgres().await.recent(&lobby, None, 10).await.unwrap(),
        vec![sent]
    );
}

#[tokio::test]
async fn messages_survive_a_reopen_and_can_be_deleted() {
    let path = temp_db("reopen");
    let sent = {
        let store = SqliteStore::open(&path).unwrap();
        store
            .append("lobby", "ann", "kept", Utc::now())
            .await
            .unwrap()
    };
    let store = SqliteStore::open(&path).unwrap();
    let history = store.recent("lobby", None, 50).await.unwrap();
    assert_eq!(history, vec![sent.clone()]);
    assert_eq!(store.delete(sent.id).await.unwrap(), Some(sent));
    assert!(store.recent("lobby", None, 50).await.unwrap().is_empty());
    assert_eq!(store.delete(12345).await.unwrap(), None);
}

#[tokio::test]
async fn direct_rooms_and_no_store() {
    assert_eq!(direct_room("bob", "ann"), direct_room("ann", "bob"));
    assert_eq!(direct_room("ann", "bob"), "dm:ann:bob");
    let none = NoStore::default();
    none.append("lobby", "ann", "x", Utc::now()).await.unwrap();
    assert!(none.recent("lobby", None, 10).await.unwrap().is_empty());
}

#[test]
fn stored_messages_serialize_as_the_client_reads_them() {
    let message = hubcast_chat::StoredMessage {
        id: 1,
        room: "lobby".into(),
        from_user: "ann".into(),
        content: "hi".into(),
        utc: hubcast_protocol::dotnet::DateTime(chrono::DateTime::from_timestamp(0, 0).unwrap()),
    };
    let json = serde_json_like(&message);
    assert!(json.contains("\"fromUser\":\"ann\""), "{json}");
    assert!(json.contains("\"utc\":\"1970-01-01T00:00:00Z\""), "{json}");
}

fn serde_json_like(message: &hubcast_chat::StoredMessage) -> String {
    let mut out = Vec::new();
    hubcast_protocol::naming::to_json_writer(
        &mut out,
        message,
        hubcast_protocol::NamingPolicy::AsDeclared,
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

/// A mute holds until its time, can be lifted, and is seen through another handle on the same store.
async fn mutes(store: &dyn MessageStore, other: &dyn MessageStore) {
    let user = room("muted");
    assert_eq!(store.muted_until(&user).await.unwrap(), None);
    let until = Utc::now() + chrono::Duration::minutes(5);
    store.mute(&user, until).await.unwrap();
    let seen = other.muted_until(&user).await.unwrap().unwrap();
    assert!(
        (seen - until).num_milliseconds().abs() < 1,
        "{seen} vs {until}"
    );
    store
        .mute(&user, Utc::now() - chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(other.muted_until(&user).await.unwrap(), None);
    assert_eq!(store.muted_until("somebody else").await.unwrap(), None);
}

#[tokio::test]
async fn mutes_are_shared_through_the_store() {
    let path = temp_db("mutes");
    let (a, b) = (
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    );
    mutes(&a, &b).await;
    let (a, b) = (postgres().await, postgres().await);
    mutes(&a, &b).await;
    let none = NoStore::default();
    mutes(&none, &none).await;
}

/// An uploaded file comes back byte for byte through another handle; an id twice is refused.
async fn files(store: &dyn MessageStore, other: &dyn MessageStore) {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let file = StoredFile {
        id: room("file"),
        owner: "ann".into(),
        name: "naïve.bin".into(),
        content_type: "application/octet-stream".into(),
        data,
    };
    store.put_file(file.clone()).await.unwrap();
    assert_eq!(other.file(&file.id).await.unwrap(), Some(file.clone()));
    assert_eq!(other.file("nothing-here").await.unwrap(), None);
    assert!(store.put_file(file).await.is_err(), "ids are unique");
}

#[tokio::test]
async fn uploaded_files_are_kept_with_the_history() {
    let path = temp_db("files");
    let (a, b) = (
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    );
    files(&a, &b).await;
    let (a, b) = (postgres().await, postgres().await);
    files(&a, &b).await;
    let none = NoStore::default();
    let error = none
        .put_file(StoredFile {
            id: "x".into(),
            owner: "ann".into(),
            name: "x".into(),
            content_type: "text/plain".into(),
            data: vec![1],
        })
        .await
        .unwrap_err();
    assert!(error.0.contains("--history none"), "{error}");
}
