//! Cross-origin requests: preflights answered for allowed origins, CORS grants on responses, foreign
//! WebSocket origins refused, same-origin always fine.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::*;
use hubcast_backplane::MemoryBackplane;
use hubcast_gateway::{GatewayBuilder, HubOptions};

#[tokio::test]
async fn preflights_grants_and_websocket_origins() {
    let gateway = GatewayBuilder::new(Arc::new(MemoryBackplane::new()))
        .allowed_origins(vec!["https://app.example".into()])
        .hub("/hub", test_hub(), HubOptions::default())
        .build()
        .await
        .unwrap();
    let gateway = Arc::new(gateway);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let gateway = gateway.clone();
        let shutdown = shutdown.clone();
        async move {
            gateway
                .serve(listener, shutdown, std::time::Duration::from_millis(50))
                .await
        }
    });

    let preflight = http(
        addr,
        "OPTIONS",
        "/hub/negotiate?negotiateVersion=1",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,x-requested-with",
            ),
        ],
        b"",
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(
        preflight.headers["access-control-allow-credentials"],
        "true"
    );
    assert_eq!(
        preflight.headers["access-control-allow-headers"],
        "authorization,x-requested-with"
    );
    let refused = http(
        addr,
        "OPTIONS",
        "/hub/negotiate",
        &[("origin", "https://evil.example")],
        b"",
    )
    .await;
    assert!(refused.headers.get("access-control-allow-origin").is_none());

    let negotiate = http(
        addr,
        "POST",
        "/hub/negotiate?negotiateVersion=1",
        &[("origin", "https://app.example")],
        b"",
    )
    .await;
    assert_eq!(negotiate.status, 200);
    assert_eq!(
        negotiate.headers["access-control-allow-origin"],
        "https://app.example"
    );

    let ws = |origin: &'static str| async move {
        match ws_open_with(addr, "/hub", &[("origin", origin)]).await {
            Ok(_) => 101,
            Err(status) => status,
        }
    };
    assert_eq!(ws("https://evil.example").await, 403);
    assert_eq!(ws("https://app.example").await, 101);
    let same: &'static str = Box::leak(format!("http://{addr}").into_boxed_str());
    assert_eq!(ws(same).await, 101);
    shutdown.cancel();
}
