//! Dispatching the messages a client sends: invocations (checked, bound and started), upload-stream
//! items and completions, cancellations, pings, Close, and stateful reconnect's Ack and Sequence; and
//! the Completions the session sends back.

use std::sync::Arc;

use hubcast_protocol::{HubMessage, Invocation, Outcome, RawValue};

use super::Session;
use super::admission::Admission;
use crate::close::CloseReason;
use crate::runtime::error::{self, BindingError};
use crate::runtime::streams::{self, StreamSink};
use crate::runtime::{
    BindRequest, Binder, Bound, BoundCall, BoundStream, InvocationScope, UploadItem,
};

/// One invocation as the session handles it.
struct Call {
    /// The lower-cased method name.
    key: String,
    /// The method name as the client called it.
    target: String,
    /// The metrics label: the declared method, or `(undeclared)`.
    method: Arc<str>,
    /// `None` for a non-blocking invocation (no Completion).
    id: Option<String>,
    streaming: bool,
    detailed: bool,
}

impl Call {
    fn new(session: &Session, target: String, id: Option<String>, streaming: bool) -> Self {
        let key = target.to_lowercase();
        let method: Arc<str> = if session.hub.app.is_declared(&key) {
            Arc::from(key.as_str())
        } else {
            Arc::from("(undeclared)")
        };
        Self {
            key,
            target,
            method,
            id,
            streaming,
            detailed: session.hub.shared.options.enable_detailed_errors,
        }
    }
}

/// Why a call is not run.
enum Refused {
    /// Answered with this error text (when the client expects an answer).
    Answer(String),
    /// The connection closes.
    Close(CloseReason),
}

impl Session {
    /// Handles one message; `Some` ends the connection.
    pub(super) async fn dispatch(
        &self,
        message: HubMessage,
        client_pinged: &mut bool,
    ) -> Option<CloseReason> {
        let counters = &self.hub.shared.metrics.messages_in;
        if let Some(counter) = counters.get(crate::metrics::message_type(&message)) {
            counter.inc();
        }
        if message.is_sequenced() && !self.first_time() {
            return None;
        }
        match message {
            HubMessage::Invocation(invocation) => return self.invoke(invocation, false).await,
            HubMessage::StreamInvocation(invocation) => return self.invoke(invocation, true).await,
            HubMessage::StreamItem(item) => {
                return self.upload_item(&item.invocation_id, Ok(item.item)).await;
            }
            HubMessage::Completion(completion) => {
                let id = completion.invocation_id;
                if let Some(sender) = self.streams.upload(&id) {
                    // The end of an upload stream; an error reaches the method as a HubException.
                    if let Outcome::Error(error) = completion.outcome {
                        let _ = sender.send(Err(error)).await;
                    }
                    self.streams.end_upload(&id);
                } else if !self.hub_connection.complete_result(&id, completion.outcome) {
                    tracing::debug!(connection_id = %self.connection.id, "completion for an unknown invocation ignored");
                }
            }
            HubMessage::CancelInvocation(cancel) => {
                self.streams.cancel(&cancel.invocation_id);
            }
            HubMessage::Ping => *client_pinged = true,
            HubMessage::Close(close) => {
                tracing::debug!(connection_id = %self.connection.id, error = ?close.error, "client sent Close");
                return Some(CloseReason::ClientClosed);
            }
            HubMessage::Ack(id) => self.hub_connection.acknowledge(id),
            HubMessage::Sequence(id) => {
                if let Some(Err(error)) = self.received().map(|mut r| r.sequence(id)) {
                    return Some(CloseReason::ProtocolError(error.into()));
                }
            }
        }
        None
    }

    /// Feeds an upload stream, waiting while its buffer is full (which pauses this receive loop).
    async fn upload_item(&self, id: &str, item: UploadItem) -> Option<CloseReason> {
        let sender = self.streams.upload(id)?;
        tokio::select! {
            _ = self.connection.abort.cancelled() => return Some(self.aborted()),
            sent = sender.send(item) => {
                if sent.is_err() {
                    // The method stopped reading: later items are dropped.
                    self.streams.end_upload(id);
                }
            }
        }
        None
    }

