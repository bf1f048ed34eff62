//! Why a connection ended, as a typed value: it decides the `Close` message the client gets (error text
//! and `allowReconnect`) and is the label of the disconnect metric.

use hubcast_protocol::Close;

/// The reason a hub connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a Close message or closed its transport.
    ClientClosed,
    /// The transport went away without a close (TCP reset, SSE request aborted, no long poll in time).
    TransportLost,
    /// The client pinged once, then went silent for the client timeout.
    ClientTimeout,
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// The handshake was refused.
    HandshakeFailed,
    /// The client sent bytes that are not the hub protocol, or a message over the size limit.
    ProtocolError(String),
    /// The client broke the WebSocket protocol (RFC 6455): the socket closes with `code`.
    WebSocketViolation {
        /// The WebSocket close code: 1002, 1007 or 1009.
        code: u16,
        /// What was wrong.
        detail: &'static str,
    },
    /// The client did not read fast enough; its outbound queue overflowed.
    SlowConsumer,
    /// `on_connected` failed.
    ConnectedHandlerFailed(String),
    /// The server is shutting down or draining.
    ServerShutdown,
    /// The connection's token expired (`close_on_authentication_expiration`).
    AuthenticationExpired,
    /// The client kept calling over its rate limit.
    RateLimited,
    /// The application closed the connection (a kick), with the reason the client is shown.
    ClosedByServer(String),
}

impl CloseReason {
    /// The WebSocket close code the socket ends with: the violation's, else 1000 (normal closure).
    pub fn websocket_code(&self) -> u16 {
        match self {
            CloseReason::WebSocketViolation { code, .. } => *code,
            _ => 1000,
        }
    }

    /// A short, stable label (logs and metrics).
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::TransportLost => "transport_lost",
            CloseReason::ClientTimeout => "client_timeout",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::HandshakeFailed => "handshake_failed",
            CloseReason::ProtocolError(_) => "protocol_error",
            CloseReason::WebSocketViolation { .. } => "websocket_violation",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::ConnectedHandlerFailed(_) => "on_connected_failed",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::AuthenticationExpired => "authentication_expired",
            CloseReason::RateLimited => "rate_limited",
            CloseReason::ClosedByServer(_) => "closed_by_server",
        }
    }

    /// The Close message to send, if one is sent at all. With `detailed`, the error carries details the
    /// way .NET appends them when detailed errors are enabled.
    pub fn close_message(&self, detailed: bool) -> Option<Close> {
        const GENERIC: &str = "Connection closed with an error.";
        let with = |detail: &str| {
            if detailed {
                format!("{GENERIC} {detail}")
            } else {
                GENERIC.to_owned()
            }
        };
        let (error, allow_reconnect) = match self {
            CloseReason::ClientClosed | CloseReason::TransportLost => (None, false),
            CloseReason::HandshakeTimeout | CloseReason::HandshakeFailed => return None,
            CloseReason::ClientTimeout => (
                Some(with(
                    "OperationCanceledException: Client hasn't sent a message/ping within the configured ClientTimeoutInterval.",
                )),
                true,
            ),
            CloseReason::ProtocolError(detail) => {
                (Some(with(&format!("InvalidDataException: {detail}"))), true)
            }
            CloseReason::WebSocketViolation { detail, .. } => {
                (Some(with(&format!("WebSocketException: {detail}"))), false)
            }
            CloseReason::SlowConsumer => (
                Some(with(
                    "SlowConsumer: the client did not read its messages fast enough.",
                )),
                true,
            ),
            CloseReason::ConnectedHandlerFailed(detail) => (Some(with(detail)), false),
            CloseReason::ServerShutdown => (Some("Server is shutting down.".to_owned()), true),
            CloseReason::ClosedByServer(reason) => (Some(reason.clone()), false),
            CloseReason::RateLimited => (
                Some(with(
                    "RateLimitExceeded: too many invocations over the rate limit.",
                )),
                false,
            ),
            CloseReason::AuthenticationExpired => (
                Some(with(
                    "AuthenticationExpired: the connection's access token expired.",
                )),
                true,
            ),
        };
        Some(Close {
            error,
            allow_reconnect,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_messages_follow_dotnet_wording() {
        let timeout = CloseReason::ClientTimeout.close_message(false).unwrap();
        assert_eq!(
            timeout.error.as_deref(),
            Some("Connection closed with an error.")
        );
        assert!(timeout.allow_reconnect);
        let detailed = CloseReason::ClientTimeout.close_message(true).unwrap();
        assert_eq!(
            detailed.error.as_deref(),
            Some(
                "Connection closed with an error. OperationCanceledException: Client hasn't sent a message/ping within the configured ClientTimeoutInterval."
            )
        );
        assert_eq!(
            CloseReason::ClientClosed.close_message(false),
            Some(Close::default())
        );
        assert!(
            !CloseReason::ConnectedHandlerFailed("x".into())
                .close_message(false)
                .unwrap()
                .allow_reconnect
        );
    }
}
