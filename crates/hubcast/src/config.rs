//! The one configuration of a process: every setting, in layers, lowest first: defaults < TOML file
//! (`--config`) < environment (`HUBCAST_*`) < flags. The file's sections are `[server]`, `[backplane]`,
//! `[history]`, `[auth]`, `[control]`, `[hub]`, `[hubs.<name>]` and `[[upstreams]]`; clap reads the
//! environment and the flags (so `--help` names every variable), and [`Config::apply_serve`] /
//! [`Config::apply_control`] lay them over the file. [`Config::validate`] checks every setting, so
//! `hubcast check-config` refuses what `serve` would refuse. Parsing takes the file text and an
//! environment map, so it never binds ports or reads the process environment and is testable as it is.
//!
//! Hub options are merged as TOML tables: the `[hub]` table (with `HUBCAST_HUB_<NAME>` variables
//! applied) is the base of every hub, and `[hubs.<name>]` overrides it for one hub.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hubcast_gateway::HubOptions;
use hubcast_gateway::auth::JwtAuth;
use hubcast_http::ServerLimits;
use hubcast_upstream::UpstreamOptions;
use serde::Deserialize;

use crate::cli::{ControlArgs, LogFormat, ServeArgs};

/// The annotated default file that `hubcast default-config` prints.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

const HUB_ENV_PREFIX: &str = "HUBCAST_HUB_";

/// The hubs `hubcast serve` maps besides the upstream ones: `[hubs.<name>]` may name only these.
#[cfg(not(feature = "conformance"))]
const BUILT_IN_HUBS: &[&str] = &["chat"];
#[cfg(feature = "conformance")]
const BUILT_IN_HUBS: &[&str] = &["chat", "TestHub"];

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("configuration file: {0}")]
    File(String),
    /// A `HUBCAST_HUB_*` variable or a hub section is invalid.
    #[error("hub options: {0}")]
    Hub(String),
    /// A setting is unusable (named, with the reason; never with a secret's value).
    #[error("{0}")]
    Setting(String),
}

/// A secret setting: read like a string, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `[backplane]`: what joins the nodes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct BackplaneSettings {
    /// `memory`, `redis://…`, `redis+sentinel://…` or `redis+cluster://…`.
    pub(crate) url: String,
    /// Prefix of the Redis channels and keys.
    pub(crate) prefix: String,
    /// How long a node's presence outlives its last heartbeat.
    #[serde(with = "humantime_serde")]
    pub(crate) node_ttl: Duration,
    /// ACL username, apart from the URL.
    pub(crate) username: Option<String>,
    /// Password, apart from the URL (any characters).
    pub(crate) password: Option<Secret>,
    /// A file holding the password (a mounted Secret), instead of `password`.
    password_file: Option<PathBuf>,
    /// With Sentinel: the sentinels' own ACL username, if they ask for one.
    pub(crate) sentinel_username: Option<String>,
    /// With Sentinel: the sentinels' own password (their `requirepass`), if they ask for one.
    pub(crate) sentinel_password: Option<Secret>,
    /// A file holding the sentinels' password, instead of `sentinel_password`.
    sentinel_password_file: Option<PathBuf>,
    /// Over TLS (`rediss…`): the CA certificates the servers' must chain to.
    pub(crate) ca_file: Option<PathBuf>,
    /// Over TLS (`rediss…`): a client certificate and its key.
    pub(crate) client_cert: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
    /// `host:port` where the other nodes reach this node's client listener, to relay requests for its
    /// connections; default: the client listener's address when it names one (not `0.0.0.0`).
    pub(crate) advertise_address: Option<String>,
    /// Relay requests for other nodes' connections to them (no session affinity needed).
    pub(crate) relay: bool,
}

impl Default for BackplaneSettings {
    fn default() -> Self {
        Self {
            url: "memory".to_owned(),
            prefix: "hubcast".to_owned(),
            node_ttl: Duration::from_millis(7_500),
            username: None,
            password: None,
            password_file: None,
            sentinel_username: None,
            sentinel_password: None,
            sentinel_password_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            advertise_address: None,
            relay: true,
        }
    }
}

