//! Signing keys from an identity provider: a JWKS URL (`--jwks-url`), or the one its OpenID
//! configuration names (`--oidc-issuer`, which also makes `iss` required to be the issuer). The keys are
//! fetched at start, again every `jwks_refresh`, and again when a token names a key the set does not
//! have (the provider rotated), but never more often than `jwks_min_interval`: tokens with made-up key
//! ids cannot make hubcast hammer the provider. A failed fetch keeps the keys it has.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hubcast_gateway::auth::SharedJwks;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus::{IntCounterVec, Opts, Registry};

/// The largest JWKS or OpenID configuration document read.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// Keeps a [`SharedJwks`] fresh from a URL.
pub(crate) struct JwksSource {
    client: HttpsClient,
    url: String,
    keys: Arc<SharedJwks>,
    fetches: IntCounterVec,
}

impl JwksSource {
    /// A source for `url` (`https://`, or `http://` on a trusted network) whose fetches are counted in
    /// `hubcast_jwks_fetches_total` of `registry`.
    pub(crate) fn new(url: String, registry: &Registry) -> anyhow::Result<Self> {
        let fetches = IntCounterVec::new(
            Opts::new(
                "hubcast_jwks_fetches_total",
                "Fetches of the identity provider's signing keys, by outcome",
            ),
            &["outcome"],
        )?;
        for outcome in ["ok", "failed"] {
            fetches.with_label_values(&[outcome]);
        }
        registry.register(Box::new(fetches.clone()))?;
        Ok(Self {
            client: client()?,
            url,
            keys: Arc::new(SharedJwks::default()),
            fetches,
        })
    }

    /// The keys tokens are validated with.
    pub(crate) fn keys(&self) -> Arc<SharedJwks> {
        self.keys.clone()
    }

    /// Fetches the keys once; the error says what failed.
    async fn fetch(&self) -> anyhow::Result<usize> {
        let result = async {
            let body = get(&self.client, &self.url).await?;
            Ok(self.keys.replace(&body)?)
        }
        .await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.fetches.with_label_values(&[outcome]).inc();
        result
    }

    /// Fetches the keys now (logging a failure), then keeps them fresh on a task of their own.
    pub(crate) async fn start(self, refresh: Duration, min_interval: Duration) {
        match self.fetch().await {
            Ok(count) => tracing::info!(url = %self.url, keys = count, "signing keys fetched"),
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "cannot fetch the signing keys yet: tokens are refused until they come");
            }
        }
        tokio::spawn(async move {
            let mut last = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(refresh) => {}
                    _ = self.keys.unknown_kid() => {}
                }
                // At most one fetch per `min_interval`, whatever asks for it.
                tokio::time::sleep_until(last + min_interval).await;
                last = tokio::time::Instant::now();
                if let Err(error) = self.fetch().await {
                    tracing::warn!(url = %self.url, %error, "fetching the signing keys failed: keeping the ones we have");
                }
            }
        });
    }
}

/// The `jwks_uri` of an OpenID provider, from `{issuer}/.well-known/openid-configuration`; the
/// document's `issuer` must be `issuer`.
pub(crate) async fn discover(issuer: &str) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct Configuration {
        issuer: String,
        jwks_uri: String,
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let body = get(&client()?, &url).await?;
    let configuration: Configuration =
        serde_json::from_slice(&body).with_context(|| format!("reading {url}"))?;
    anyhow::ensure!(
        configuration.issuer.trim_end_matches('/') == issuer.trim_end_matches('/'),
        "{url} names issuer {}, not {issuer}",
        configuration.issuer
    );
    Ok(configuration.jwks_uri)
}

fn client() -> anyhow::Result<HttpsClient> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// GETs `url`: a 200 answer's body, at most [`MAX_DOCUMENT`] bytes, within [`FETCH_TIMEOUT`].
async fn get(client: &HttpsClient, url: &str) -> anyhow::Result<Bytes> {
    let request = http::Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .with_context(|| format!("the URL {url}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        anyhow::ensure!(status == http::StatusCode::OK, "GET {url}: {status}");
        let body = Limited::new(response.into_body(), MAX_DOCUMENT)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
        Ok(body.to_bytes())
    };
    tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .with_context(|| format!("GET {url}: no answer within {FETCH_TIMEOUT:?}"))?
}
