//! The chat page: a few static files from the web root (`--web-root`, default `web`), and the official
//! SignalR browser bundle from its npm package there (`npm ci --prefix web`). Only the files listed
//! here are served, so nothing else of the disk is reachable.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use hubcast_gateway::RouteHandler;
use hubcast_gateway::http::{bytes as response_bytes, text};

/// The page's files: URL path, file under the web root, content type.
const FILES: &[(&str, &str, &str)] = &[
    ("/", "index.html", "text/html; charset=utf-8"),
    ("/index.html", "index.html", "text/html; charset=utf-8"),
    ("/chat.js", "chat.js", "text/javascript; charset=utf-8"),
    ("/style.css", "style.css", "text/css; charset=utf-8"),
    (
        "/lib/signalr.min.js",
        "node_modules/@microsoft/signalr/dist/browser/signalr.min.js",
        "text/javascript; charset=utf-8",
    ),
];

/// Serves the page from `root`.
pub(crate) fn page(root: PathBuf) -> RouteHandler {
    let root = Arc::new(root);
    Arc::new(move |request| {
        let root = root.clone();
        Box::pin(async move {
            if request.method() != Method::GET && request.method() != Method::HEAD {
                return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            }
            let Some((_, file, content_type)) = FILES
                .iter()
                .find(|(path, _, _)| *path == request.uri().path())
            else {
                return text(StatusCode::NOT_FOUND, "Not Found");
            };
            match tokio::fs::read(root.join(file)).await {
                Ok(body) => response_bytes(StatusCode::OK, content_type, Bytes::from(body)),
                Err(error) => {
                    tracing::warn!(%error, file, "cannot read a page file (run `npm ci --prefix web`?)");
                    text(StatusCode::NOT_FOUND, "Not Found")
                }
            }
        })
    })
}