/// `[history]`: where the chat keeps its messages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HistorySettings {
    /// `sqlite:PATH`, `postgres://…` or `none`.
    pub(crate) url: String,
    /// The PostgreSQL password, apart from the URL.
    pub(crate) password: Option<Secret>,
    /// A file holding the password, instead of `password`.
    password_file: Option<PathBuf>,
    /// libpq's `sslmode` (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`); else the URL's,
    /// else `prefer`.
    pub(crate) sslmode: Option<String>,
    /// The CA certificates (PEM) the server's must chain to; else the URL's `sslrootcert`, else the
    /// Mozilla roots.
    pub(crate) ca_file: Option<PathBuf>,
    /// PostgreSQL connections at most.
    pub(crate) pool_size: usize,
    /// Connecting may take this long.
    #[serde(with = "humantime_serde")]
    pub(crate) connect_timeout: Duration,
    /// Each statement may take this long.
    #[serde(with = "humantime_serde")]
    pub(crate) statement_timeout: Duration,
}

impl Default for HistorySettings {
    fn default() -> Self {
        let postgres = hubcast_chat::PostgresOptions::default();
        Self {
            url: "sqlite:hubcast.db".to_owned(),
            password: None,
            password_file: None,
            sslmode: None,
            ca_file: None,
            pool_size: postgres.pool_size,
            connect_timeout: postgres.connect_timeout,
            statement_timeout: postgres.statement_timeout,
        }
    }
}

impl HistorySettings {
    /// The PostgreSQL store's options.
    pub(crate) fn postgres(&self) -> Result<hubcast_chat::PostgresOptions, ConfigError> {
        let tls = self
            .sslmode
            .as_deref()
            .map(str::parse::<hubcast_chat::TlsMode>)
            .transpose()
            .map_err(|e| ConfigError::Setting(format!("history.sslmode: {e}")))?;
        Ok(hubcast_chat::PostgresOptions {
            password: self.password.as_ref().map(|p| p.expose().to_owned()),
            tls,
            ca_file: self.ca_file.clone(),
            pool_size: self.pool_size,
            connect_timeout: self.connect_timeout,
            statement_timeout: self.statement_timeout,
        })
    }
}

/// `[auth]`: bearer tokens and session cookies.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AuthSettings {
    /// HMAC secret of HS256/384/512 tokens.
    pub(crate) jwt_secret: Option<Secret>,
    /// A file holding it, instead of `jwt_secret`.
    jwt_secret_file: Option<PathBuf>,
    /// PEM file of an RSA or EC public key.
    pub(crate) jwt_public_key: Option<PathBuf>,
    /// JWKS file.
    pub(crate) jwks: Option<PathBuf>,
    /// JWKS URL of an identity provider (fetched, refreshed).
    pub(crate) jwks_url: Option<String>,
    /// An OpenID provider: its `jwks_uri` is found through discovery, and `iss` must be it.
    pub(crate) oidc_issuer: Option<String>,
    /// The keys of a URL are fetched again this often.
    #[serde(with = "humantime_serde")]
    pub(crate) jwks_refresh: Duration,
    /// … and on a token with an unknown key id, but never more often than this.
    #[serde(with = "humantime_serde")]
    pub(crate) jwks_min_interval: Duration,
    /// Required `iss`.
    pub(crate) issuer: Option<String>,
    /// Required `aud`.
    pub(crate) audience: Option<String>,
    /// Claims tried in order for the user id.
    pub(crate) user_claims: Option<Vec<String>>,
    /// Signs session cookies (the same on every node).
    pub(crate) session_secret: Option<Secret>,
    /// A file holding it, instead of `session_secret`.
    session_secret_file: Option<PathBuf>,
    /// The dev login even though a key is configured.
    pub(crate) dev_login: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_secret_file: None,
            jwt_public_key: None,
            jwks: None,
            jwks_url: None,
            oidc_issuer: None,
            jwks_refresh: Duration::from_secs(600),
            jwks_min_interval: Duration::from_secs(30),
            issuer: None,
            audience: None,
            user_claims: None,
            session_secret: None,
            session_secret_file: None,
            dev_login: false,
        }
    }
}

