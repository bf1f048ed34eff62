//! The chat page: a few static files from the web root (`--web-root`, default `web`), and the official
//! SignalR browser bundle from its npm package there (`npm ci --prefix web`). Only the files listed
//! here are served, so nothing else of the disk is reachable. Every response carries the headers that
//! keep the page from being framed (clickjacking of the moderation buttons), sniffed or made to run
//! anything but its own scripts.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use hubcast_http::Body;
use hubcast_http::RouteHandler;
use hubcast_http::{bytes as response_bytes, text};

/// The page's files: URL path, file under the web root, content type.
const FILES: &[(&str, &str, &str)] = &[
    ("/", "index.html", "text/html; charset=utf-8"),
    ("/index.html", "index.html", "text/html; charset=utf-8"),
    ("/chat.js", "chat.js", "text/javascript; charset=utf-8"),
    ("/style.css", "style.css", "text/css; charset=utf-8"),
    ("/favicon.svg", "favicon.svg", "image/svg+xml"),
    (
        "/lib/signalr.min.js",
        "node_modules/@microsoft/signalr/dist/browser/signalr.min.js",
        "text/javascript; charset=utf-8",
    ),
];

/// The headers of every page response: only same-origin scripts, styles and connections (the hub is
/// same-origin; `ws:`/`wss:` for its WebSockets), no framing, no MIME sniffing, no referrer abroad.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
];

fn with_security_headers(mut response: Response<Body>) -> Response<Body> {
    for (name, value) in SECURITY_HEADERS {
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// Serves the page from `root`.
pub(crate) fn page(root: PathBuf) -> RouteHandler {
    let root = Arc::new(root);
    Arc::new(move |request| {
        let root = root.clone();
        Box::pin(async move {
            // An unknown path is 404 whatever the method (as ASP.NET Core answers).
            let Some((_, file, content_type)) = FILES
                .iter()
                .find(|(path, _, _)| *path == request.uri().path())
            else {
                return with_security_headers(text(StatusCode::NOT_FOUND, "Not Found"));
            };
            if request.method() != Method::GET && request.method() != Method::HEAD {
                return with_security_headers(text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Method Not Allowed",
                ));
            }
            with_security_headers(match tokio::fs::read(root.join(file)).await {
                Ok(body) => response_bytes(StatusCode::OK, content_type, Bytes::from(body)),
                Err(error) => {
                    tracing::warn!(%error, file, "cannot read a page file (run `npm ci --prefix web`?)");
                    text(StatusCode::NOT_FOUND, "Not Found")
                }
            })
        })
    })
}
