//! A snapshot of the HTTP request that carries a connection's transport (the WebSocket upgrade, the SSE
//! GET, or the first long poll), as hub code reads it: headers, query, cookies, remote address.

use std::net::SocketAddr;

use http::{HeaderMap, Method, Uri};

/// The HTTP request behind a connection.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The request method.
    pub method: Method,
    /// The request URI (path and query).
    pub uri: Uri,
    /// The request headers.
    pub headers: HeaderMap,
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
}

impl RequestInfo {
    /// A request with nothing in it (for connections started without one).
    pub fn empty() -> Self {
        Self {
            method: Method::GET,
            uri: Uri::from_static("/"),
            headers: HeaderMap::new(),
            remote_addr: None,
        }
    }

    /// Captures the parts of an HTTP request.
    pub fn from_parts(parts: &http::request::Parts, remote_addr: Option<SocketAddr>) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            remote_addr,
        }
    }

    /// A header's value as text (`None` when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, percent-decoded, matching the key case-insensitively.
    pub fn query(&self, name: &str) -> Option<String> {
        hubcast_protocol::negotiate::query_param(self.uri.query().unwrap_or(""), name)
            .map(|v| v.into_owned())
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse_encoded)
            .filter_map(Result::ok)
            .find(|c| c.name() == name)
            .map(|c| c.value().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_query_and_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-test", "1".parse().unwrap());
        headers.append("cookie", "a=1; testCookie=test%20Value".parse().unwrap());
        headers.append("cookie", "b=2".parse().unwrap());
        let info = RequestInfo {
            method: Method::GET,
            uri: "/hub?ID=abc&numRedirects=3".parse().unwrap(),
            headers,
            remote_addr: None,
        };
        assert_eq!(info.header("X-Test"), Some("1"));
        assert_eq!(info.query("numredirects").as_deref(), Some("3"));
        assert_eq!(info.cookie("testCookie").as_deref(), Some("test Value"));
        assert_eq!(info.cookie("b").as_deref(), Some("2"));
        assert_eq!(info.cookie("missing"), None);
    }
}
