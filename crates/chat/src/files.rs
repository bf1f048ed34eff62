//! Uploaded files: what `UploadFile` accepts as a name and a content type, and `GET /uploads/<id>`,
//! which serves a kept file back.
//!
//! Files come from users and are served from the page's origin, so nothing in one may run there: every
//! response is `Content-Disposition: attachment` with `nosniff` and a sandboxing CSP, and only passive
//! content types (images, audio, video, plain text, PDF, archives) are served as given; anything else
//! (HTML, SVG, XML, scripts, unknown types) goes out as `application/octet-stream`. Ids are 128 random
//! bits: the URL is the capability, as with links shared in a chat.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use hubcast_http::{RouteHandler, bytes as response_bytes, empty, text};
use hyper::body::Incoming;

use crate::store::MessageStore;

/// The longest file name kept, in bytes.
pub const MAX_NAME: usize = 255;

/// The file name to keep: the last path component of `name`, trimmed; 1 to [`MAX_NAME`] bytes without
/// control characters.
pub fn check_name(name: &str) -> Result<String, &'static str> {
    let name = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if name.is_empty()
        || name.len() > MAX_NAME
        || name == "."
        || name == ".."
        || name.chars().any(char::is_control)
    {
        return Err("The file name must be 1 to 255 bytes without control characters.");
    }
    Ok(name.to_owned())
}

/// The content type to keep: `type/subtype` in lower case (parameters dropped);
/// `application/octet-stream` when none is given.
pub fn check_content_type(content_type: &str) -> Result<String, &'static str> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() {
        return Ok(OCTET_STREAM.to_owned());
    }
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind, subtype)) if essence.len() <= 127 && token(kind) && token(subtype) => {
            Ok(essence)
        }
        _ => Err("The content type must be type/subtype."),
    }
}

const OCTET_STREAM: &str = "application/octet-stream";

/// Whether a browser only ever displays `content_type` (never runs or renders it as a document).
fn passive(content_type: &str) -> bool {
    const EXACT: &[&str] = &[
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "text/plain",
        "text/csv",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/json",
    ];
    EXACT.contains(&content_type)
        || content_type.starts_with("audio/")
        || content_type.starts_with("video/")
}

/// `attachment` with the name, ASCII-only in `filename` and exact in `filename*` (RFC 6266).
fn disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact =
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string();
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{exact}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// `GET`/`HEAD /uploads/<id>`: the file, or 404. A store that does not answer is a 503.
pub fn route(store: Arc<dyn MessageStore>, errors: prometheus::IntCounter) -> RouteHandler {
    Arc::new(move |request: Request<Incoming>| {
        let store = store.clone();
        let errors = errors.clone();
        Box::pin(async move {
            if request.method() != Method::GET && request.method() != Method::HEAD {
                return empty(StatusCode::METHOD_NOT_ALLOWED);
            }
            let id = request
                .uri()
                .path()
                .strip_prefix("/uploads/")
                .unwrap_or_default();
            if !hubcast_protocol::ids::is_random_id(id) {
                return text(StatusCode::NOT_FOUND, "no such file");
            }
            let file = match store.file(id).await {
                Ok(Some(file)) => file,
                Ok(None) => return text(StatusCode::NOT_FOUND, "no such file"),
                Err(error) => {
                    errors.inc();
                    tracing::warn!(%error, "an uploaded file could not be read");
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the file store is unavailable",
                    );
                }
            };
            let head = request.method() == Method::HEAD;
            let length = file.data.len();
            let body = if head {
                Bytes::new()
            } else {
                Bytes::from(file.data)
            };
            let mut response = response_bytes(StatusCode::OK, OCTET_STREAM, body);
            let headers = response.headers_mut();
            if passive(&file.content_type)
                && let Ok(value) = HeaderValue::from_str(&file.content_type)
            {
                headers.insert(header::CONTENT_TYPE, value);
            }
            if head {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
            headers.insert(header::CONTENT_DISPOSITION, disposition(&file.name));
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; sandbox"),
            );
            // A file never changes under its id.
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=31536000, immutable"),
            );
            response
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types() {
        assert_eq!(check_name("C:\\tmp\\report.pdf"), Ok("report.pdf".into()));
        assert_eq!(check_name("../../etc/passwd"), Ok("passwd".into()));
        assert!(check_name("dir/").is_err());
        assert!(check_name("..").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(256)).is_err());
        assert_eq!(
            check_content_type("Text/Plain; charset=utf-8"),
            Ok("text/plain".into())
        );
        assert_eq!(check_content_type(""), Ok(OCTET_STREAM.into()));
        assert!(check_content_type("text").is_err());
        assert!(check_content_type("text/html\r\nx: y").is_err());
        assert!(passive("image/png") && !passive("text/html") && !passive("image/svg+xml"));
        assert_eq!(
            disposition("naïve \"x\".txt").to_str().unwrap(),
            "attachment; filename=\"na_ve _x_.txt\"; filename*=UTF-8''na%C3%AFve%20%22x%22%2Etxt"
        );
    }
}
