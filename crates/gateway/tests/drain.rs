//! The drain spreads its closes over the whole window (issue 20: 40 connections and a 3 s window were
//! all closed within 0.45 s, each 10 ms tick closing one).

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hubcast_backplane::MemoryBackplane;
use hubcast_gateway::{GatewayBuilder, HubOptions};
use hubcast_protocol::{HubMessage, Protocol};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn closes_are_spread_over_the_whole_window() {
    let gateway = GatewayBuilder::new(Arc::new(MemoryBackplane::new()))
        .hub("/hub", test_hub(), HubOptions::default())
        .build()
        .await
        .unwrap()
        .with_drain_window(Duration::from_secs(2));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let serving = shutdown.clone();
    let server = tokio::spawn(async move {
        gateway
            .serve(listener, serving, Duration::from_secs(5))
            .await
    });
    let mut clients = Vec::new();
    for _ in 0..40 {
        clients.push(HubClient::connect(addr, Protocol::Json).await);
    }
    let started = Instant::now();
    shutdown.cancel();
    // Each client waits for its Close on its own task, so every close is timed when it arrives.
    let waits: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                loop {
                    match client.next_non_ping(SECOND * 5).await {
                        Some(HubMessage::Close(_)) => return started.elapsed(),
                        Some(_) => {}
                        None => panic!("no Close"),
                    }
                }
            })
        })
        .collect();
    let mut closed_at = Vec::new();
    for wait in waits {
        closed_at.push(wait.await.unwrap());
    }
    closed_at.sort();
    let (first, last) = (closed_at[0], closed_at[39]);
    assert!(
        first < Duration::from_millis(300),
        "first close at {first:?}"
    );
    assert!(
        last > Duration::from_millis(1600),
        "last close at {last:?}: the spread is compressed"
    );
    assert!(last < Duration::from_millis(2600), "last close at {last:?}");
    server.await.unwrap();
}
