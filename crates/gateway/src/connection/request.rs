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
    ///
    /// The URI and the headers are copied, not cloned: hyper parses them as slices of its 8 KiB read
    /// buffer, and a clone kept for the connection's lifetime would keep that whole buffer alive
    /// (it was half the memory of an idle WebSocket connection).
    pub fn from_parts(parts: &http::request::Parts, remote_addr: Option<SocketAddr>) -> Self {
        let mut headers = HeaderMap::with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_str().as_bytes()),
                http::HeaderValue::from_bytes(value.as_bytes()),
            ) {
                headers.append(name, value);
            }
        }
        Self {
            method: parts.method.clone(),
            uri: Uri::try_from(parts.uri.to_string()).unwrap_or_else(|_| parts.uri.clone()),
            headers,
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
    fn from_parts_copies_instead_of_sharing_the_request_buffer() {
        let buffer = bytes::Bytes::from_static(b"/hub?id=abc ann-value");
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.uri = Uri::from_maybe_shared(buffer.slice(0..11)).unwrap();
        let value = http::HeaderValue::from_maybe_shared(buffer.slice(12..)).unwrap();
        parts.headers.append("x-user", value.clone());
        parts.headers.append("x-user", "second".parse().unwrap());
        let info = RequestInfo::from_parts(&parts, None);
        assert_eq!(info.uri, parts.uri);
        assert_eq!(info.query("id").as_deref(), Some("abc"));
        let copied: Vec<_> = info.headers.get_all("x-user").iter().collect();
        assert_eq!(copied.len(), 2);
        assert_eq!(copied[0], value);
        // Not a view into the original buffer.
        assert_ne!(copied[0].as_bytes().as_ptr(), value.as_bytes().as_ptr());
        assert_ne!(info.uri.path().as_ptr(), parts.uri.path().as_ptr());
    }

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
