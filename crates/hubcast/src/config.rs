//! Configuration layers: defaults < TOML file < environment (`HUBCAST_*`) < flags. Parsing takes the
//! file text and an environment map, so it never binds ports or reads the process environment and is
//! testable as it is.
//!
//! Hub options are merged as TOML tables: the `[hub]` table (with `HUBCAST_HUB_<NAME>` variables
//! applied) is the base of every hub, and `[hubs.<name>]` overrides it for one hub.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use hubcast_gateway::HubOptions;
use hubcast_http::ServerLimits;
use hubcast_upstream::UpstreamOptions;
use serde::Deserialize;

/// The annotated default file that `hubcast default-config` prints.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

const HUB_ENV_PREFIX: &str = "HUBCAST_HUB_";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("configuration file: {0}")]
    File(String),
    /// A `HUBCAST_HUB_*` variable or a hub section is invalid.
    #[error("hub options: {0}")]
    Hub(String),
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    listen: SocketAddr,
    admin_listen: SocketAddr,
    node_id: String,
    #[serde(with = "humantime_serde")]
    shutdown_grace: Duration,
    #[serde(with = "humantime_serde")]
    drain_window: Duration,
    allowed_origins: Vec<String>,
    server: ServerLimits,
    hub: toml::Table,
    hubs: BTreeMap<String, toml::Table>,
    upstreams: Vec<UpstreamOptions>,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            node_id: String::new(),
            shutdown_grace: Duration::from_secs(10),
            drain_window: Duration::ZERO,
            allowed_origins: Vec::new(),
            server: ServerLimits::default(),
            hub: toml::Table::new(),
            hubs: BTreeMap::new(),
            upstreams: Vec::new(),
        }
    }
}

/// The merged configuration of a node.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) admin_listen: SocketAddr,
    pub(crate) node_id: Option<String>,
    pub(crate) shutdown_grace: Duration,
    /// On shutdown, connections are closed spread over this window (within the grace period).
    pub(crate) drain_window: Duration,
    pub(crate) allowed_origins: Vec<String>,
    /// The client listener's limits (timeouts, connection caps, header size).
    pub(crate) server: ServerLimits,
    /// Upstream hubs: methods and connection events go to an HTTP backend.
    pub(crate) upstreams: Vec<UpstreamOptions>,
    hub: toml::Table,
    hubs: BTreeMap<String, toml::Table>,
}

impl Config {
    /// Merges the file (if any) with the `HUBCAST_HUB_*` variables of `env`, and checks every hub
    /// section.
    pub(crate) fn load(
        file: Option<&str>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let parsed: FileConfig = match file {
            Some(text) => toml::from_str(text).map_err(|e| ConfigError::File(e.to_string()))?,
            None => FileConfig::default(),
        };
        let mut hub = parsed.hub;
        for (key, raw) in env {
            if let Some(name) = key.strip_prefix(HUB_ENV_PREFIX) {
                hub.insert(name.to_ascii_lowercase(), env_value(raw));
            }
        }
        let config = Self {
            listen: parsed.listen,
            admin_listen: parsed.admin_listen,
            node_id: Some(parsed.node_id).filter(|id| !id.is_empty()),
            shutdown_grace: parsed.shutdown_grace,
            drain_window: parsed.drain_window,
            allowed_origins: parsed.allowed_origins,
            server: parsed.server,
            upstreams: parsed.upstreams,
            hub,
            hubs: parsed.hubs,
        };
        config.hub_options("")?;
        for name in config.hubs.keys() {
            config.hub_options(name)?;
        }
        Ok(config)
    }

    /// The options of the hub named `name`: `[hub]`, then `[hubs.<name>]` over it.
    pub(crate) fn hub_options(&self, name: &str) -> Result<HubOptions, ConfigError> {
        let mut table = self.hub.clone();
        if let Some(overrides) = self.hubs.get(name) {
            table.extend(overrides.clone());
        }
        let options: HubOptions =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    ConfigError::Hub(format!("{}: {}", section(name), e.message()))
                })?;
        options
            .validate()
            .map_err(|e| ConfigError::Hub(format!("{}: {e}", section(name))))?;
        Ok(options)
    }
}

fn section(name: &str) -> String {
    if name.is_empty() {
        "[hub]".to_owned()
    } else {
        format!("[hubs.{name}]")
    }
}

/// Reads an environment value as TOML when it is a TOML value (`10`, `true`, `["a"]`), as a list when it
/// has commas (`json,messagepack`), and as a string otherwise (`10s`).
fn env_value(raw: &str) -> toml::Value {
    if let Ok(table) = format!("v = {raw}").parse::<toml::Table>()
        && let Some(value) = table.get("v")
    {
        return value.clone();
    }
    if raw.contains(',') {
        return toml::Value::Array(
            raw.split(',')
                .map(|s| toml::Value::String(s.trim().to_owned()))
                .collect(),
        );
    }
    toml::Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_is_the_defaults() {
        let config = Config::load(Some(DEFAULT_CONFIG), &HashMap::new()).unwrap();
        assert_eq!(config.hub_options("chat").unwrap(), HubOptions::default());
        assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.server, ServerLimits::default());
        let empty = Config::load(None, &HashMap::new()).unwrap();
        assert_eq!(empty.hub_options("x").unwrap(), HubOptions::default());
    }

    #[test]
    fn layers_file_env_and_per_hub() {
        let file = r#"
            [hub]
            keep_alive_interval = "5s"
            [hubs.chat]
            enable_detailed_errors = true
        "#;
        let env = HashMap::from([
            (
                "HUBCAST_HUB_KEEP_ALIVE_INTERVAL".to_owned(),
                "7s".to_owned(),
            ),
            (
                "HUBCAST_HUB_MAXIMUM_RECEIVE_MESSAGE_SIZE".to_owned(),
                "1024".to_owned(),
            ),
            (
                "HUBCAST_HUB_TRANSPORTS".to_owned(),
                "WebSockets,LongPolling".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ]);
        let config = Config::load(Some(file), &env).unwrap();
        let chat = config.hub_options("chat").unwrap();
        assert_eq!(chat.keep_alive_interval, Duration::from_secs(7));
        assert_eq!(chat.maximum_receive_message_size, 1024);
        assert!(chat.enable_detailed_errors);
        assert_eq!(chat.transports.len(), 2);
        assert!(!config.hub_options("other").unwrap().enable_detailed_errors);
    }

    #[test]
    fn errors_name_the_problem() {
        let unknown = Config::load(Some("lisen = \"x\""), &HashMap::new()).unwrap_err();
        assert!(unknown.to_string().contains("lisen"), "{unknown}");
        let bad_hub = Config::load(
            Some("[hubs.chat]\ntransports = [\"Pigeon\"]"),
            &HashMap::new(),
        )
        .unwrap_err();
        assert!(bad_hub.to_string().contains("[hubs.chat]"), "{bad_hub}");
        let invalid = Config::load(
            Some("[hub]\nclient_timeout_interval = \"1s\""),
            &HashMap::new(),
        )
        .unwrap_err();
        assert!(
            invalid.to_string().contains("client_timeout_interval"),
            "{invalid}"
        );
        let env = HashMap::from([(
            "HUBCAST_HUB_KEEP_ALIVE_INTERVAL".to_owned(),
            "soon".to_owned(),
        )]);
        assert!(Config::load(None, &env).is_err());
    }
}
