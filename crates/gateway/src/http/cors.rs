//! Cross-origin access for browsers: the configured origins get CORS headers with credentials (cookies
//! and `Authorization` travel) and preflights are answered; the same list guards WebSocket upgrades,
//! whose `Origin` browsers always send. Same-origin requests always work. With no list configured, no
//! CORS headers are sent and WebSocket origins are not checked (as ASP.NET Core does by default).

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::{Body, empty};

/// The allowed origins (`*` allows any).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cors {
    origins: Vec<String>,
}

impl Cors {
    pub(crate) fn new(origins: Vec<String>) -> Self {
        Self {
            origins: origins
                .into_iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    fn configured(&self) -> bool {
        !self.origins.is_empty()
    }

    /// The request's `Origin`, when it is cross-origin and allowed.
    fn allowed<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        self.origins
            .iter()
            .any(|allowed| allowed == "*" || *allowed == text)
            .then_some(origin)
    }

    /// Whether a WebSocket upgrade with these headers may proceed.
    pub(crate) fn websocket_allowed(&self, headers: &HeaderMap) -> bool {
        if !self.configured() || same_origin(headers) {
            return true;
        }
        headers.get(header::ORIGIN).is_none() || self.allowed(headers).is_some()
    }

    /// Answers a preflight (`OPTIONS`): the CORS grant for an allowed origin, nothing otherwise.
    pub(crate) fn preflight(&self, headers: &HeaderMap) -> Response<Body> {
        let mut response = empty(StatusCode::NO_CONTENT);
        if self.allowed(headers).is_some() {
            self.decorate(headers, &mut response);
            let out = response.headers_mut();
            out.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
            );
            if let Some(requested) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
            }
            out.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        response
    }

    /// Adds the CORS grant to a response for an allowed cross-origin request.
    pub(crate) fn decorate(&self, headers: &HeaderMap, response: &mut Response<Body>) {
        let Some(origin) = self.allowed(headers) else {
            return;
        };
        let out = response.headers_mut();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        out.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Whether `Origin` names the host the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.trim_end_matches('/').eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn origins_are_checked_when_configured() {
        let cors = Cors::new(vec!["https://app.example/".into()]);
        let allowed = headers(&[("origin", "https://APP.example"), ("host", "api.example")]);
        let foreign = headers(&[("origin", "https://evil.example"), ("host", "api.example")]);
        let same = headers(&[("origin", "http://api.example"), ("host", "api.example")]);
        assert!(cors.websocket_allowed(&allowed));
        assert!(!cors.websocket_allowed(&foreign));
        assert!(cors.websocket_allowed(&same));
        assert!(cors.websocket_allowed(&headers(&[("host", "api.example")])));
        let grant = cors.preflight(&allowed);
        assert_eq!(
            grant.headers()["access-control-allow-origin"],
            "https://APP.example"
        );
        assert_eq!(grant.headers()["access-control-allow-credentials"], "true");
        assert!(
            cors.preflight(&foreign)
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        assert!(Cors::default().websocket_allowed(&foreign));
    }
}
