//! The client-to-server half of SSE and long polling: queued bytes go out as `POST {url}?id=<token>`,
//! everything queued at that moment in one request.

use bytes::Bytes;
use http::Method;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Incoming, Target};
use crate::http::{Http, status_error};

/// Starts sending what is queued for `url` (the connection URL with its token).
pub(super) fn spawn(
    target: &Target<'_>,
    url: String,
    outgoing: mpsc::UnboundedReceiver<Bytes>,
    incoming: mpsc::Sender<Incoming>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(send_loop(
        target.http.clone(),
        url,
        target.access_token.map(str::to_owned),
        outgoing,
        incoming,
        stop,
    ))
}

async fn send_loop(
    http: Http,
    url: String,
    access_token: Option<String>,
    mut outgoing: mpsc::UnboundedReceiver<Bytes>,
    incoming: mpsc::Sender<Incoming>,
    stop: CancellationToken,
) {
    loop {
        // Queued bytes go out before a stop takes effect (the Close message of `stop`).
        let bytes = tokio::select! {
            biased;
            bytes = outgoing.recv() => match bytes {
                Some(bytes) => super::batch(bytes, &mut outgoing),
                None => return,
            },
            _ = stop.cancelled() => return,
        };
        let error = match http
            .fetch(Method::POST, &url, access_token.as_deref(), bytes)
            .await
        {
            Ok((status, _)) if status.is_success() => continue,
            Ok((status, body)) => status_error(status, &body),
            Err(error) => error,
        };
        if !stop.is_cancelled() {
            let _ = incoming
                .send(Incoming::Closed {
                    graceful: false,
                    error: Some(error.to_string()),
                })
                .await;
        }
        return;
    }
}
