//! The admin listener: `/live` (the process is up; never depends on Redis), `/ready` (this process
//! takes new work: 503 while it starts or drains, and while a dependency it reports has been failing
//! longer than the grace) and `/metrics` (the Prometheus text format of the process's one registry,
//! which the binary owns and every component registers its series in).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use hyper::body::Incoming;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{HttpMetrics, ServerLimits, bytes, text};

/// Whether the process takes new work: it must be marked ready (not starting, not draining), and no
/// dependency may have been failing for longer than the grace, so a blip does not take a whole fleet
/// out of its load balancer at once.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<ReadinessState>);

#[derive(Debug, Default)]
struct ReadinessState {
    ready: AtomicBool,
    grace: Duration,
    /// Each reported dependency.
    dependencies: Mutex<BTreeMap<&'static str, Dependency>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Dependency {
    /// Since when it fails, if it does.
    failing_since: Option<Instant>,
    /// It answered once: until then it counts as failing without a grace (a node starting without
    /// its database is not ready).
    ever_ok: bool,
}

/// Why the process is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Starting, or draining.
    Draining,
    /// These dependencies have been failing for longer than the grace.
    Failing(Vec<&'static str>),
}

impl Readiness {
    /// Not ready until [`set`](Self::set); a dependency may fail for `grace` before it makes the process
    /// not ready.
    pub fn with_grace(grace: Duration) -> Self {
        Self(Arc::new(ReadinessState {
            grace,
            ..ReadinessState::default()
        }))
    }

    /// Marks the process ready or not (started; draining).
    pub fn set(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Relaxed);
    }

    /// Records whether `dependency` answers now.
    pub fn report(&self, dependency: &'static str, ok: bool) {
        let mut dependencies = self.dependencies();
        let state = dependencies.entry(dependency).or_default();
        if ok {
            *state = Dependency {
                failing_since: None,
                ever_ok: true,
            };
        } else if state.failing_since.is_none() {
            state.failing_since = Some(Instant::now());
        }
    }

    /// Whether the process is ready, and why not.
    pub fn status(&self) -> Result<(), NotReady> {
        if !self.0.ready.load(Ordering::Relaxed) {
            return Err(NotReady::Draining);
        }
        let failing: Vec<&'static str> = self
            .dependencies()
            .iter()
            .filter(|(_, state)| {
                state
                    .failing_since
                    .is_some_and(|since| !state.ever_ok || since.elapsed() >= self.0.grace)
            })
            .map(|(name, _)| *name)
            .collect();
        if failing.is_empty() {
            Ok(())
        } else {
            Err(NotReady::Failing(failing))
        }
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.status().is_ok()
    }

    fn dependencies(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Dependency>> {
        self.0
            .dependencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// The `/ready` answer: 200 `OK`, or 503 with a JSON body saying why
/// (`{"ready":false,"reason":"draining"}`, `{"ready":false,"failing":["history"]}`).
fn ready_response(readiness: &Readiness) -> http::Response<crate::Body> {
    let body = match readiness.status() {
        Ok(()) => return text(StatusCode::OK, "OK"),
        Err(NotReady::Draining) => r#"{"ready":false,"reason":"draining"}"#.to_owned(),
        Err(NotReady::Failing(names)) => {
            let names: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
            format!(r#"{{"ready":false,"failing":[{}]}}"#, names.join(","))
        }
    };
    bytes(
        StatusCode::SERVICE_UNAVAILABLE,
        "application/json",
        bytes::Bytes::from(body),
    )
}

/// Serves the admin endpoints until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    registry: Registry,
    metrics: &HttpMetrics,
    tls: Option<crate::Tls>,
    shutdown: CancellationToken,
) {
    let handler = move |request: Request<Incoming>, _| {
        let response = match request.uri().path() {
            "/live" => text(StatusCode::OK, "OK"),
            "/ready" => ready_response(&readiness),
            "/metrics" => bytes(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                bytes::Bytes::from(render(&registry)),
            ),
            _ => text(StatusCode::NOT_FOUND, "Not Found"),
        };
        std::future::ready(response)
    };
    crate::serve(
        listener,
        &ServerLimits::default(),
        metrics,
        tls,
        shutdown,
        handler,
    )
    .await;
}

/// The text exposition of every series in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(error) = encoder.encode_utf8(&registry.gather(), &mut out) {
        tracing::warn!(%error, "metrics could not be encoded");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_fail_readiness_only_after_the_grace() {
        let readiness = Readiness::with_grace(Duration::from_millis(50));
        assert_eq!(
            readiness.status(),
            Err(NotReady::Draining),
            "not yet started"
        );
        readiness.set(true);
        readiness.report("history", false);
        assert_eq!(
            readiness.status(),
            Err(NotReady::Failing(vec!["history"])),
            "never answered yet: no grace"
        );
        readiness.report("history", true);
        readiness.report("backplane", true);
        readiness.report("history", false);
        assert!(readiness.is_ready(), "within the grace");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(readiness.status(), Err(NotReady::Failing(vec!["history"])));
        readiness.report("history", true);
        assert!(readiness.is_ready());
        readiness.set(false);
        assert_eq!(readiness.status(), Err(NotReady::Draining));
    }
}
