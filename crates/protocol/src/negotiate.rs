//! The negotiate step of the transport protocol (protocol notes §1.2): reading the query of
//! `POST {hub}/negotiate`, choosing the negotiate version, and the JSON bodies of the answer (a
//! connection, a redirect or an error). Clients use the same types to read the answer.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::value::TransferFormat;

/// The highest negotiate version the server speaks.
pub const MAX_NEGOTIATE_VERSION: i32 = 1;

/// A transport of the SignalR transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// Full duplex WebSockets.
    WebSockets,
    /// Server-Sent Events down, HTTP POST up. Text only.
    ServerSentEvents,
    /// Long polling down, HTTP POST up.
    LongPolling,
}

impl Transport {
    /// Every transport, in the order the server offers them (clients try them in this order).
    pub const ALL: [Transport; 3] = [
        Transport::WebSockets,
        Transport::ServerSentEvents,
        Transport::LongPolling,
    ];

    /// The name used in negotiate responses (and `GetActiveTransportName`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSockets => "WebSockets",
            Transport::ServerSentEvents => "ServerSentEvents",
            Transport::LongPolling => "LongPolling",
        }
    }

    /// Looks a transport up by name, ignoring case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// The transfer formats the transport carries.
    pub fn transfer_formats(self) -> &'static [TransferFormat] {
        match self {
            Transport::ServerSentEvents => &[TransferFormat::Text],
            Transport::WebSockets | Transport::LongPolling => {
                &[TransferFormat::Text, TransferFormat::Binary]
            }
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Finds a query parameter by name, ignoring the key's case (the server reads `NegotiateVersion`,
/// `UseStatefulReconnect` and `id`; clients send them in camelCase). Values are percent-decoded.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// What a negotiate request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NegotiateRequest {
    /// The raw `negotiateVersion` value; `None` when absent (version 0, as signalrcore sends).
    pub negotiate_version: Option<String>,
    /// Whether the client asked for stateful reconnect (`useStatefulReconnect=true`).
    pub use_stateful_reconnect: bool,
}

/// A negotiate request the server must refuse; `Display` is the `error` text of the 200 reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NegotiateError {
    /// `negotiateVersion` was not an integer.
    #[error("The client requested a non-integer protocol version.")]
    NonInteger,
    /// The version is below the configured minimum.
    #[error("The client requested version '{0}', but the server does not support this version.")]
    Unsupported(i32),
}

impl NegotiateRequest {
    /// Reads the request from a query string (without the leading `?`).
    pub fn from_query(query: &str) -> Self {
        Self {
            negotiate_version: query_param(query, "negotiateVersion").map(Cow::into_owned),
            use_stateful_reconnect: query_param(query, "useStatefulReconnect")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        }
    }

    /// The version to answer with: the requested one capped at [`MAX_NEGOTIATE_VERSION`], 0 when none
    /// was given; refused when below `minimum`.
    pub fn select_version(&self, minimum: i32) -> Result<i32, NegotiateError> {
        let requested = match &self.negotiate_version {
            None => 0,
            Some(raw) => raw
                .trim()
                .parse::<i32>()
                .map_err(|_| NegotiateError::NonInteger)?,
        };
        if requested < minimum {
            return Err(NegotiateError::Unsupported(requested));
        }
        Ok(requested.min(MAX_NEGOTIATE_VERSION))
    }
}

/// One entry of `availableTransports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableTransport {
    /// Transport name.
    pub transport: String,
    /// Its transfer formats (`Text`, `Binary`).
    pub transfer_formats: Vec<String>,
}

impl From<Transport> for AvailableTransport {
    fn from(transport: Transport) -> Self {
        Self {
            transport: transport.name().to_owned(),
            transfer_formats: transport
                .transfer_formats()
                .iter()
                .map(|f| f.name().to_owned())
                .collect(),
        }
    }
}

/// A negotiate response body. The fields are written in the order the .NET server writes them and only
/// when set; use the constructors for the three shapes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NegotiateResponse {
    /// `true` only when the server allows stateful reconnect and the client asked for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_stateful_reconnect: bool,
    /// The negotiate version answered (absent in redirects and errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negotiate_version: Option<i32>,
    /// Redirect target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Access token to use from now on (redirects only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// The public connection id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The secret id the transports use (version 1 only; version 0 uses the connection id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_token: Option<String>,
    /// The transports offered, in order of preference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_transports: Option<Vec<AvailableTransport>>,
    /// An error text (sent with HTTP 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl NegotiateResponse {
    /// A new connection. With version 0 no token is written: the client uses the connection id.
    pub fn connection(
        version: i32,
        connection_id: String,
        connection_token: String,
        transports: impl IntoIterator<Item = Transport>,
        use_stateful_reconnect: bool,
    ) -> Self {
        Self {
            use_stateful_reconnect,
            negotiate_version: Some(version),
            connection_token: (version > 0).then_some(connection_token),
            connection_id: Some(connection_id),
            available_transports: Some(transports.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }

    /// A redirect to another URL, optionally with the access token to use there.
    pub fn redirect(url: String, access_token: Option<String>) -> Self {
        Self {
            url: Some(url),
            access_token,
            ..Self::default()
        }
    }

    /// An error, sent with status 200.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            error: Some(message.into()),
            ..Self::default()
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and bools into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a body (client side).
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}
