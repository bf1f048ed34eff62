//! The Server-Sent Events transport (text only): a `GET` with `Accept: text/event-stream` whose
//! events' `data:` lines are the server's bytes, plus POSTs for sending.

use bytes::Bytes;
use http::header::ACCEPT;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming as Body;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Incoming, Target, post};
use crate::error::{Error, Result};
use crate::http::status_error;

pub(super) async fn open(
    target: &Target<'_>,
    incoming: mpsc::Sender<Incoming>,
    outgoing: mpsc::UnboundedReceiver<Bytes>,
    stop: CancellationToken,
) -> Result<Vec<JoinHandle<()>>> {
    let url = target.url.connection(target.token);
    let response = target
        .http
        .request(
            Method::GET,
            &url,
            target.access_token,
            &[(ACCEPT, "text/event-stream")],
            Bytes::new(),
        )
        .await?;
    if response.status() != StatusCode::OK {
        let status = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        return Err(status_error(status, &body.unwrap_or_default()));
    }
    tokio::spawn(read_loop(
        response.into_body(),
        incoming.clone(),
        stop.clone(),
    ));
    let sender = post::spawn(target, url, outgoing, incoming, stop);
    Ok(vec![sender])
}

async fn read_loop(mut body: Body, incoming: mpsc::Sender<Incoming>, stop: CancellationToken) {
    let mut parser = EventParser::default();
    let end = loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return,
            frame = body.frame() => frame,
        };
        match frame {
            Some(Ok(frame)) => {
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                for event in parser.push(&chunk) {
                    if incoming.send(Incoming::Data(event)).await.is_err() {
                        return;
                    }
                }
            }
            Some(Err(error)) => {
                break Incoming::Closed {
                    graceful: false,
                    error: Some(Error::transport(error).to_string()),
                };
            }
            None => {
                break Incoming::Closed {
                    graceful: true,
                    error: None,
                };
            }
        }
    };
    let _ = incoming.send(end).await;
}

/// Splits an event stream into the data of each event (`data:` lines joined by `\n`).
#[derive(Default)]
struct EventParser {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
}

impl EventParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        let mut events = Vec::new();
        for &byte in chunk {
            if byte != b'\n' {
                self.line.push(byte);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                if self.has_data {
                    events.push(Bytes::from(std::mem::take(&mut self.data)));
                    self.has_data = false;
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data
                    .extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
                self.has_data = true;
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_and_joined() {
        let mut parser = EventParser::default();
        assert!(parser.push(b":\r\n\r\n").is_empty());
        assert!(parser.push(b"data: {\"type\":6}\x1e\r").is_empty());
        let events = parser.push(b"\n\r\ndata: a\r\ndata:b\r\n\r\nevent: x\r\n\r\n");
        assert_eq!(
            events,
            vec![
                Bytes::from_static(b"{\"type\":6}\x1e"),
                Bytes::from_static(b"a\nb")
            ]
        );
    }
}