    /// Runs an Invocation or StreamInvocation: checked, bound, then started (a method on its own task,
    /// a stream forwarded by its own task); a refusal is answered with its error.
    async fn invoke(&self, invocation: Invocation, streaming: bool) -> Option<CloseReason> {
        let Invocation {
            invocation_id,
            target,
            arguments,
            stream_ids,
            ..
        } = invocation;
        let call = Call::new(self, target, invocation_id, streaming);
        let scope = Arc::new(InvocationScope::new(
            self.lifetime.child_token(),
            Some(self.slots.clone()),
        ));
        let bound = match self.check(&call).await {
            Ok(()) => self.bind(&call, &arguments.0, &stream_ids, &scope),
            Err(refused) => Err(refused),
        };
        match bound {
            Ok(Bound::Stream(stream)) => {
                // Boxed, like every reply below: the receive loop's future lives as long as the
                // connection, and inline reply futures would grow it for every idle connection.
                Box::pin(self.start_stream(stream, call, scope)).await;
                None
            }
            Ok(Bound::Call(method)) => {
                self.start_call(method, call, scope, stream_ids.is_empty())
                    .await
            }
            Err(Refused::Answer(text)) => {
                Box::pin(self.fail(call.id.as_deref(), text)).await;
                None
            }
            Err(Refused::Close(reason)) => Some(reason),
        }
    }

    /// What refuses a call before it is bound: an unknown method, a stream/non-stream mismatch, the
    /// caller's roles, the rate limits, a stream id already in use.
    async fn check(&self, call: &Call) -> Result<(), Refused> {
        let app = &self.hub.app;
        let target = &call.target;
        match app.is_streaming(&call.key) {
            None => {
                self.count(call, "unknown_method");
                return Err(Refused::Answer(error::unknown_method(target)));
            }
            Some(true) if !call.streaming => {
                return Err(Refused::Answer(error::streaming_needs_stream_invocation(
                    target,
                )));
            }
            Some(false) if call.streaming => {
                return Err(Refused::Answer(error::not_streaming(target)));
            }
            Some(_) => {}
        }
        if !app.authorized(&call.key, self.caller.user.as_ref()) {
            self.count(call, "unauthorized");
            return Err(Refused::Answer(error::unauthorized(target)));
        }
        match self.admit(&call.key).await {
            Admission::Admitted => {}
            refused => {
                self.count(call, "rate_limited");
                self.hub.shared.metrics.rate_limited.inc();
                return Err(match refused {
                    Admission::Abusive => Refused::Close(CloseReason::RateLimited),
                    _ => Refused::Answer(error::rate_limited(target)),
                });
            }
        }
        if let Some(id) = call.id.as_deref().filter(|_| call.streaming)
            && self.streams.in_use(id)
        {
            let binding = BindingError::IdInUse(id.to_owned());
            return Err(Refused::Answer(error::binding_failed(
                target,
                &binding,
                call.detailed,
            )));
        }
        Ok(())
    }

    /// Binds the arguments and stream ids to the method's parameters; the upload streams it opens are
    /// fed by this receive loop from now on.
    fn bind(
        &self,
        call: &Call,
        arguments: &[RawValue],
        stream_ids: &[String],
        scope: &Arc<InvocationScope>,
    ) -> Result<Bound, Refused> {
        let options = &self.hub.shared.options;
        let in_use = |id: &str| self.streams.in_use(id);
        let mut binder = Binder::new(
            arguments,
            stream_ids,
            &in_use,
            options.stream_buffer_capacity,
        );
        let bound = self.hub.app.bind(BindRequest {
            caller: self.caller.clone(),
            shared: &self.hub.shared,
            key: &call.key,
            target: &call.target,
            binder: &mut binder,
            protocol: self.protocol,
            naming: options.json_naming_policy,
            scope: scope.clone(),
        });
        match bound {
            None => Err(Refused::Answer(error::unknown_method(&call.target))),
            Some(Err(binding)) => {
                self.count(call, "binding_failed");
                Err(Refused::Answer(error::binding_failed(
                    &call.target,
                    &binding,
                    call.detailed,
                )))
            }
            Some(Ok(bound)) => {
                self.streams.add_uploads(binder.into_opened());
                Ok(bound)
            }
        }
    }