impl AuthSettings {
    /// Whether a token key is configured (else: dev mode).
    pub(crate) fn key_configured(&self) -> bool {
        self.jwt_secret.is_some()
            || self.jwt_public_key.is_some()
            || self.jwks.is_some()
            || self.jwks_url.is_some()
            || self.oidc_issuer.is_some()
    }

    /// The bearer-token validation these settings describe, with `secret` as the HMAC key when no
    /// other key is set (dev mode's random secret); reads the key files.
    /// `shared` holds the keys of `jwks_url` or `oidc_issuer`, kept fresh elsewhere.
    pub(crate) fn validator(
        &self,
        secret: Option<&[u8]>,
        shared: Option<std::sync::Arc<hubcast_gateway::auth::SharedJwks>>,
    ) -> Result<Option<JwtAuth>, ConfigError> {
        let read = |path: &PathBuf| {
            std::fs::read(path)
                .map_err(|e| ConfigError::Setting(format!("reading {}: {e}", path.display())))
        };
        let invalid = |what: &str, path: &PathBuf, e: &dyn std::fmt::Display| {
            ConfigError::Setting(format!("{what} {}: {e}", path.display()))
        };
        let auth = if let Some(shared) = shared {
            JwtAuth::shared_jwks(shared)
        } else if let Some(path) = &self.jwks {
            JwtAuth::jwks(&read(path)?).map_err(|e| invalid("JWKS", path, &e))?
        } else if let Some(path) = &self.jwt_public_key {
            JwtAuth::public_key_pem(&read(path)?).map_err(|e| invalid("public key", path, &e))?
        } else if let Some(secret) = self
            .jwt_secret
            .as_ref()
            .map(|s| s.expose().as_bytes())
            .or(secret)
        {
            JwtAuth::hmac(secret)
        } else {
            return Ok(None);
        };
        let auth = match &self.user_claims {
            Some(claims) => auth.with_user_claims(claims.clone()),
            None => auth,
        };
        let auth = match self.issuer.as_ref().or(self.oidc_issuer.as_ref()) {
            Some(issuer) => auth.with_issuer(issuer),
            None => auth,
        };
        Ok(Some(match &self.audience {
            Some(audience) => auth.with_audience(audience),
            None => auth,
        }))
    }
}

/// `[tls]`: TLS on the listeners.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TlsSettings {
    /// The certificate chain (PEM); with `key`, the client listener speaks only TLS.
    pub(crate) cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub(crate) key: Option<PathBuf>,
    /// The files are checked this often, and a changed certificate served from then on.
    #[serde(with = "humantime_serde")]
    pub(crate) reload: Duration,
    /// The admin listener speaks TLS too (probes then use HTTPS).
    pub(crate) admin: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            reload: Duration::from_secs(10),
            admin: false,
        }
    }
}

/// `[control]`: who may call the control API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ControlSettings {
    /// Access keys (bearer tokens signed HS256 with one are accepted).
    pub(crate) access_keys: Vec<Secret>,
    /// A file holding them, one a line, instead of `access_keys`.
    access_keys_file: Option<PathBuf>,
    /// SHA-256 (hex) of the API keys accepted in `X-API-Key`.
    pub(crate) api_key_sha256: Vec<String>,
    /// Requests without credentials are let in.
    pub(crate) anonymous: bool,
    /// Failed authentications a minute per address before 429; 0 for no limit.
    pub(crate) auth_failures: u32,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            access_keys: Vec::new(),
            access_keys_file: None,
            api_key_sha256: Vec::new(),
            anonymous: false,
            auth_failures: hubcast_control::DEFAULT_FREE_FAILURES,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    admin_listen: SocketAddr,
    node_id: String,
    #[serde(with = "humantime_serde")]
    shutdown_grace: Duration,
    #[serde(with = "humantime_serde")]
    drain_window: Duration,
    #[serde(with = "humantime_serde")]
    readiness_grace: Duration,
    allowed_origins: Vec<String>,
    web_root: PathBuf,
    log_format: LogFormat,
    server: ServerLimits,
    backplane: BackplaneSettings,
    history: HistorySettings,
    auth: AuthSettings,
    control: ControlSettings,
    tls: TlsSettings,
    hub: toml::Table,
    hubs: BTreeMap<String, toml::Table>,
    upstreams: Vec<UpstreamOptions>,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            listen: None,
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            node_id: String::new(),
            shutdown_grace: Duration::from_secs(10),
            drain_window: Duration::ZERO,
            readiness_grace: Duration::from_secs(10),
            allowed_origins: Vec::new(),
            web_root: PathBuf::from("web"),
            log_format: LogFormat::Text,
            server: ServerLimits::default(),
            backplane: BackplaneSettings::default(),
            history: HistorySettings::default(),
            auth: AuthSettings::default(),
            control: ControlSettings::default(),
            tls: TlsSettings::default(),
            hub: toml::Table::new(),
            hubs: BTreeMap::new(),
            upstreams: Vec::new(),
        }
    }
}

