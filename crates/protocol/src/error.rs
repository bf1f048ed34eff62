//! Typed errors of the codec, worded as the ASP.NET Core SignalR server words them, so that the text can
//! go into a `Close` or handshake reply and read the same to a client as it would against .NET.

use thiserror::Error;

/// A hub message could not be read. Every variant is fatal to the connection that sent it: the server
/// answers with a `Close` message carrying `Connection closed with an error.` (plus the text when detailed
/// errors are on).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// A message did not fit in the configured maximum receive size (§4.4 of the protocol notes).
    #[error(
        "The maximum message size of {max}B was exceeded. The message size can be configured in AddHubOptions."
    )]
    MessageTooLarge {
        /// The configured maximum, in bytes.
        max: usize,
    },
    /// A MessagePack length prefix was longer than five bytes or above 2 GiB.
    #[error("Messages over 2GB in size are not supported.")]
    LengthPrefixTooLarge,
    /// A required property or array element was absent.
    #[error("Missing required property '{0}'.")]
    MissingProperty(&'static str),
    /// A property or array element had the wrong type.
    #[error("Expected '{property}' to be of type {expected}.")]
    WrongType {
        /// The property (JSON) or element (MessagePack) name.
        property: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// A Completion carried both a result and an error.
    #[error("The 'error' and 'result' properties are mutually exclusive.")]
    ErrorAndResult,
    /// A MessagePack Completion had a result kind other than 1, 2 or 3.
    #[error("Invalid invocation result kind.")]
    InvalidResultKind,
    /// A message was not valid UTF-8 where text was required.
    #[error("Invalid UTF-8 in message.")]
    InvalidUtf8,
    /// The JSON text of a message was malformed.
    #[error("Error reading JSON. {0}")]
    Json(String),
    /// The MessagePack bytes of a message were malformed or truncated.
    #[error("Error reading MessagePack. {0}")]
    MessagePack(String),
}

/// A typed value could not be written in a hub protocol.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Failed to serialize a hub message: {0}")]
pub struct EncodeError(pub String);

impl EncodeError {
    pub(crate) fn from_display(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// A raw argument, item or result could not be turned into the type a hub method asked for.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct ValueError(pub String);
