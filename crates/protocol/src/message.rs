//! The nine hub message types (HubProtocol.md; protocol notes §2.3), shared by both protocols.
//!
//! Messages are generic over how arguments (`A`) and single values (`V`) are held: decoded messages use
//! the defaults [`Arguments`] and [`RawValue`] (raw slices of the received bytes); messages built to be
//! sent use any [`EncodeValue`](crate::EncodeValue) types, typically a tuple of typed arguments.

use std::collections::BTreeMap;

use crate::value::{Arguments, RawValue};

/// Message headers: string keys and string values (distributed-tracing headers such as `traceparent`).
pub type Headers = BTreeMap<String, String>;

/// A hub message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubMessage<A = Arguments, V = RawValue> {
    /// Type 1: call a method; with an id the caller waits for a Completion.
    Invocation(Invocation<A>),
    /// Type 2: one item of a stream (server-to-client results or client-to-server upload).
    StreamItem(StreamItem<V>),
    /// Type 3: the end of an invocation or stream, with a result or an error.
    Completion(Completion<V>),
    /// Type 4: call a streaming method.
    StreamInvocation(Invocation<A>),
    /// Type 5: stop a stream.
    CancelInvocation(CancelInvocation),
    /// Type 6: keep-alive.
    Ping,
    /// Type 7: the sender is closing the connection.
    Close(Close),
    /// Type 8: stateful reconnect acknowledgement of everything up to this sequence id.
    Ack(i64),
    /// Type 9: stateful reconnect: the id of the next message the sender will (re)send.
    Sequence(i64),
}

impl<A, V> HubMessage<A, V> {
    /// The numeric message type.
    pub fn type_id(&self) -> u8 {
        match self {
            HubMessage::Invocation(_) => 1,
            HubMessage::StreamItem(_) => 2,
            HubMessage::Completion(_) => 3,
            HubMessage::StreamInvocation(_) => 4,
            HubMessage::CancelInvocation(_) => 5,
            HubMessage::Ping => 6,
            HubMessage::Close(_) => 7,
            HubMessage::Ack(_) => 8,
            HubMessage::Sequence(_) => 9,
        }
    }

    /// The stable lower-case name of the message type (metric labels, logs).
    pub fn type_name(&self) -> &'static str {
        match self {
            HubMessage::Invocation(_) => "invocation",
            HubMessage::StreamItem(_) => "stream_item",
            HubMessage::Completion(_) => "completion",
            HubMessage::StreamInvocation(_) => "stream_invocation",
            HubMessage::CancelInvocation(_) => "cancel_invocation",
            HubMessage::Ping => "ping",
            HubMessage::Close(_) => "close",
            HubMessage::Ack(_) => "ack",
            HubMessage::Sequence(_) => "sequence",
        }
    }

    /// Whether stateful reconnect numbers, buffers and replays this message (types 1-5).
    pub fn is_sequenced(&self) -> bool {
        self.type_id() <= 5
    }
}

/// Invocation (type 1) and StreamInvocation (type 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation<A = Arguments> {
    /// Headers; usually empty.
    pub headers: Headers,
    /// The invocation id; `None` for a non-blocking call (an empty id on the wire is read as `None`).
    pub invocation_id: Option<String>,
    /// The method name.
    pub target: String,
    /// The arguments (stream arguments are left out and named in `stream_ids`).
    pub arguments: A,
    /// Ids of the client-to-server streams the call takes.
    pub stream_ids: Vec<String>,
}

impl<A> Invocation<A> {
    /// A non-blocking invocation of `target` (what a server sends to call client methods).
    pub fn new(target: impl Into<String>, arguments: A) -> Self {
        Self {
            headers: Headers::new(),
            invocation_id: None,
            target: target.into(),
            arguments,
            stream_ids: Vec::new(),
        }
    }
}

/// StreamItem (type 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamItem<V = RawValue> {
    /// Headers; usually empty.
    pub headers: Headers,
    /// The invocation id of the stream (or the stream id of an upload).
    pub invocation_id: String,
    /// The item.
    pub item: V,
}

/// Completion (type 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion<V = RawValue> {
    /// Headers; usually empty.
    pub headers: Headers,
    /// The invocation (or stream) being completed.
    pub invocation_id: String,
    /// How it ended.
    pub outcome: Outcome<V>,
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<V = RawValue> {
    /// No result property at all (stream completions; MessagePack result kind 2).
    Void,
    /// A result, possibly null (the .NET server sends `result: null` for void methods).
    Result(V),
    /// An error message.
    Error(String),
}

/// CancelInvocation (type 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelInvocation {
    /// Headers; usually empty.
    pub headers: Headers,
    /// The stream to stop.
    pub invocation_id: String,
}

/// Close (type 7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Close {
    /// Why, when the close is an error.
    pub error: Option<String>,
    /// Whether the client should reconnect automatically.
    pub allow_reconnect: bool,
}