impl FileConfig {
    /// Reads the `*_file` keys (Secrets mounted as files) into the secrets they hold.
    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        secret_from_file(
            "backplane.password",
            &mut self.backplane.password,
            self.backplane.password_file.take(),
        )?;
        secret_from_file(
            "backplane.sentinel_password",
            &mut self.backplane.sentinel_password,
            self.backplane.sentinel_password_file.take(),
        )?;
        secret_from_file(
            "history.password",
            &mut self.history.password,
            self.history.password_file.take(),
        )?;
        secret_from_file(
            "auth.jwt_secret",
            &mut self.auth.jwt_secret,
            self.auth.jwt_secret_file.take(),
        )?;
        secret_from_file(
            "auth.session_secret",
            &mut self.auth.session_secret,
            self.auth.session_secret_file.take(),
        )?;
        if let Some(path) = self.control.access_keys_file.take() {
            if !self.control.access_keys.is_empty() {
                return Err(both("control.access_keys"));
            }
            self.control.access_keys = read_secret("control.access_keys", &path)?
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(|line| Secret(line.to_owned()))
                .collect();
        }
        Ok(())
    }
}

fn both(key: &str) -> ConfigError {
    ConfigError::Setting(format!("give {key} or {key}_file, not both"))
}

/// The file's text, its trailing line break left out (never in an error).
fn read_secret(key: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Setting(format!("{key}_file {}: {e}", path.display())))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

fn secret_from_file(
    key: &str,
    secret: &mut Option<Secret>,
    file: Option<PathBuf>,
) -> Result<(), ConfigError> {
    let Some(path) = file else { return Ok(()) };
    if secret.is_some() {
        return Err(both(key));
    }
    *secret = Some(Secret(read_secret(key, &path)?));
    Ok(())
}

/// Where `hubcast serve` listens unless told otherwise.
const SERVE_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8080);
/// Where `hubcast control` listens unless told otherwise.
const CONTROL_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8081);

