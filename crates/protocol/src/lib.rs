//! # hubcast-protocol
//!
//! The wire protocols of ASP.NET Core SignalR as pure code (no I/O, no async runtime): the handshake,
//! the JSON and MessagePack hub protocols with all nine message types, incremental parsing with a
//! maximum message size, serialize-once outgoing messages, the .NET payload conventions, and the
//! negotiate request/response types of the transport protocol.
//!
//! ```
//! use hubcast_protocol::{HubMessage, Invocation, MessageReader, NamingPolicy, Protocol, encode_message};
//!
//! // Encode a call of the client method `ReceiveMessage(user, text)`.
//! let message: HubMessage<_, ()> =
//!     HubMessage::Invocation(Invocation::new("ReceiveMessage", ("ann", "hello")));
//! let bytes = encode_message(Protocol::Json, &message, NamingPolicy::CamelCase).unwrap();
//! assert_eq!(&bytes[..], b"{\"type\":1,\"target\":\"ReceiveMessage\",\"arguments\":[\"ann\",\"hello\"]}\x1e");
//!
//! // Read it back, chunk by chunk.
//! let mut reader = MessageReader::new(Protocol::Json, Some(32 * 1024));
//! reader.push(&bytes[..10]);
//! assert!(reader.next_message().unwrap().is_none());
//! reader.push(&bytes[10..]);
//! let Some(HubMessage::Invocation(call)) = reader.next_message().unwrap() else { panic!() };
//! let (user, text): (String, String) =
//!     (call.arguments.get(0).unwrap().deserialize().unwrap(), call.arguments.get(1).unwrap().deserialize().unwrap());
//! assert_eq!((user.as_str(), text.as_str()), ("ann", "hello"));
//! ```
//!
//! Module map: [`message`] (types), [`json`] and [`msgpack`] (one message each way), [`reader`]
//! (incremental parsing), [`outgoing`] (serialize once), [`handshake`], [`negotiate`], [`ids`],
//! [`stateful`] (stateful-reconnect bookkeeping),
//! [`dotnet`] (DateTime, byte arrays, Guid), [`naming`] (JSON property naming policy), [`varint`],
//! [`websocket`] (RFC 6455 frames as a server reads and writes them).

pub mod dotnet;
pub mod error;
pub mod handshake;
pub mod ids;
pub mod json;
pub mod message;
pub mod msgpack;
pub mod naming;
pub mod negotiate;
pub mod outgoing;
pub mod reader;
pub mod stateful;
pub mod value;
pub mod varint;
pub mod websocket;

pub use error::{EncodeError, ProtocolError, ValueError};
pub use handshake::{HandshakeError, HandshakeRequest};
pub use message::{
    CancelInvocation, Close, Completion, Headers, HubMessage, Invocation, Outcome, StreamItem,
};
pub use naming::NamingPolicy;
pub use negotiate::{NegotiateRequest, NegotiateResponse, Transport};
pub use outgoing::{SerializedMessage, encode_message, ping};
pub use reader::{MessageReader, decode_all};
pub use value::{ArgumentList, Arguments, EncodeValue, Protocol, RawValue, TransferFormat};
