//! Options of hubs and of their HTTP transports, with the defaults of ASP.NET Core SignalR
//! (`HubOptions`, `HttpConnectionDispatcherOptions`; the seed's configuration tables). Every option can
//! be set globally and overridden per hub; the binary merges the layers (file, environment, flags) and
//! hands each hub its final [`HubOptions`].

use std::time::Duration;

use hubcast_protocol::{NamingPolicy, Protocol, Transport};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Everything configurable about one hub. Field docs give the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubOptions {
    /// How often the server sends a Ping when it has sent nothing else. Default 15 s. Not used on long
    /// polling.
    #[serde(with = "humantime_serde")]
    pub keep_alive_interval: Duration,
    /// A client that has pinged once and then sends nothing for this long is closed. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub client_timeout_interval: Duration,
    /// Time allowed for the handshake after the transport opens. Default 15 s.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Largest single hub message accepted from a client, in bytes; 0 means unlimited. Default 32768.
    pub maximum_receive_message_size: usize,
    /// Items buffered per client-to-server stream before the receive loop waits. Default 10.
    pub stream_buffer_capacity: usize,
    /// Hub method invocations one client may run at once; more block its receive loop. Default 1.
    pub maximum_parallel_invocations_per_client: usize,
    /// Send exception details to clients. Default false.
    pub enable_detailed_errors: bool,
    /// Hub protocols offered. Default `["json", "messagepack"]`.
    #[serde(with = "names")]
    pub supported_protocols: Vec<Protocol>,
    /// JSON property names of typed payloads: `camel-case` (the .NET default) or `as-declared`.
    pub json_naming_policy: NamingPolicy,
    /// Invocations a connection may make per second (0: unlimited); `Hub::rate_limit` sets it per
    /// method. Default 0.
    pub invocation_rate: f64,
    /// Invocations a connection may make at once above `invocation_rate`. Default 20.
    pub invocation_burst: f64,
    /// Invocations one user may make per second over all their connections (0: unlimited). Default 0.
    pub user_invocation_rate: f64,
    /// Invocations one user may make at once above `user_invocation_rate`. Default 50.
    pub user_invocation_burst: f64,
    /// A client whose calls are refused this many times in a row is closed (0: never). Default 100.
    pub close_after_rate_limited: u32,
    /// Groups one connection may belong to (0: unlimited). Default 0.
    pub max_groups_per_connection: usize,
    /// Connections one user may hold on this node (0: unlimited); more get 429. Default 0.
    pub max_connections_per_user: usize,
    /// Connections one client IP address may hold on this node (0: unlimited); more get 429. Default 0.
    pub max_connections_per_ip: usize,
    /// Refuse negotiate and transport requests without a valid token (401, empty body). Default false.
    pub require_authentication: bool,
    /// Close a connection when its token expires (`allowReconnect: true`, so the client comes back with a
    /// fresh token). Default false.
    pub close_on_authentication_expiration: bool,
    /// Allow stateful reconnect when a client asks for it. Default false.
    pub allow_stateful_reconnects: bool,
    /// Bytes of unacknowledged messages buffered for stateful reconnect. Default 100000.
    pub stateful_reconnect_buffer_size: usize,
    /// Transports offered, in order of preference. Default all three.
    #[serde(with = "names")]
    pub transports: Vec<Transport>,
    /// Bytes received from a client and not yet parsed before the server stops reading (backpressure).
    /// Default 65536.
    pub application_max_buffer_size: usize,
    /// Bytes queued for a client and not yet written; beyond it the client is closed as a slow consumer
    /// (`allowReconnect: true`) rather than stalling others. A message larger than this is accepted
    /// when nothing else is queued. Default 65536.
    pub transport_max_buffer_size: usize,
    /// How long a long-polling request waits for data before answering empty. Default 90 s.
    #[serde(with = "humantime_serde")]
    pub long_polling_poll_timeout: Duration,
    /// How long the server waits for the client's half of a WebSocket close. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub websocket_close_timeout: Duration,
    /// A connection without a transport (negotiated but unused, or long polling between polls) is
    /// dropped after this long. Default 15 s.
    #[serde(with = "humantime_serde")]
    pub disconnect_timeout: Duration,
    /// A write to a client that takes longer than this aborts the connection. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub transport_send_timeout: Duration,
    /// Lowest negotiate version accepted. Default 0.
    pub minimum_protocol_version: i32,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            keep_alive_interval: Duration::from_secs(15),
            client_timeout_interval: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(15),
            maximum_receive_message_size: 32 * 1024,
            stream_buffer_capacity: 10,
            maximum_parallel_invocations_per_client: 1,
            enable_detailed_errors: false,
            supported_protocols: Protocol::ALL.to_vec(),
            json_naming_policy: NamingPolicy::CamelCase,
            invocation_rate: 0.0,
            invocation_burst: 20.0,
            user_invocation_rate: 0.0,
            user_invocation_burst: 50.0,
            close_after_rate_limited: 100,
            max_groups_per_connection: 0,
            max_connections_per_user: 0,
            max_connections_per_ip: 0,
            require_authentication: false,
            close_on_authentication_expiration: false,
            allow_stateful_reconnects: false,
            stateful_reconnect_buffer_size: 100_000,
            transports: Transport::ALL.to_vec(),
            application_max_buffer_size: 64 * 1024,
            transport_max_buffer_size: 64 * 1024,
            long_polling_poll_timeout: Duration::from_secs(90),
            websocket_close_timeout: Duration::from_secs(5),
            disconnect_timeout: Duration::from_secs(15),
            transport_send_timeout: Duration::from_secs(10),
            minimum_protocol_version: 0,
        }
    }
}