/// The merged configuration of a process.
#[derive(Debug)]
pub(crate) struct Config {
    /// `None` until a command applies its own default (8080 for `serve`, 8081 for `control`).
    listen: Option<SocketAddr>,
    pub(crate) admin_listen: SocketAddr,
    pub(crate) node_id: Option<String>,
    pub(crate) shutdown_grace: Duration,
    /// On shutdown, connections are closed spread over this window (within the grace period).
    pub(crate) drain_window: Duration,
    /// A dependency (backplane, history) that answered once may fail this long before `/ready` says
    /// 503.
    pub(crate) readiness_grace: Duration,
    pub(crate) allowed_origins: Vec<String>,
    /// The chat page's directory.
    pub(crate) web_root: PathBuf,
    pub(crate) log_format: LogFormat,
    /// The client listener's limits (timeouts, connection caps, header size).
    pub(crate) server: ServerLimits,
    pub(crate) backplane: BackplaneSettings,
    pub(crate) history: HistorySettings,
    pub(crate) auth: AuthSettings,
    pub(crate) control: ControlSettings,
    pub(crate) tls: TlsSettings,
    /// Upstream hubs: methods and connection events go to an HTTP backend.
    pub(crate) upstreams: Vec<UpstreamOptions>,
    /// Mount the test hubs (`serve --conformance`).
    #[cfg(feature = "conformance")]
    pub(crate) conformance: bool,
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
        let mut parsed: FileConfig = match file {
            Some(text) => toml::from_str(text).map_err(|e| ConfigError::File(e.to_string()))?,
            None => FileConfig::default(),
        };
        parsed.read_secret_files()?;
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
            readiness_grace: parsed.readiness_grace,
            allowed_origins: parsed.allowed_origins,
            web_root: parsed.web_root,
            log_format: parsed.log_format,
            server: parsed.server,
            backplane: parsed.backplane,
            history: parsed.history,
            auth: parsed.auth,
            control: parsed.control,
            tls: parsed.tls,
            upstreams: parsed.upstreams,
            #[cfg(feature = "conformance")]
            conformance: false,
            hub,
            hubs: parsed.hubs,
        };
        config.hub_options("")?;
        for name in config.hubs.keys() {
            config.hub_options(name)?;
        }
        Ok(config)
    }

    /// The client (or control API) listener's address.
    pub(crate) fn listen(&self) -> SocketAddr {
        self.listen.unwrap_or(SERVE_LISTEN)
    }

    /// Lays `hubcast serve`'s flags and environment over the file.
    pub(crate) fn apply_serve(&mut self, args: &ServeArgs) {
        set(&mut self.listen, args.listen.map(Some));
        set(&mut self.admin_listen, args.admin_listen);
        set(&mut self.node_id, args.node_id.clone().map(Some));
        set(&mut self.drain_window, args.drain_window.map(Into::into));
        set(&mut self.allowed_origins, args.allowed_origins.clone());
        set(&mut self.web_root, args.web_root.clone());
        set(&mut self.log_format, args.log_format);
        set(&mut self.history.url, args.history.clone());
        set(
            &mut self.history.password,
            args.history_password.clone().map(|p| Some(Secret(p))),
        );
        set(
            &mut self.auth.jwt_secret,
            args.jwt_secret.clone().map(|s| Some(Secret(s))),
        );
        set(
            &mut self.auth.jwt_public_key,
            args.jwt_public_key.clone().map(Some),
        );
        set(&mut self.auth.jwks, args.jwks.clone().map(Some));
        set(&mut self.auth.jwks_url, args.jwks_url.clone().map(Some));
        set(
            &mut self.auth.oidc_issuer,
            args.oidc_issuer.clone().map(Some),
        );
        set(&mut self.auth.issuer, args.jwt_issuer.clone().map(Some));
        set(&mut self.auth.audience, args.jwt_audience.clone().map(Some));
        set(
            &mut self.auth.user_claims,
            args.jwt_user_claim.clone().map(Some),
        );
        set(
            &mut self.auth.session_secret,
            args.session_secret.clone().map(|s| Some(Secret(s))),
        );
        self.auth.dev_login |= args.dev_auth;
        #[cfg(feature = "conformance")]
        {
            self.conformance = args.conformance;
        }
        self.apply_shared(&args.backplane, &args.control, &args.tls);
    }

    /// Lays `hubcast control`'s flags and environment over the file.
    pub(crate) fn apply_control(&mut self, args: &ControlArgs) {
        self.listen = args.listen.or(self.listen).or(Some(CONTROL_LISTEN));
        set(&mut self.admin_listen, args.admin_listen);
        set(&mut self.log_format, args.log_format);
        set(
            &mut self.auth.jwt_secret,
            args.jwt_secret.clone().map(|s| Some(Secret(s))),
        );
        set(&mut self.auth.issuer, args.jwt_issuer.clone().map(Some));
        set(&mut self.auth.audience, args.jwt_audience.clone().map(Some));
        self.apply_shared(&args.backplane, &args.control, &args.tls);
    }

    fn apply_shared(
        &mut self,
        backplane: &crate::cli::BackplaneArgs,
        control: &crate::cli::ControlAccess,
        tls: &crate::cli::TlsArgs,
    ) {
        set(&mut self.tls.cert, tls.tls_cert.clone().map(Some));
        set(&mut self.tls.key, tls.tls_key.clone().map(Some));
        set(&mut self.backplane.url, backplane.backplane.clone());
        set(
            &mut self.backplane.prefix,
            backplane.backplane_prefix.clone(),
        );
        set(
            &mut self.backplane.node_ttl,
            backplane.node_ttl.map(Into::into),
        );
        set(
            &mut self.backplane.username,
            backplane.backplane_username.clone().map(Some),
        );
        set(
            &mut self.backplane.password,
            backplane
                .backplane_password
                .clone()
                .map(|p| Some(Secret(p))),
        );
        set(
            &mut self.backplane.sentinel_username,
            backplane.backplane_sentinel_username.clone().map(Some),
        );
        set(
            &mut self.backplane.sentinel_password,
            backplane
                .backplane_sentinel_password
                .clone()
                .map(|p| Some(Secret(p))),
        );
        set(
            &mut self.backplane.ca_file,
            backplane.backplane_ca_file.clone().map(Some),
        );
        set(
            &mut self.backplane.advertise_address,
            backplane.advertise_address.clone().map(Some),
        );
        set(
            &mut self.backplane.client_cert,
            backplane.backplane_client_cert.clone().map(Some),
        );
        set(
            &mut self.backplane.client_key,
            backplane.backplane_client_key.clone().map(Some),
        );
        if !control.access_key.is_empty() {
            self.control.access_keys = control.access_key.iter().cloned().map(Secret).collect();
        }
        if !control.api_key_sha256.is_empty() {
            self.control
                .api_key_sha256
                .clone_from(&control.api_key_sha256);
        }
        self.control.anonymous |= control.control_anonymous;
        set(
            &mut self.control.auth_failures,
            control.control_auth_failures,
        );
    }

    /// Checks every setting that can be checked without connecting anywhere: the drain fits the grace,
    /// `[hubs.<name>]` names a hub that exists, the backplane and history URLs parse, the key files
    /// read and parse, the API-key hashes are hex.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let setting = |message: String| Err(ConfigError::Setting(message));
        if self.drain_window > self.shutdown_grace {
            return setting(format!(
                "drain_window ({}) is longer than shutdown_grace ({}): connections left after the \
                 grace would be cut without their Close",
                humantime::format_duration(self.drain_window),
                humantime::format_duration(self.shutdown_grace)
            ));
        }
        if self.server.listen_backlog == 0 {
            return setting(
                "[server] listen_backlog is 0: the kernel would queue almost no connection before                  hubcast accepts it (the default is 4096)"
                    .to_owned(),
            );
        }
        for name in self.hubs.keys() {
            let known = BUILT_IN_HUBS.contains(&name.as_str())
                || self.upstreams.iter().any(|u| &u.hub == name);
            if !known {
                let mut hubs: Vec<&str> = BUILT_IN_HUBS.to_vec();
                hubs.extend(self.upstreams.iter().map(|u| u.hub.as_str()));
                return setting(format!(
                    "[hubs.{name}] names no hub (the hubs are: {})",
                    hubs.join(", ")
                ));
            }
        }
        if self.backplane.client_cert.is_some() != self.backplane.client_key.is_some() {
            return setting(
                "backplane: a client certificate needs its key, and a key its certificate".into(),
            );
        }
        if self.backplane.url != "memory" {
            self.redis()
                .validate()
                .map_err(|e| ConfigError::Setting(format!("backplane: {e}")))?;
        }
        if let Some(address) = &self.backplane.advertise_address {
            let port = address
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(port))) if !host.is_empty() && port != 0) {
                return setting(format!(
                    "backplane.advertise_address: expected host:port, got '{address}'"
                ));
            }
        }
        let history = &self.history.url;
        if history != "none" && !history.starts_with("sqlite:") {
            hubcast_chat::PostgresStore::check(history).map_err(|e| {
                ConfigError::Setting(format!(
                    "history: expected sqlite:PATH, postgres://… or none: {e}"
                ))
            })?;
            let options = self.history.postgres()?;
            hubcast_chat::PostgresStore::open(history, &options)
                .map_err(|e| ConfigError::Setting(format!("history: {e}")))?;
        }
        self.auth.validator(None, None)?;
        for (key, url) in [
            ("auth.jwks_url", &self.auth.jwks_url),
            ("auth.oidc_issuer", &self.auth.oidc_issuer),
        ] {
            if let Some(url) = url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return setting(format!("{key} must be an https:// (or http://) URL"));
            }
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(cert), Some(key)) => {
                hubcast_http::Tls::load(cert, key)
                    .map_err(|e| ConfigError::Setting(format!("tls: {e}")))?;
            }
            (None, None) => {}
            _ => {
                return setting(
                    "tls: a certificate needs its key, and a key its certificate".into(),
                );
            }
        }
        for hash in &self.control.api_key_sha256 {
            hubcast_control::ControlAuth::default()
                .with_api_key_sha256(hash)
                .map_err(|e| ConfigError::Setting(format!("control.api_key_sha256: {e}")))?;
        }
        Ok(())
    }

    /// Where other nodes reach this node for relayed requests: `advertise_address`, else the client
    /// listener's `bound` address when it names a host (not `0.0.0.0` or `::`).
    pub(crate) fn advertise_address(&self, bound: SocketAddr) -> Option<String> {
        if !self.backplane.relay {
            return None;
        }
        self.backplane
            .advertise_address
            .clone()
            .or_else(|| (!bound.ip().is_unspecified()).then(|| bound.to_string()))
    }

    /// The Redis backplane's configuration.
    pub(crate) fn redis(&self) -> hubcast_backplane_redis::RedisConfig {
        let backplane = &self.backplane;
        hubcast_backplane_redis::RedisConfig {
            prefix: backplane.prefix.clone(),
            node_ttl: backplane.node_ttl,
            username: backplane.username.clone(),
            password: backplane.password.as_ref().map(|p| p.expose().to_owned()),
            sentinel_username: backplane.sentinel_username.clone(),
            sentinel_password: backplane
                .sentinel_password
                .as_ref()
                .map(|p| p.expose().to_owned()),
            ca_file: backplane.ca_file.clone(),
            client_cert: backplane
                .client_cert
                .clone()
                .zip(backplane.client_key.clone()),
            ..hubcast_backplane_redis::RedisConfig::new(&backplane.url)
        }
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

/// Replaces `value` with a flag's or variable's, when one was given.
fn set<T>(value: &mut T, given: Option<T>) {
    if let Some(given) = given {
        *value = given;
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
        assert_eq!(config.listen(), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.server, ServerLimits::default());
        assert_eq!(config.backplane, BackplaneSettings::default());
        assert_eq!(config.history, HistorySettings::default());
        assert_eq!(config.auth, AuthSettings::default());
        assert_eq!(config.control, ControlSettings::default());
        assert_eq!(config.web_root, PathBuf::from("web"));
        assert_eq!(config.log_format, LogFormat::Text);
        config.validate().unwrap();
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

    fn serve_args(flags: &[&str]) -> ServeArgs {
        use clap::Parser;
        let mut argv = vec!["serve"];
        argv.extend_from_slice(flags);
        ServeArgs::try_parse_from(argv).unwrap()
    }

    #[test]
    fn every_setting_has_a_file_key_and_flags_win() {
        let file = r#"
            web_root = "/srv/web"
            log_format = "json"
            [backplane]
            url = "redis://127.0.0.1:6379"
            prefix = "blue"
            password = "p/a+s=s#"
            [history]
            url = "postgres://app@db:5432/chat"
            password = "secret"
            [auth]
            jwt_secret = "0123456789abcdef0123456789abcdef"
            issuer = "https://idp"
            audience = "hubcast"
            [control]
            access_keys = ["k1"]
            auth_failures = 3
        "#;
        let mut config = Config::load(Some(file), &HashMap::new()).unwrap();
        config.apply_serve(&serve_args(&[
            "--backplane-prefix",
            "green",
            "--listen",
            "127.0.0.1:1",
        ]));
        config.validate().unwrap();
        assert_eq!(config.web_root, PathBuf::from("/srv/web"));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.backplane.prefix, "green");
        assert_eq!(config.listen(), "127.0.0.1:1".parse().unwrap());
        assert_eq!(config.redis().password.as_deref(), Some("p/a+s=s#"));
        assert_eq!(config.control.auth_failures, 3);
        assert_eq!(config.auth.issuer.as_deref(), Some("https://idp"));
        assert!(config.auth.validator(None, None).unwrap().is_some());
        // Secrets never show in a debug print.
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("p/a+s=s#") && !shown.contains("0123456789abcdef"),
            "{shown}"
        );
    }

    #[test]
    fn the_advertised_address_is_the_setting_else_a_named_listener() {
        let bound = |a: &str| a.parse::<SocketAddr>().unwrap();
        let config = Config::load(None, &HashMap::new()).unwrap();
        assert_eq!(
            config.advertise_address(bound("127.0.0.1:8080")),
            Some("127.0.0.1:8080".to_owned())
        );
        assert_eq!(config.advertise_address(bound("0.0.0.0:8080")), None);
        let set = "[backplane]\nadvertise_address = \"pod-1.hubcast:8080\"";
        let config = Config::load(Some(set), &HashMap::new()).unwrap();
        assert_eq!(
            config.advertise_address(bound("0.0.0.0:8080")),
            Some("pod-1.hubcast:8080".to_owned())
        );
        let off = Config::load(Some("[backplane]\nrelay = false"), &HashMap::new()).unwrap();
        assert_eq!(off.advertise_address(bound("127.0.0.1:8080")), None);
    }

    #[test]
    fn validation_refuses_what_serve_would_refuse() {
        let refused = |file: &str, expected: &str| {
            let config = Config::load(Some(file), &HashMap::new()).unwrap();
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{file}: {error}");
        };
        refused(
            "shutdown_grace = \"5s\"\ndrain_window = \"10s\"",
            "drain_window",
        );
        refused(
            "[hubs.chta]\nenable_detailed_errors = true",
            "[hubs.chta] names no hub",
        );
        refused("[server]\nlisten_backlog = 0", "listen_backlog");
        refused("[backplane]\nurl = \"redis+nope://x\"", "backplane");
        refused(
            "[backplane]\nurl = \"redis://h:1\"\nnode_ttl = \"100ms\"",
            "node TTL",
        );
        refused(
            "[backplane]\nurl = \"redis://:a@h:1\"\npassword = \"b\"",
            "one place",
        );
        refused("[history]\nurl = \"mysql://x\"", "history");
        refused(
            "[backplane]\nadvertise_address = \"10.0.0.5\"",
            "advertise_address",
        );
        refused(
            "[backplane]\nadvertise_address = \":8080\"",
            "advertise_address",
        );
        refused(
            "[auth]\njwks = \"/nonexistent/jwks.json\"",
            "/nonexistent/jwks.json",
        );
        refused("[control]\napi_key_sha256 = [\"zz\"]", "api_key_sha256");
        // An upstream hub may be configured by name.
        let upstream = r#"
            [[upstreams]]
            hub = "orders"
            url = "http://backend/{hub}/{category}/{event}"
            [hubs.orders]
            enable_detailed_errors = true
        "#;
        Config::load(Some(upstream), &HashMap::new())
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn secrets_come_from_files_whatever_their_characters() {
        let dir = std::env::temp_dir().join(format!("hubcast-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("redis"), "p/a+s=s#w@o:rd\n").unwrap();
        std::fs::write(dir.join("keys"), "first\n\nsecond\n").unwrap();
        let file = format!(
            "[backplane]\npassword_file = \"{0}/redis\"\nsentinel_password_file = \"{0}/redis\"\n\
             [control]\naccess_keys_file = \"{0}/keys\"\n",
            dir.display()
        );
        let config = Config::load(Some(&file), &HashMap::new()).unwrap();
        assert_eq!(
            config.backplane.password.as_ref().map(Secret::expose),
            Some("p/a+s=s#w@o:rd")
        );
        assert_eq!(
            config.redis().sentinel_password.as_deref(),
            Some("p/a+s=s#w@o:rd")
        );
        let keys: Vec<&str> = config
            .control
            .access_keys
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(keys, ["first", "second"]);
        let twice = format!(
            "[backplane]\npassword = \"x\"\npassword_file = \"{}/redis\"\n",
            dir.display()
        );
        let error = Config::load(Some(&twice), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("not both"), "{error}");
        let missing = Config::load(
            Some("[auth]\njwt_secret_file = \"/nonexistent/jwt\"\n"),
            &HashMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(missing.contains("/nonexistent/jwt"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
