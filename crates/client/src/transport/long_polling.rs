//! The long-polling transport: `GET {url}?id=<token>` answered at once the first time, then held by the
//! server until it has bytes (200 with a body), nothing (200 empty: poll again) or is closing (204).
//! Sends are POSTs; stopping sends `DELETE`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Incoming, Target, post};
use crate::error::{Error, Result};
use crate::http::{Http, status_error};

/// How long one poll may take; the server answers after at most 90 s.
const POLL_TIMEOUT: Duration = Duration::from_secs(100);

pub(super) async fn open(
    target: &Target<'_>,
    incoming: mpsc::Sender<Incoming>,
    outgoing: mpsc::UnboundedReceiver<Bytes>,
    stop: CancellationToken,
) -> Result<Vec<JoinHandle<()>>> {
    let url = target.url.connection(target.token);
    let access_token = target.access_token.map(str::to_owned);
    let (status, body) = poll(target.http, &url, access_token.as_deref()).await?;
    if status != StatusCode::OK {
        return Err(status_error(status, &body));
    }
    let poller = tokio::spawn(poll_loop(
        target.http.clone(),
        url.clone(),
        access_token,
        incoming.clone(),
        stop.clone(),
    ));
    let sender = post::spawn(target, url, outgoing, incoming, stop);
    Ok(vec![sender, poller])
}

async fn poll(http: &Http, url: &str, access_token: Option<&str>) -> Result<(StatusCode, Bytes)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let url = format!("{url}&_={now}");
    let request = http.fetch(Method::GET, &url, access_token, Bytes::new());
    tokio::time::timeout(POLL_TIMEOUT, request)
        .await
        .map_err(|_| Error::Transport("long poll timed out".to_owned()))?
}

async fn poll_loop(
    http: Http,
    url: String,
    access_token: Option<String>,
    incoming: mpsc::Sender<Incoming>,
    stop: CancellationToken,
) {
    let end = loop {
        let result = tokio::select! {
            _ = stop.cancelled() => {
                // Ends the connection on the server; a 404 (already gone) is fine.
                let _ = http.fetch(Method::DELETE, &url, access_token.as_deref(), Bytes::new()).await;
                return;
            }
            result = poll(&http, &url, access_token.as_deref()) => result,
        };
        match result {
            Ok((StatusCode::OK, body)) if body.is_empty() => {}
            Ok((StatusCode::OK, body)) => {
                if incoming.send(Incoming::Data(body)).await.is_err() {
                    return;
                }
            }
            Ok((StatusCode::NO_CONTENT, _)) => {
                break Incoming::Closed {
                    graceful: true,
                    error: None,
                };
            }
            Ok((status, body)) => {
                break Incoming::Closed {
                    graceful: false,
                    error: Some(status_error(status, &body).to_string()),
                };
            }
            Err(error) => {
                break Incoming::Closed {
                    graceful: false,
                    error: Some(error.to_string()),
                };
            }
        }
    };
    let _ = incoming.send(end).await;
}
