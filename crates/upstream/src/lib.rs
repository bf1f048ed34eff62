//! # hubcast-upstream
//!
//! Upstream (serverless) hubs: a hub whose methods live in an HTTP backend written in any language, as
//! Azure SignalR's upstream does it. Every client invocation and every connect and disconnect is POSTed
//! to a URL built from a template (`{hub}`, `{category}` = `messages` or `connections`, `{event}` = the
//! method name, `connected` or `disconnected`), with headers naming the connection, hub, category,
//! event, user and claims, and `X-ASRS-Signature: sha256=<hex HMAC-SHA256 of the connection id>` for
//! each configured key. A 2xx answer's JSON body is the invocation's result (empty: null); another
//! status is a Completion error. Events are retried, invocations are not; requests time out; at most
//! `concurrency` requests are in flight. The backend pushes with the control API.
//!
//! An application of the gateway's public Hub API: the gateway itself carries no HTTP client.

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hubcast_protocol::RawValue;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::sync::Semaphore;

use hubcast_gateway::hub::{Context, Hub, HubError};
use prometheus::{IntCounterVec, Opts, Registry};

/// How an upstream hub reaches its backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOptions {
    /// The hub's name (`{hub}`, and what the control API calls it).
    pub hub: String,
    /// Where clients connect [default: `/hubs/<hub>`].
    #[serde(default)]
    pub path: Option<String>,
    /// URL template, e.g. `http://backend:3000/{hub}/api/{category}/{event}` (plain HTTP).
    pub url: String,
    /// Keys of the signature header (one header value per key, for rotation).
    #[serde(default)]
    pub keys: Vec<String>,
    /// How long one request may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra attempts of a connected/disconnected event after a failure.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Requests in flight at most.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_retries() -> u32 {
    2
}

fn default_concurrency() -> usize {
    64
}

/// Why an upstream configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream of hub '{hub}': {reason}")]
pub struct UpstreamError {
    hub: String,
    reason: String,
}

/// The upstream hubs' series (`hubcast_upstream_requests_total`), shared by every upstream hub of a
/// process and registered by the binary.
#[derive(Clone)]
pub struct UpstreamMetrics {
    requests: IntCounterVec,
}

impl Default for UpstreamMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl UpstreamMetrics {
    /// The series, registered nowhere yet.
    pub fn new() -> Self {
        let opts = Opts::new(
            "hubcast_upstream_requests_total",
            "Upstream requests by category and outcome",
        );
        Self {
            requests: IntCounterVec::new(opts, &["hub", "category", "outcome"])
                .unwrap_or_else(|e| unreachable!("a static metric definition: {e}")),
        }
    }

    /// Adds the series to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))
    }
}

/// The state of an upstream hub.
pub struct Upstream {
    options: UpstreamOptions,
    metrics: UpstreamMetrics,
    client: Client<HttpConnector, Full<Bytes>>,
    in_flight: Semaphore,
}

/// The largest upstream answer read.
const MAX_ANSWER: usize = 1024 * 1024;

type Ctx = Context<Upstream>;

/// A request's outcome: the status and body of a response, or why there was none.
type Answer = Result<(StatusCode, Bytes), String>;

