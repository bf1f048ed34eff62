//! The admin listener: `/live` (the process is up; never depends on Redis), `/ready` (this node
//! accepts new connections) and `/metrics` (Prometheus text format, see `metrics`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::text;

/// Whether the node takes new connections; the drain sets it false.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the node ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// Whether the node is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Serves the admin endpoints until `shutdown`.
pub async fn serve(listener: TcpListener, readiness: Readiness, shutdown: CancellationToken) {
    let errors = crate::http::ErrorLog::default();
    let http1 = crate::http::ServerLimits::default().http1();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = crate::http::accept(&listener, &errors) => accepted,
        };
        let http1 = http1.clone();
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let ready = readiness.is_ready();
                async move {
                    Ok::<_, Infallible>(match request.uri().path() {
                        "/live" => text(StatusCode::OK, "OK"),
                        "/ready" if ready => text(StatusCode::OK, "OK"),
                        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "Not Ready"),
                        "/metrics" => crate::http::bytes(
                            StatusCode::OK,
                            "text/plain; version=0.0.4; charset=utf-8",
                            bytes::Bytes::from(crate::metrics::metrics().render()),
                        ),
                        _ => text(StatusCode::NOT_FOUND, "Not Found"),
                    })
                }
            });
            let _ = http1.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
