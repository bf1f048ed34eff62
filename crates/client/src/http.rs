//! The hub URL (negotiate and connection URLs derived from it, as the official clients derive them)
//! and the HTTP requests every transport makes: the user's headers and the bearer token go with each.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::{Error, Result};

/// A hub URL split into what the requests need. Only plain `http`/`ws` URLs are accepted; put a TLS
/// terminating proxy (or sidecar) in front of `https` hubs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HubUrl {
    /// `host:port` as written.
    pub(crate) authority: String,
    /// The path, without a trailing `/`.
    pub(crate) path: String,
    /// The user's query string (without `?`), kept on every request.
    pub(crate) query: String,
}

impl HubUrl {
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::InvalidUrl(format!("{url}: {e}")))?;
        match uri.scheme_str() {
            Some("http" | "ws") => {}
            Some("https" | "wss") => {
                return Err(Error::InvalidUrl(format!(
                    "{url}: TLS is not built in; connect through a TLS-terminating proxy"
                )));
            }
            _ => return Err(Error::InvalidUrl(format!("{url}: expected an http:// URL"))),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| Error::InvalidUrl(format!("{url}: no host")))?
            .to_string();
        Ok(Self {
            authority,
            path: uri.path().trim_end_matches('/').to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
        })
    }

    fn with_query(&self, path: &str, extra: &[(&str, &str)]) -> String {
        let mut query = form_urlencoded::Serializer::new(self.query.clone());
        for (name, value) in extra {
            query.append_pair(name, value);
        }
        let query = query.finish();
        if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        }
    }

    /// `POST` target of negotiate: the path plus `/negotiate`, the user's query plus the version.
    pub(crate) fn negotiate(&self, stateful: bool) -> String {
        let mut extra = vec![("negotiateVersion", "1")];
        if stateful {
            extra.push(("useStatefulReconnect", "true"));
        }
        format!(
            "http://{}{}",
            self.authority,
            self.with_query(&format!("{}/negotiate", self.path), &extra)
        )
    }

    /// Path and query of the connection endpoint, with `id=<token>` when negotiated.
    pub(crate) fn path_and_query(&self, token: Option<&str>) -> String {
        let extra: Vec<(&str, &str)> = token.map(|t| ("id", t)).into_iter().collect();
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        self.with_query(path, &extra)
    }

    /// Absolute URL of the connection endpoint (for SSE, long polling and sends).
    pub(crate) fn connection(&self, token: Option<&str>) -> String {
        format!("http://{}{}", self.authority, self.path_and_query(token))
    }
}

/// The HTTP client every request goes through.
#[derive(Clone)]
pub(crate) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl Http {
    pub(crate) fn new(headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(30)));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            headers: Arc::new(headers),
        }
    }

    /// The user's headers plus `Authorization: Bearer <token>`.
    pub(crate) fn headers(&self, token: Option<&str>) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = (*self.headers).clone();
        if let Some(value) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
        {
            headers.push((AUTHORIZATION, value));
        }
        headers
    }

    /// Sends a request and returns the response with its body still streaming.
    pub(crate) async fn request(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        extra: &[(HeaderName, &'static str)],
        body: Bytes,
    ) -> Result<http::Response<Incoming>> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in self.headers(token) {
            request = request.header(name, value);
        }
        for (name, value) in extra {
            request = request.header(name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| Error::InvalidUrl(e.to_string()))?;
        self.client.request(request).await.map_err(Error::transport)
    }

    /// Sends a request and reads the whole body.
    pub(crate) async fn fetch(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes)> {
        let response = self.request(method, url, token, &[], body).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(Error::transport)?
            .to_bytes();
        Ok((status, body))
    }
}

/// An error for an unexpected status, with the body as its text.
pub(crate) fn status_error(status: StatusCode, body: &[u8]) -> Error {
    Error::Http {
        status,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_users_query() {
        let url = HubUrl::parse("http://h:1/hubs/chat/?room=a%20b").unwrap();
        assert_eq!(
            url.negotiate(true),
            "http://h:1/hubs/chat/negotiate?room=a%20b&negotiateVersion=1&useStatefulReconnect=true"
        );
        assert_eq!(
            url.connection(Some("t+k")),
            "http://h:1/hubs/chat?room=a%20b&id=t%2Bk"
        );
        let bare = HubUrl::parse("ws://h:1").unwrap();
        assert_eq!(bare.path_and_query(None), "/");
        assert_eq!(
            bare.negotiate(false),
            "http://h:1/negotiate?negotiateVersion=1"
        );
    }

    #[test]
    fn unsupported_urls_are_refused() {
        for url in ["https://h/hub", "ftp://h/x", "/relative", "http://"] {
            assert!(
                matches!(HubUrl::parse(url), Err(Error::InvalidUrl(_))),
                "{url}"
            );
        }
    }
}
