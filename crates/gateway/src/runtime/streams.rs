//! The streams of one connection: server-to-client streams in flight (cancellable by id) and
//! client-to-server upload streams being fed (by stream id), plus the task that forwards a hub
//! method's stream to its client.
//!
//! A stream item waits for room in the client's outbound queue instead of failing, so a fast producer
//! slows down to the client's pace rather than getting the client closed as a slow consumer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use hubcast_protocol::{
    Arguments, Headers, HubMessage, NamingPolicy, Outcome, Protocol, RawValue, StreamItem,
    encode_message,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::error::{self, HubError};
use super::registry::HubConnection;
use super::{BoundStream, ItemStream, UploadItem};

/// Open streams of a connection, by id.
#[derive(Default)]
pub(crate) struct ActiveStreams {
    server: Mutex<HashMap<String, CancellationToken>>,
    uploads: Mutex<HashMap<String, mpsc::Sender<UploadItem>>>,
}

impl ActiveStreams {
    fn server(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.server.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn uploads(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<UploadItem>>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `id` names an open stream of either direction.
    pub(crate) fn in_use(&self, id: &str) -> bool {
        self.server().contains_key(id) || self.uploads().contains_key(id)
    }

    /// Registers a server stream.
    pub(crate) fn start_server(&self, id: String, cancel: CancellationToken) {
        self.server().insert(id, cancel);
    }

    fn end_server(&self, id: &str) {
        self.server().remove(id);
    }

    /// Cancels a server stream (CancelInvocation); false when none has that id.
    pub(crate) fn cancel(&self, id: &str) -> bool {
        match self.server().remove(id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Registers upload streams a binding opened.
    pub(crate) fn add_uploads(&self, opened: Vec<(String, mpsc::Sender<UploadItem>)>) {
        self.uploads().extend(opened);
    }

    /// The sender feeding upload stream `id`.
    pub(crate) fn upload(&self, id: &str) -> Option<mpsc::Sender<UploadItem>> {
        self.uploads().get(id).cloned()
    }

    /// Ends upload stream `id` (the client completed it, or its method stopped reading); false when none.
    pub(crate) fn end_upload(&self, id: &str) -> bool {
        self.uploads().remove(id).is_some()
    }

    /// Ends everything (the connection closed): uploads end, server streams are cancelled.
    pub(crate) fn close_all(&self) {
        self.uploads().clear();
        for (_, token) in self.server().drain() {
            token.cancel();
        }
    }
}

/// Where a stream's messages go.
pub(crate) struct StreamSink {
    pub(crate) connection: Arc<HubConnection>,
    pub(crate) protocol: Protocol,
    pub(crate) naming: NamingPolicy,
    pub(crate) detailed: bool,
}

impl StreamSink {
    fn encode(&self, message: &HubMessage<Arguments, RawValue>) -> Option<bytes::Bytes> {
        encode_message(self.protocol, message, self.naming)
            .inspect_err(|error| tracing::warn!(%error, "failed to encode a stream message"))
            .ok()
    }

    /// Queues a Completion for the caller, waiting for room: replies to the caller slow the caller
    /// down instead of closing it as a slow consumer (that is for fan-out sends).
    pub(crate) async fn complete(&self, invocation_id: String, outcome: Outcome) {
        let message = HubMessage::Completion(hubcast_protocol::Completion {
            headers: Headers::new(),
            invocation_id,
            outcome,
        });
        if let Some(bytes) = self.encode(&message) {
            let _ = self.connection.push_wait(bytes).await;
        }
    }
}

/// Runs a streaming method up to the point where it hands over its stream, as .NET does before reading
/// the next message (so a CancelInvocation right behind the StreamInvocation finds the method running
/// and its cancellation observed). `Err` is the Completion error when the method failed.
pub(crate) async fn start(
    bound: BoundStream,
    target: &str,
    detailed: bool,
) -> Result<ItemStream, String> {
    error::catch_panic(bound, "the hub method")
        .await
        .map_err(|error| error::invocation_failed(target, &error, detailed))
}

/// Forwards a started stream: each item becomes a StreamItem, then one Completion (with an error if the
/// stream failed; none when the client cancelled).
pub(crate) async fn forward(
    items: ItemStream,
    sink: StreamSink,
    streams: Arc<ActiveStreams>,
    invocation_id: String,
    cancel: CancellationToken,
) {
    let outcome = tokio::select! {
        biased;
        _ = cancel.cancelled() => Outcome::Void,
        outcome = produce(items, &sink, &invocation_id, &cancel) => outcome,
    };
    streams.end_server(&invocation_id);
    sink.complete(invocation_id, outcome).await;
}

async fn produce(
    mut items: ItemStream,
    sink: &StreamSink,
    invocation_id: &str,
    cancel: &CancellationToken,
) -> Outcome {
    loop {
        let next = error::catch_panic(async { Ok(items.next().await) }, "the stream")
            .await
            .unwrap_or_else(|error| Some(Err(error)));
        let item = match next {
            None => return Outcome::Void,
            Some(Err(error)) => return Outcome::Error(error::stream_failed(&error, sink.detailed)),
            Some(Ok(item)) => item,
        };
        let message = HubMessage::StreamItem(StreamItem {
            headers: Headers::new(),
            invocation_id: invocation_id.to_owned(),
            item,
        });
        let Some(bytes) = sink.encode(&message) else {
            return Outcome::Error(error::stream_failed(
                &HubError::internal("SerializationException", "an item could not be encoded"),
                sink.detailed,
            ));
        };
        if sink.connection.push_wait(bytes).await.is_err() {
            // The connection is closing; nobody will read the rest.
            cancel.cancel();
            return Outcome::Void;
        }
    }
}
