//! The command line. Every flag can also be given as an environment variable `HUBCAST_<NAME>`; other
//! tools depend on these names, so they are stable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// hubcast: a horizontally scaled, SignalR-compatible real-time gateway.
#[derive(Debug, Parser)]
#[command(name = "hubcast", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Runs a gateway node.
    Serve(Box<ServeArgs>),
    /// Runs the control API alone (no client connections), over a Redis backplane.
    Control(Box<ControlArgs>),
    /// A console chat client of the chat hub (`/hubs/chat`).
    Chat(Box<crate::chat_client::ChatArgs>),
    /// Prints the full annotated configuration file with every default.
    DefaultConfig,
    /// Validates a configuration file with the environment applied (as `serve` would read them: every
    /// setting, key files included; nothing is connected to) and prints the result.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Parser)]
pub(crate) struct ServeArgs {
    /// Address of the client listener [default: 0.0.0.0:8080, or `listen` in the file].
    #[arg(long, env = "HUBCAST_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Address of the admin listener (/live, /ready, /metrics) [default: 0.0.0.0:9090].
    #[arg(long, env = "HUBCAST_ADMIN_LISTEN")]
    pub(crate) admin_listen: Option<SocketAddr>,
    /// Configuration file (TOML); see `hubcast default-config`.
    #[arg(long, env = "HUBCAST_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// This node's id [default: the host name and a random suffix].
    #[arg(long, env = "HUBCAST_NODE_ID")]
    pub(crate) node_id: Option<String>,
    #[command(flatten)]
    pub(crate) backplane: BackplaneArgs,
    #[command(flatten)]
    pub(crate) control: ControlAccess,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// On SIGTERM, close connections spread over this window [default: `drain_window` in the file, 0s].
    #[arg(long, env = "HUBCAST_DRAIN_WINDOW")]
    pub(crate) drain_window: Option<humantime::Duration>,
    /// Where the chat keeps its history: `sqlite:PATH`, `postgres://…` (needed for several nodes) or
    /// `none` [default: sqlite:hubcast.db, or `[history] url` in the file].
    #[arg(long, env = "HUBCAST_HISTORY")]
    pub(crate) history: Option<String>,
    /// Password of the PostgreSQL history, instead of one in `--history` (any characters).
    #[arg(long, env = "HUBCAST_HISTORY_PASSWORD", hide_env_values = true)]
    pub(crate) history_password: Option<String>,
    /// CA certificates (PEM) the PostgreSQL server's certificate must chain to (with `sslmode` require,
    /// verify-ca or verify-full) [default: the URL's `sslrootcert`, else the Mozilla roots].
    #[arg(long, env = "HUBCAST_HISTORY_CA_FILE")]
    pub(crate) history_ca_file: Option<std::path::PathBuf>,
    /// Directory of the chat page (`index.html`, `chat.js`, `style.css`, and `node_modules` with the
    /// SignalR browser bundle) [default: web].
    #[arg(long, env = "HUBCAST_WEB_ROOT")]
    pub(crate) web_root: Option<std::path::PathBuf>,
    /// Mounts the test hubs and endpoints the official SignalR client's functional tests and the load
    /// generator expect (only in builds with the `conformance` feature).
    #[cfg(feature = "conformance")]
    #[arg(long, env = "HUBCAST_CONFORMANCE")]
    pub(crate) conformance: bool,
    /// Browser origins allowed cross-origin, comma-separated (`*` for any) [default: `allowed_origins` in
    /// the file].
    #[arg(long, env = "HUBCAST_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub(crate) allowed_origins: Option<Vec<String>>,
    /// HMAC secret for HS256/384/512 bearer tokens.
    #[arg(long, env = "HUBCAST_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<String>,
    /// RSA or EC public key (PEM file) for RS*/PS*/ES* bearer tokens.
    #[arg(long, env = "HUBCAST_JWT_PUBLIC_KEY")]
    pub(crate) jwt_public_key: Option<PathBuf>,
    /// JWKS file for bearer tokens (keys chosen by `kid`).
    #[arg(long, env = "HUBCAST_JWKS")]
    pub(crate) jwks: Option<PathBuf>,
    /// JWKS URL of an identity provider: its keys are fetched, refreshed every `jwks_refresh` and when a
    /// token names an unknown key (at most every `jwks_min_interval`).
    #[arg(long, env = "HUBCAST_JWKS_URL")]
    pub(crate) jwks_url: Option<String>,
    /// An OpenID provider's issuer URL: its JWKS is found through
    /// `/.well-known/openid-configuration`, and tokens must carry it as `iss`.
    #[arg(long, env = "HUBCAST_OIDC_ISSUER")]
    pub(crate) oidc_issuer: Option<String>,
    /// Required `iss` of bearer tokens.
    #[arg(long, env = "HUBCAST_JWT_ISSUER")]
    pub(crate) jwt_issuer: Option<String>,
    /// Required `aud` of bearer tokens.
    #[arg(long, env = "HUBCAST_JWT_AUDIENCE")]
    pub(crate) jwt_audience: Option<String>,
    /// Claims tried in order for the user id, comma-separated [default:
    /// sub, the .NET nameidentifier claim, nameid, name].
    #[arg(long, env = "HUBCAST_JWT_USER_CLAIM", value_delimiter = ',')]
    pub(crate) jwt_user_claim: Option<Vec<String>>,
    /// Secret that signs session cookies (the same on every node) [default: the JWT secret, else random].
    #[arg(long, env = "HUBCAST_SESSION_SECRET", hide_env_values = true)]
    pub(crate) session_secret: Option<String>,
    /// Enables the dev login (`POST /auth/dev-login?user=NAME`) even though a key is configured. Without
    /// any key it is always on.
    #[arg(long, env = "HUBCAST_DEV_AUTH")]
    pub(crate) dev_auth: bool,
    /// Log format (the level comes from HUBCAST_LOG, e.g. `info` or `hubcast_gateway=debug`)
    /// [default: text].
    #[arg(long, env = "HUBCAST_LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,
}

