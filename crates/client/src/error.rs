//! The client's typed errors: one enum for everything a connection, an invocation or a stream can
//! fail with, so callers can tell a hub error from a lost connection from a refused negotiation.

use http::StatusCode;

/// Everything the client can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The URL cannot be used (not absolute, or a scheme other than `http`/`ws`).
    #[error("invalid hub URL: {0}")]
    InvalidUrl(String),
    /// The builder's options contradict each other.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An HTTP request answered with a status other than the expected one.
    #[error("{status}: {body}")]
    Http {
        /// The status received.
        status: StatusCode,
        /// The response body (usually the server's error text).
        body: String,
    },
    /// The server answered negotiate with `{"error": …}`, or with an unusable body.
    #[error("negotiation failed: {0}")]
    Negotiate(String),
    /// No offered transport could be started; one entry per transport tried.
    #[error("unable to connect with any transport: {}", .0.join("; "))]
    NoTransport(Vec<String>),
    /// The handshake failed: the server's error text, a malformed reply or a timeout.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// A network or transport failure (connection refused, reset, WebSocket error).
    #[error("transport error: {0}")]
    Transport(String),
    /// The server sent bytes that are not valid hub protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The hub method failed; the text is the server's error message.
    #[error("{0}")]
    Hub(String),
    /// A value could not be encoded or decoded into the requested type.
    #[error("value error: {0}")]
    Value(String),
    /// Nothing arrived from the server within the server timeout.
    #[error("Server timeout elapsed without receiving a message from the server.")]
    ServerTimeout,
    /// The server closed the connection with a Close message, with its error text if it gave one.
    #[error("server closed the connection{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    ServerClosed(Option<String>),
    /// The connection was lost or stopped while the call was pending.
    #[error("Invocation canceled due to the underlying connection being closed.")]
    ConnectionClosed,
    /// The call was made while the connection was not connected.
    #[error("Cannot send data if the connection is not in the 'Connected' State.")]
    NotConnected,
}

impl Error {
    pub(crate) fn transport(error: impl std::fmt::Display) -> Self {
        Self::Transport(error.to_string())
    }

    pub(crate) fn value(error: impl std::fmt::Display) -> Self {
        Self::Value(error.to_string())
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
