//! The PostgreSQL history against a private cluster this test breaks: backends terminated mid-traffic
//! and a full restart (the store recovers by itself, no acknowledged message is lost, calls during the
//! outage fail fast), and TLS in every `sslmode` against a server with a test certificate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use chrono::Utc;
use hubcast_chat::{MessageStore, PostgresOptions, PostgresStore, TlsMode};
use hubcast_test_support::postgres::PrivatePostgres;

fn options() -> PostgresOptions {
    PostgresOptions {
        pool_size: 4,
        connect_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(2),
        ..PostgresOptions::default()
    }
}

/// Appends `count` messages to `room`, returning the acknowledged ones' texts and how many failed.
async fn append(
    store: &PostgresStore,
    room: &str,
    from: usize,
    count: usize,
) -> (Vec<String>, usize) {
    let (mut acknowledged, mut failed) = (Vec::new(), 0);
    for i in from..from + count {
        let text = format!("m{i}");
        match store.append(room, "ann", &text, Utc::now()).await {
            Ok(_) => acknowledged.push(text),
            Err(_) => failed += 1,
        }
    }
    (acknowledged, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_survives_terminated_backends_and_a_restart() {
    let cluster = PrivatePostgres::start("outage", false).unwrap();
    let store = PostgresStore::open(&cluster.url("127.0.0.1"), &options()).unwrap();
    let (mut acknowledged, failed) = append(&store, "lobby", 0, 20).await;
    assert_eq!(failed, 0);

    // Every backend ended between calls: each pooled connection is found dead and replaced.
    cluster.terminate_backends().unwrap();
    let (more, failed) = append(&store, "lobby", 20, 20).await;
    assert_eq!(failed, 0, "terminated connections are replaced before use");
    acknowledged.extend(more);

    // Ended mid-traffic: four writers at once while every backend is terminated under them. Calls in
    // flight may fail (and are not acknowledged); none hangs, and the rest go on.
    let store = std::sync::Arc::new(store);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move { append(&store, &format!("busy{w}"), 0, 50).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    cluster.terminate_backends().unwrap();
    let mut busy = Vec::new();
    for (w, writer) in writers.into_iter().enumerate() {
        let (acknowledged, failed) = writer.await.unwrap();
        println!(
            "writer {w}: {} acknowledged, {failed} failed",
            acknowledged.len()
        );
        assert!(
            acknowledged.len() >= 40,
            "writer {w} recovered: {}",
            acknowledged.len()
        );
        busy.push(acknowledged);
    }
    for (w, acknowledged) in busy.iter().enumerate() {
        let stored: Vec<String> = store
            .recent(&format!("busy{w}"), None, 200)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.content)
            .collect();
        assert_eq!(
            &stored, acknowledged,
            "writer {w}: every acknowledged message, in order"
        );
    }

    // Down: calls fail fast and say so.
    cluster.stop().unwrap();
    let started = Instant::now();
    let error = store
        .append("lobby", "ann", "while down", Utc::now())
        .await
        .expect_err("the database is down");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "failed after {:?}",
        started.elapsed()
    );
    assert!(store.ping().await.is_err());
    println!(
        "a call while down failed in {:?}: {error}",
        started.elapsed()
    );

    // Back: the same store recovers without being reopened.
    cluster.start_again().unwrap();
    let back = Instant::now();
    while store.ping().await.is_err() {
        assert!(back.elapsed() < Duration::from_secs(15), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("answering again {:?} after the restart", back.elapsed());
    let (more, failed) = append(&store, "lobby", 40, 10).await;
    assert_eq!(failed, 0);
    acknowledged.extend(more);

    let stored: Vec<String> = store
        .recent("lobby", None, 200)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(stored, acknowledged, "every acknowledged message, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_encrypt_and_verify_as_libpq_does() {
    let cluster = PrivatePostgres::start("tls", true).unwrap();
    let ca = cluster.ca_file.clone().unwrap();
    let wrong_ca =
        std::env::temp_dir().join(format!("hubcast-wrong-ca-{}.pem", std::process::id()));
    let generated = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other CA",
        ])
        .arg("-keyout")
        .arg(std::env::temp_dir().join(format!("hubcast-wrong-ca-{}.key", std::process::id())))
        .arg("-out")
        .arg(&wrong_ca)
        .output()
        .unwrap();
    assert!(generated.status.success());
    let ping = |host: &str, tls: TlsMode, ca_file: Option<&std::path::Path>| {
        let url = cluster.url(host);
        let options = PostgresOptions {
            tls: Some(tls),
            ca_file: ca_file.map(std::path::Path::to_path_buf),
            ..options()
        };
        async move { PostgresStore::open(&url, &options).unwrap().ping().await }
    };
    // Encrypted, unverified.
    ping("127.0.0.1", TlsMode::Require, None).await.unwrap();
    // The chain against the test CA; the certificate is for localhost, not 127.0.0.1.
    ping("127.0.0.1", TlsMode::VerifyCa, Some(&ca))
        .await
        .unwrap();
    let error = ping("127.0.0.1", TlsMode::VerifyFull, Some(&ca))
        .await
        .unwrap_err();
    assert!(error.0.to_lowercase().contains("certificate"), "{error}");
    ping("localhost", TlsMode::VerifyFull, Some(&ca))
        .await
        .unwrap();
    // Another CA: refused, and the error says it is the certificate.
    let error = ping("localhost", TlsMode::VerifyFull, Some(&wrong_ca))
        .await
        .unwrap_err();
    assert!(error.0.to_lowercase().contains("certificate"), "{error}");
    let error = ping("localhost", TlsMode::Require, Some(&wrong_ca))
        .await
        .unwrap_err();
    assert!(error.0.to_lowercase().contains("certificate"), "{error}");
    // The URL's own sslmode and sslrootcert.
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url("localhost"),
        ca.display()
    );
    PostgresStore::open(&url, &options())
        .unwrap()
        .ping()
        .await
        .unwrap();
    let _ = std::fs::remove_file(&wrong_ca);
}