/// Which backplane joins the nodes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BackplaneArgs {
    /// The backplane between nodes: `memory` (a single node), `redis://[:password@]host:port[/db]`,
    /// `redis+sentinel://host:port[,host:port…]/service[/db]` or `redis+cluster://host:port[,host:port…]`,
    /// each as `rediss…` over TLS [default: memory].
    #[arg(long, env = "HUBCAST_BACKPLANE", hide_env_values = true)]
    pub(crate) backplane: Option<String>,
    /// ACL username of the Redis connections, instead of one in the URL.
    #[arg(long, env = "HUBCAST_BACKPLANE_USERNAME")]
    pub(crate) backplane_username: Option<String>,
    /// Password of the Redis server connections, instead of one in the URL: any characters work, no
    /// URL encoding needed.
    #[arg(long, env = "HUBCAST_BACKPLANE_PASSWORD", hide_env_values = true)]
    pub(crate) backplane_password: Option<String>,
    /// With Sentinel: the sentinels' own ACL username, if they ask for one.
    #[arg(long, env = "HUBCAST_BACKPLANE_SENTINEL_USERNAME")]
    pub(crate) backplane_sentinel_username: Option<String>,
    /// With Sentinel: the sentinels' own password (their `requirepass`), if they ask for one.
    #[arg(
        long,
        env = "HUBCAST_BACKPLANE_SENTINEL_PASSWORD",
        hide_env_values = true
    )]
    pub(crate) backplane_sentinel_password: Option<String>,
    /// Over TLS (`rediss…`): CA certificates (PEM) the Redis servers' certificates must chain to
    /// [default: the system's roots].
    #[arg(long, env = "HUBCAST_BACKPLANE_CA_FILE")]
    pub(crate) backplane_ca_file: Option<std::path::PathBuf>,
    /// Over TLS (`rediss…`): a client certificate (PEM) for servers that ask for one, with
    /// `--backplane-client-key`.
    #[arg(
        long,
        env = "HUBCAST_BACKPLANE_CLIENT_CERT",
        requires = "backplane_client_key"
    )]
    pub(crate) backplane_client_cert: Option<std::path::PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(
        long,
        env = "HUBCAST_BACKPLANE_CLIENT_KEY",
        requires = "backplane_client_cert"
    )]
    pub(crate) backplane_client_key: Option<std::path::PathBuf>,
    /// Prefix of the backplane's Redis channels and keys (deployments sharing a Redis use different ones)
    /// [default: hubcast].
    #[arg(long, env = "HUBCAST_BACKPLANE_PREFIX")]
    pub(crate) backplane_prefix: Option<String>,
    /// How long a node's presence outlives its last heartbeat in Redis (it beats every third of it)
    /// [default: 7500ms].
    #[arg(long, env = "HUBCAST_NODE_TTL")]
    pub(crate) node_ttl: Option<humantime::Duration>,
    /// `host:port` where the other nodes reach this node's client listener, to relay requests for its
    /// connections (in Kubernetes: `$(POD_IP):8080`) [default: the client listener's address when it
    /// names one].
    #[arg(long, env = "HUBCAST_ADVERTISE_ADDRESS")]
    pub(crate) advertise_address: Option<String>,
}

