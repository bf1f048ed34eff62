//! The drain spreads its closes evenly over the whole window, for few connections and for many (issue
//! 20: 40 connections and a 3 s window were once all closed within 0.45 s), and counts them down in
//! `hubcast_drain_remaining_connections`.

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
async fn forty_closes_are_spread_over_the_whole_window() {
    drain_spread(40, Duration::from_secs(2)).await;
}

/// 4,000 connections: every decile of them closes within its tenth of the window (give or take), and
/// `hubcast_drain_remaining_connections` counts down as they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_thousand_closes_are_spread_evenly_and_counted_down() {
    // 4,000 client and 4,000 server sockets in this process.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .unwrap();
    drain_spread(4000, Duration::from_secs(4)).await;
}

/// Opens `count` connections, drains them over `window` and checks when their Closes arrived.
async fn drain_spread(count: usize, window: Duration) {
    let registry = prometheus::Registry::new();
    let gateway = GatewayBuilder::new(Arc::new(MemoryBackplane::new()))
        .hub("/hub", test_hub(), HubOptions::default())
        .build()
        .await
        .unwrap()
        .with_drain_window(window);
    gateway.register_metrics(&registry).unwrap();
    let remaining = || {
        registry
            .gather()
            .iter()
            .find(|family| family.name() == "hubcast_drain_remaining_connections")
            .map(|family| family.get_metric()[0].get_gauge().get_value() as usize)
            .unwrap()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let serving = shutdown.clone();
    let server = tokio::spawn(async move {
        gateway
            .serve(listener, serving, window + Duration::from_secs(5))
            .await
    });
    let mut clients = Vec::new();
    for _ in 0..count {
        clients.push(HubClient::connect(addr, Protocol::Json).await);
    }
    assert_eq!(remaining(), 0, "no drain yet");
    let started = Instant::now();
    shutdown.cancel();
    // Each client waits for its Close on its own task, so every close is timed when it arrives.
    let waits: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                loop {
                    match client.next_non_ping(window + SECOND * 5).await {
                        Some(HubMessage::Close(_)) => return started.elapsed(),
                        Some(_) => {}
                        None => panic!("no Close"),
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(window / 2).await;
    let halfway = remaining();
    assert!(
        halfway > count / 5 && halfway < count * 4 / 5,
        "{halfway} of {count} left halfway through the drain"
    );
    let mut closed_at = Vec::new();
    for wait in waits {
        closed_at.push(wait.await.unwrap());
    }
    closed_at.sort();
    assert!(
        closed_at[0] < Duration::from_millis(300),
        "first close at {:?}",
        closed_at[0]
    );
    let last = closed_at[count - 1];
    assert!(
        last > window.mul_f64(0.8) && last < window + Duration::from_millis(600),
        "last close at {last:?} of a {window:?} window"
    );
    // The k-th decile of connections closes around k/10 of the window.
    for k in 1..10 {
        let at = closed_at[count * k / 10].as_secs_f64() / window.as_secs_f64();
        let expected = k as f64 / 10.0;
        assert!(
            (at - expected).abs() < 0.15,
            "decile {k} closed at {at:.2} of the window (expected {expected:.1})"
        );
    }
    assert_eq!(remaining(), 0, "the drain is over");
    server.await.unwrap();
}