/// Why a set of options cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid option '{option}': {reason}")]
pub struct OptionsError {
    /// The option's name.
    pub option: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl HubOptions {
    /// The receive limit as the codec takes it (`None` = unlimited).
    pub fn max_message_size(&self) -> Option<usize> {
        (self.maximum_receive_message_size > 0).then_some(self.maximum_receive_message_size)
    }

    /// Checks values that would make a hub unusable.
    pub fn validate(&self) -> Result<(), OptionsError> {
        let fail = |option, reason| Err(OptionsError { option, reason });
        if self.supported_protocols.is_empty() {
            return fail("supported_protocols", "at least one protocol is required");
        }
        if self.transports.is_empty() {
            return fail("transports", "at least one transport is required");
        }
        if self.maximum_parallel_invocations_per_client == 0 {
            return fail(
                "maximum_parallel_invocations_per_client",
                "must be at least 1",
            );
        }
        if self.stream_buffer_capacity == 0 {
            return fail("stream_buffer_capacity", "must be at least 1");
        }
        if self.keep_alive_interval.is_zero() || self.handshake_timeout.is_zero() {
            return fail("keep_alive_interval", "intervals must be greater than zero");
        }
        if self.client_timeout_interval <= self.keep_alive_interval {
            return fail(
                "client_timeout_interval",
                "must be longer than keep_alive_interval (clients ping at that interval)",
            );
        }
        if self.transport_max_buffer_size == 0 || self.application_max_buffer_size == 0 {
            return fail(
                "transport_max_buffer_size",
                "buffer sizes must be greater than zero",
            );
        }
        Ok(())
    }
}

/// Option values written by name: protocols and transports.
trait Named: Sized + Copy {
    const EXPECTED: &'static str;
    fn name(self) -> &'static str;
    fn from_name(name: &str) -> Option<Self>;
}

impl Named for Protocol {
    const EXPECTED: &'static str = "json or messagepack";
    fn name(self) -> &'static str {
        Protocol::name(self)
    }
    fn from_name(name: &str) -> Option<Self> {
        Protocol::from_name(name)
    }
}

impl Named for Transport {
    const EXPECTED: &'static str = "WebSockets, ServerSentEvents or LongPolling";
    fn name(self) -> &'static str {
        Transport::name(self)
    }
    fn from_name(name: &str) -> Option<Self> {
        Transport::from_name(name)
    }
}

/// `#[serde(with = "names")]`: a list of [`Named`] values as their names.
mod names {
    use super::{Deserialize, Deserializer, Named, Serializer};

    pub(super) fn serialize<T: Named, S: Serializer>(value: &[T], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(value.iter().map(|v| v.name()))
    }

    pub(super) fn deserialize<'de, T: Named, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|name| {
                T::from_name(name).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown value '{name}' (expected {})",
                        T::EXPECTED
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_aspnet_core() {
        let o = HubOptions::default();
        assert_eq!(o.keep_alive_interval, Duration::from_secs(15));
        assert_eq!(o.client_timeout_interval, Duration::from_secs(30));
        assert_eq!(o.max_message_size(), Some(32768));
        assert_eq!(o.maximum_parallel_invocations_per_client, 1);
        assert!(o.validate().is_ok());
    }

    #[test]
    fn options_round_trip_through_json_names() {
        let o: HubOptions = serde_json::from_str(
            r#"{"keep_alive_interval":"5s","transports":["longpolling"],"supported_protocols":["json"],"maximum_receive_message_size":0}"#,
        )
        .unwrap();
        assert_eq!(o.keep_alive_interval, Duration::from_secs(5));
        assert_eq!(o.transports, vec![Transport::LongPolling]);
        assert_eq!(o.max_message_size(), None);
        let bad = serde_json::from_str::<HubOptions>(r#"{"transports":["carrier-pigeon"]}"#);
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("unknown value 'carrier-pigeon'")
        );
        let typo = serde_json::from_str::<HubOptions>(r#"{"keep_alive":"5s"}"#);
        assert!(typo.is_err());
        let invalid = HubOptions {
            client_timeout_interval: Duration::from_secs(1),
            ..HubOptions::default()
        };
        assert_eq!(
            invalid.validate().unwrap_err().option,
            "client_timeout_interval"
        );
    }
}