impl Upstream {
    fn signature(&self, connection: &str) -> String {
        self.options
            .keys
            .iter()
            .filter_map(|key| {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).ok()?;
                mac.update(connection.as_bytes());
                let hex: String = mac
                    .finalize()
                    .into_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                Some(format!("sha256={hex}"))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// POSTs `body` for `event` of `category` on behalf of the connection of `ctx`.
    async fn post(&self, ctx: &Ctx, category: &str, event: &str, body: Bytes) -> Answer {
        let hub = &self.options.hub;
        let url = self
            .options
            .url
            .replace("{hub}", hub)
            .replace("{category}", category)
            .replace("{event}", event);
        let connection = ctx.connection_id().as_str();
        let mut request = Request::post(url)
            .header("content-type", "application/json")
            .header("x-asrs-connection-id", connection)
            .header("x-asrs-hub", hub.as_str())
            .header("x-asrs-category", category)
            .header("x-asrs-event", event)
            .header("x-asrs-signature", self.signature(connection));
        if let Some(user) = ctx.user() {
            let claims = serde_json::Value::Object(user.claims.clone()).to_string();
            request = request
                .header("x-asrs-user-id", user.id.as_str())
                .header("x-asrs-user-claims", claims);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("invalid request: {e}"))?;
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| "the upstream is shut down".to_owned())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("upstream unreachable: {e}"))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("upstream answer unreadable: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        let answer = tokio::time::timeout(self.options.timeout, exchange)
            .await
            .map_err(|_| format!("upstream did not answer within {:?}", self.options.timeout))
            .and_then(|answer| answer);
        let outcome = match &answer {
            Ok((status, _)) if status.is_success() => "ok",
            Ok(_) => "refused",
            Err(_) => "failed",
        };
        self.metrics
            .requests
            .with_label_values(&[hub.as_str(), category, outcome])
            .inc();
        answer
    }

    /// POSTs an event, retrying failures (network errors and 5xx) with a growing pause.
    async fn event(&self, ctx: &Ctx, event: &str, body: serde_json::Value) -> Result<(), String> {
        let body = Bytes::from(body.to_string());
        let mut pause = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let error = match self.post(ctx, "connections", event, body.clone()).await {
                Ok((status, _)) if status.is_success() => return Ok(()),
                Ok((status, _)) if !status.is_server_error() => {
                    return Err(format!("upstream refused the {event} event: {status}"));
                }
                Ok((status, _)) => format!("upstream answered {status}"),
                Err(error) => error,
            };
            if attempt >= self.options.retries {
                return Err(error);
            }
            attempt += 1;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

/// A hub whose methods and connection events go to the backend `options` names.
pub fn upstream_hub(
    options: UpstreamOptions,
    metrics: &UpstreamMetrics,
) -> Result<Hub<Upstream>, UpstreamError> {
    let fail = |reason: &str| UpstreamError {
        hub: options.hub.clone(),
        reason: reason.to_owned(),
    };
    if !options.url.starts_with("http://") {
        return Err(fail("the URL template must start with http://"));
    }
    if options.concurrency == 0 {
        return Err(fail("concurrency must be at least 1"));
    }
    let client = Client::builder(TokioExecutor::new()).build_http();
    for category in ["messages", "connections"] {
        let labels = [options.hub.as_str(), category, "ok"];
        metrics.requests.with_label_values(&labels);
    }
    let name = options.hub.clone();
    let upstream = Upstream {
        in_flight: Semaphore::new(options.concurrency),
        options,
        metrics: metrics.clone(),
        client,
    };
    Ok(Hub::builder(name, upstream)
        .on_connected(|ctx: Ctx| async move {
            let upstream = ctx.state();
            upstream
                .event(&ctx, "connected", serde_json::json!({}))
                .await
                .map_err(|error| {
                    tracing::warn!(%error, "upstream connected event failed: closing the connection");
                    HubError::new("The upstream refused the connection.")
                })
        })
        .on_disconnected(|ctx: Ctx, error| async move {
            let body = serde_json::json!({ "Error": error });
            if let Err(error) = ctx.state().event(&ctx, "disconnected", body).await {
                tracing::warn!(%error, "upstream disconnected event failed");
            }
        })
        .fallback(|ctx: Ctx, target: String, args: Vec<RawValue>| async move {
            let arguments = args
                .iter()
                .map(|raw| raw.deserialize::<serde_json::Value>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| HubError::new(format!("Arguments could not be read: {}", e.0)))?;
            let body = serde_json::json!({ "Target": target, "Arguments": arguments });
            let answer = ctx
                .state()
                .post(&ctx, "messages", &target, Bytes::from(body.to_string()))
                .await
                .map_err(|error| {
                    tracing::debug!(%error, "upstream invocation failed");
                    HubError::new(error)
                })?;
            match answer {
                (status, body) if status.is_success() => {
                    if body.iter().all(u8::is_ascii_whitespace) {
                        return Ok(serde_json::Value::Null);
                    }
                    serde_json::from_slice(&body).map_err(|e| {
                        HubError::new(format!("The upstream answer is not JSON: {e}"))
                    })
                }
                (status, body) => {
                    let text = String::from_utf8_lossy(&body);
                    let text: String = text.chars().take(512).collect();
                    Err(HubError::new(format!("Upstream error {}: {text}", status.as_u16())))
                }
            }
        })
        .build())
}