    /// Starts a server-to-client stream (streams take no invocation slot).
    async fn start_stream(&self, stream: BoundStream, call: Call, scope: Arc<InvocationScope>) {
        self.count(&call, "stream");
        // A StreamInvocation always has an id (the codec requires it).
        let Some(id) = call.id else { return };
        let items = match streams::start(stream, &call.target, call.detailed).await {
            Ok(items) => items,
            Err(text) => return self.complete(id, Outcome::Error(text)).await,
        };
        self.streams.start_server(id.clone(), scope.cancel.clone());
        tokio::spawn(streams::forward(
            items,
            self.sink(),
            self.streams.clone(),
            id,
            scope.cancel.clone(),
        ));
    }

    /// Runs a method on its own task, in an invocation slot unless upload streams feed it (it waits on
    /// this loop for their items); the slot is held until its Completion is queued.
    async fn start_call(
        &self,
        method: BoundCall,
        call: Call,
        scope: Arc<InvocationScope>,
        takes_slot: bool,
    ) -> Option<CloseReason> {
        if takes_slot {
            let slot = tokio::select! {
                _ = self.connection.abort.cancelled() => return Some(self.aborted()),
                slot = self.slots.clone().acquire_owned() => slot.ok()?,
            };
            scope.hold(slot);
        }
        let sink = self.sink();
        let started = std::time::Instant::now();
        let metrics = &self.hub.shared.metrics;
        let (seconds, invocations) = (
            metrics.invocation_seconds.clone(),
            metrics.invocations.clone(),
        );
        let labels = [self.hub.shared.name.clone(), call.method.clone()];
        tokio::spawn(async move {
            let result = error::catch_panic(method, "the hub method").await;
            seconds.observe(started.elapsed().as_secs_f64());
            let outcome = if result.is_ok() { "ok" } else { "error" };
            invocations
                .with_label_values(&[&*labels[0], &*labels[1], outcome])
                .inc();
            if let Some(id) = call.id {
                let outcome = match result {
                    Ok(value) => Outcome::Result(value),
                    Err(error) => Outcome::Error(error::invocation_failed(
                        &call.target,
                        &error,
                        sink.detailed,
                    )),
                };
                // The slot is held until the reply is queued: a caller that does not read its
                // replies stops its own receive loop (at the next invocation), not the server.
                sink.complete(id, outcome).await;
            }
            scope.release();
        });
        None
    }

    /// Counts an invocation's outcome under its hub and method.
    fn count(&self, call: &Call, outcome: &str) {
        self.hub
            .shared
            .metrics
            .invocations
            .with_label_values(&[&*self.hub.shared.name, &*call.method, outcome])
            .inc();
    }

    pub(super) fn sink(&self) -> StreamSink {
        let options = &self.hub.shared.options;
        StreamSink {
            connection: self.hub_connection.clone(),
            protocol: self.protocol,
            naming: options.json_naming_policy,
            detailed: options.enable_detailed_errors,
        }
    }

    /// Queues a Completion for the caller, waiting for room in its queue.
    async fn complete(&self, invocation_id: String, outcome: Outcome) {
        self.sink().complete(invocation_id, outcome).await;
    }

    /// Answers a refused invocation with its error, if it expects an answer.
    async fn fail(&self, invocation_id: Option<&str>, text: String) {
        if let Some(id) = invocation_id {
            self.complete(id.to_owned(), Outcome::Error(text)).await;
        }
    }
}