/// TLS on the listeners.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TlsArgs {
    /// Certificate chain (PEM) of the client listener, which then speaks only TLS (HTTPS, wss://); the
    /// file is read again when it changes.
    #[arg(long, env = "HUBCAST_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "HUBCAST_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}

/// Who may call the control API (`/api`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ControlAccess {
    /// Access key of the control API: bearer tokens signed HS256 with it are accepted (several,
    /// comma-separated, during a rotation).
    #[arg(
        long,
        env = "HUBCAST_ACCESS_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) access_key: Vec<String>,
    /// SHA-256 (hex) of an API key accepted in `X-API-Key` (several, comma-separated).
    #[arg(long, env = "HUBCAST_API_KEY_SHA256", value_delimiter = ',')]
    pub(crate) api_key_sha256: Vec<String>,
    /// Lets control-API requests without credentials in (trusted networks only).
    #[arg(long, env = "HUBCAST_CONTROL_ANONYMOUS")]
    pub(crate) control_anonymous: bool,
    /// Failed control-API authentications a minute per client address before it is paused with 429
    /// (the pause doubles with each further failure, up to 5 minutes); 0 for no limit [default: 10].
    #[arg(long, env = "HUBCAST_CONTROL_AUTH_FAILURES")]
    pub(crate) control_auth_failures: Option<u32>,
}

#[derive(Debug, Parser)]
pub(crate) struct ControlArgs {
    /// Address of the control API listener [default: 0.0.0.0:8081, or `listen` in the file].
    #[arg(long, env = "HUBCAST_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Address of the admin listener (/live, /ready, /metrics) [default: 0.0.0.0:9090].
    #[arg(long, env = "HUBCAST_ADMIN_LISTEN")]
    pub(crate) admin_listen: Option<SocketAddr>,
    /// Configuration file (TOML); see `hubcast default-config`.
    #[arg(long, env = "HUBCAST_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) backplane: BackplaneArgs,
    #[command(flatten)]
    pub(crate) control: ControlAccess,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// HMAC secret of the gateways' client tokens, so `:generateToken` can issue them.
    #[arg(long, env = "HUBCAST_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<String>,
    /// The `iss` the gateways require (`--jwt-issuer`), put into the tokens `:generateToken` issues.
    #[arg(long, env = "HUBCAST_JWT_ISSUER")]
    pub(crate) jwt_issuer: Option<String>,
    /// The `aud` the gateways require (`--jwt-audience`), put into the tokens `:generateToken` issues.
    #[arg(long, env = "HUBCAST_JWT_AUDIENCE")]
    pub(crate) jwt_audience: Option<String>,
    /// Log format (the level comes from HUBCAST_LOG) [default: text].
    #[arg(long, env = "HUBCAST_LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,
}
