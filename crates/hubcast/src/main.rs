//! The `hubcast` binary: command line, configuration layers, wiring of the gateway, signals.

mod backplane;
mod chat_client;
mod cli;
mod config;
mod jwks;
mod web;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use hubcast_chat::{
    Chat, HistoryProbe, MessageStore, NoStore, PostgresStore, SqliteStore, chat_hub,
};
use hubcast_control::{ControlApi, ControlAuth};
use hubcast_gateway::{GatewayBuilder, HubOptions};
use hubcast_http::HttpMetrics;
use hubcast_http::admin::{self, Readiness};
use hubcast_sessions::SessionCookies;
use hubcast_upstream::{UpstreamMetrics, upstream_hub};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command, ControlArgs, LogFormat, ServeArgs};
use config::{Config, DEFAULT_CONFIG};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let result = match cli.command {
        Command::DefaultConfig => {
            print!("{DEFAULT_CONFIG}");
            Ok(())
        }
        Command::CheckConfig { file } => check_config(&file, &env),
        Command::Serve(args) => serve(*args, &env),
        Command::Control(args) => control(*args, &env),
        Command::Chat(args) => chat(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hubcast: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut config = Config::load(Some(&text), env)?;
    // The environment as `serve` reads it (clap takes the HUBCAST_* variables); no flags.
    config.apply_serve(&ServeArgs::try_parse_from(["serve"])?);
    config.validate()?;
    println!("{}: ok", file.display());
    Ok(())
}

/// The configuration file named by `--config`, if any.
fn read_file(path: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    path.map(|path| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    })
    .transpose()
}

/// Standard error that never fails: a closed or broken stderr (the reader of a pipe went away) must not
/// turn a log line into a panic, least of all on the shutdown path.
struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUBCAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| QuietStderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(args: ServeArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let mut config = Config::load(read_file(args.config.as_deref())?.as_deref(), env)?;
    config.apply_serve(&args);
    config.validate()?;
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config))
}

/// `hubcast serve`: a gateway node, in named steps.
async fn run(config: Config) -> anyhow::Result<()> {
    let node_id = config.node_id.clone().unwrap_or_else(default_node_id);
    let registry = process_registry();
    let http_metrics = HttpMetrics::new();
    http_metrics.register(&registry)?;
    // Bound first: the backplane advertises the address the other nodes relay requests to.
    let listener = bind_clients(config.listen(), config.server.listen_backlog).await?;
    let tls = listener_tls(&config)?;
    let advertise = match &tls {
        Some(_) => None,
        None => config.advertise_address(listener.local_addr()?),
    };
    if config.backplane.url != "memory" && advertise.is_none() && config.backplane.relay {
        tracing::warn!(
            "no address to advertise: other nodes cannot relay requests for this node's connections \
             (set --advertise-address, e.g. $(POD_IP):8080), so clients need session affinity"
        );
    }
    let chosen = backplane::choose(&config, advertise.clone()).await?;
    if let Some(redis) = &chosen.redis {
        redis.register_metrics(&registry)?;
    }
    let (gateway, history) = build_gateway(
        &config,
        &chosen,
        &registry,
        http_metrics.clone(),
        tls.clone(),
    )
    .await?;
    let admin_listener = bind(config.admin_listen).await?;
    let admin_addr = admin_listener.local_addr()?;
    // The admin listener outlives the drain: /ready answers 503, /live 200 and /metrics can be
    // scraped until the process is about to exit.
    let readiness = Readiness::with_grace(config.readiness_grace);
    watch_dependencies(readiness.clone(), chosen.redis.clone(), Some(history));
    let admin_tls = tls.filter(|_| config.tls.admin);
    let admin = Admin::start(
        admin_listener,
        readiness.clone(),
        registry,
        http_metrics,
        admin_tls,
    );
    let shutdown = CancellationToken::new();
    stop_on_signal(shutdown.clone(), readiness.clone());
    readiness.set(true);
    tracing::info!(
        node_id = %node_id,
        node_tag = chosen.backplane.node_tag().unwrap_or("-"),
        relay = advertise.as_deref().unwrap_or("-"),
        admin = %admin_addr,
        "listening on {}",
        listener.local_addr()?
    );
    gateway
        .with_drain_window(config.drain_window)
        .serve(listener, shutdown, config.shutdown_grace)
        .await;
    if let Some(redis) = &chosen.redis
        && let Err(error) = redis.leave().await
    {
        tracing::warn!(%error, "could not remove this node's presence; other nodes will sweep it");
    }
    admin.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// The gateway of `hubcast serve`: authentication and sessions, the chat hub, the upstream hubs, the
/// control API at `/api`, the chat page, and (with `--conformance`) the test hubs.
async fn build_gateway(
    config: &Config,
    chosen: &backplane::Chosen,
    registry: &Registry,
    http_metrics: HttpMetrics,
    tls: Option<hubcast_http::Tls>,
) -> anyhow::Result<(hubcast_gateway::Gateway, HistoryProbe)> {
    if chosen.redis.is_some() && config.history.url.starts_with("sqlite:") {
        tracing::warn!(
            "the chat history is a SQLite file of this node: with several nodes use \
             --history postgres://… so every node shares it"
        );
    }
    let mut builder = GatewayBuilder::new(chosen.backplane.clone())
        .rate_limiter(chosen.limiter.clone())
        .server_limits(config.server.clone())
        .http_metrics(http_metrics)
        .allowed_origins(config.allowed_origins.clone());
    if chosen.redis.is_some() && config.backplane.relay {
        if tls.is_some() {
            tracing::warn!(
                "requests for other nodes' connections are not relayed while the client listener \
                 speaks TLS: route each connection to its node (session affinity), or end TLS before \
                 the nodes"
            );
        } else {
            let metrics = hubcast_relay::RelayMetrics::new();
            metrics.register(registry)?;
            let presence: Arc<dyn hubcast_backplane::Presence> = chosen.backplane.clone();
            builder = builder.relay(Arc::new(hubcast_relay::HttpRelay::new(presence, metrics)));
        }
    }
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    // Without any key configured: dev mode, with a secret made up for this process.
    let auth = &config.auth;
    let random = hubcast_protocol::ids::random_id()?.into_bytes();
    let secret = match &auth.jwt_secret {
        Some(secret) => Some(secret.expose().as_bytes().to_vec()),
        None if !auth.key_configured() => Some(random.clone()),
        None => None,
    };
    if !auth.key_configured() {
        tracing::warn!(
            "DEV MODE: no token key is configured (--jwt-secret, --jwt-public-key or --jwks), so anyone \
             can sign in as anyone at POST /auth/dev-login and tokens are signed with a random secret of \
             this process. Do not expose this node."
        );
    }
    let shared = identity_provider_keys(auth, registry).await?;
    let bearer = auth.validator(secret.as_deref(), shared)?.map(Arc::new);
    if let Some(bearer) = &bearer {
        builder = builder.authentication(bearer.clone());
    }
    let session_secret = auth
        .session_secret
        .as_ref()
        .map(|s| s.expose().as_bytes().to_vec())
        .or_else(|| secret.clone())
        .unwrap_or(random);
    let sessions = SessionCookies::new(&session_secret, Duration::from_secs(24 * 3600))
        .with_revocations(chosen.revocations.clone());
    let sessions = Arc::new(if !auth.key_configured() || auth.dev_login {
        sessions.with_dev_login()
    } else {
        sessions
    });
    builder = builder
        .sessions(sessions.clone())
        .route("/auth/", sessions.routes(bearer));
    let chat_options = HubOptions {
        require_authentication: true,
        ..config.hub_options("chat")?
    };
    let chat = Chat::new(history(config)?);
    chat.register_metrics(registry)?;
    let probe = chat.history_probe();
    builder = builder.route("/uploads/", chat.files_route()).hub(
        "/hubs/chat",
        chat_hub(chat),
        chat_options,
    );
    let upstream_metrics = UpstreamMetrics::new();
    upstream_metrics.register(registry)?;
    for upstream in &config.upstreams {
        let path = upstream
            .path
            .clone()
            .unwrap_or_else(|| format!("/hubs/{}", upstream.hub));
        let options = config.hub_options(&upstream.hub)?;
        builder = builder.hub(
            &path,
            upstream_hub(upstream.clone(), &upstream_metrics)?,
            options,
        );
    }
    let api = control_api(chosen, config, secret.as_deref())?;
    api.register_metrics(registry)?;
    builder = builder
        .route("/api/", api.route_handler())
        .fallback(web::page(config.web_root.clone()));
    #[cfg(feature = "conformance")]
    let test_hub = if config.conformance {
        let (mounted, handle) =
            hubcast_test_support::conformance::mount(builder, &config.hub_options("TestHub")?)?;
        builder = mounted;
        Some(handle)
    } else {
        None
    };
    let gateway = builder.build().await?;
    gateway.register_metrics(registry)?;
    #[cfg(feature = "conformance")]
    if let (Some(handle), Some(context)) = (test_hub, gateway.hub_context("TestHub")) {
        let _ = handle.set(context);
    }
    Ok((gateway, probe))
}

/// Reports the backplane link and the history store to readiness, and logs when one is lost or back.
/// Checked every second; while one fails, with a pause growing to 5 s between checks (a PostgreSQL
/// that is down is retried, not hammered).
fn watch_dependencies(
    readiness: Readiness,
    redis: Option<hubcast_backplane_redis::RedisBackplane>,
    history: Option<HistoryProbe>,
) {
    // Not ready until each has answered once.
    if redis.is_some() {
        readiness.report("backplane", false);
    }
    if history.is_some() {
        readiness.report("history", false);
    }
    tokio::spawn(async move {
        let (mut backplane_was, mut history_was) = (true, true);
        let mut pause = Duration::from_secs(1);
        loop {
            let backplane = redis.as_ref().is_none_or(|r| r.status().connected);
            if redis.is_some() {
                readiness.report("backplane", backplane);
                if backplane != backplane_was {
                    tracing::warn!(up = backplane, "backplane link");
                }
            }
            let history_ok = match &history {
                Some(probe) => match probe.check(Duration::from_secs(2)).await {
                    Ok(()) => true,
                    Err(error) => {
                        if history_was {
                            tracing::warn!(%error, "the history store does not answer");
                        }
                        false
                    }
                },
                None => true,
            };
            if history.is_some() {
                readiness.report("history", history_ok);
                if history_ok && !history_was {
                    tracing::info!("the history store answers again");
                }
            }
            (backplane_was, history_was) = (backplane, history_ok);
            pause = if backplane && history_ok {
                Duration::from_secs(1)
            } else {
                (pause * 2).min(Duration::from_secs(5))
            };
            tokio::time::sleep(pause).await;
        }
    });
}

/// The keys of `auth.jwks_url`, or of the OpenID provider `auth.oidc_issuer` (found through
/// discovery), fetched now and kept fresh; `None` without either.
async fn identity_provider_keys(
    auth: &config::AuthSettings,
    registry: &Registry,
) -> anyhow::Result<Option<Arc<hubcast_gateway::auth::SharedJwks>>> {
    let url = match (&auth.jwks_url, &auth.oidc_issuer) {
        (Some(url), _) => url.clone(),
        (None, Some(issuer)) => jwks::discover(issuer)
            .await
            .with_context(|| format!("OpenID discovery of {issuer}"))?,
        (None, None) => return Ok(None),
    };
    let source = jwks::JwksSource::new(url, registry)?;
    let keys = source.keys();
    source
        .start(auth.jwks_refresh, auth.jwks_min_interval)
        .await;
    Ok(Some(keys))
}

/// The listeners' TLS (`[tls]`, `--tls-cert`, `--tls-key`), its files checked for a rotation every
/// `tls.reload`.
fn listener_tls(config: &Config) -> anyhow::Result<Option<hubcast_http::Tls>> {
    let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) else {
        return Ok(None);
    };
    let tls = hubcast_http::Tls::load(cert, key)?;
    tls.reload_every(config.tls.reload, CancellationToken::new());
    Ok(Some(tls))
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// Binds a client listener with `[server] listen_backlog`.
async fn bind_clients(addr: std::net::SocketAddr, backlog: u32) -> anyhow::Result<TcpListener> {
    hubcast_http::bind(addr, backlog)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// The admin listener's task: `/live`, `/ready`, `/metrics` until [`Admin::stop`].
struct Admin {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Admin {
    fn start(
        listener: TcpListener,
        readiness: Readiness,
        registry: Registry,
        metrics: HttpMetrics,
        tls: Option<hubcast_http::Tls>,
    ) -> Self {
        let stop = CancellationToken::new();
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            admin::serve(listener, readiness, registry, &metrics, tls, stopping).await;
        });
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// On SIGTERM or SIGINT: not ready any more, then `shutdown`.
fn stop_on_signal(shutdown: CancellationToken, readiness: Readiness) {
    let signal = shutdown_signal();
    tokio::spawn(async move {
        signal.await;
        readiness.set(false);
        shutdown.cancel();
        tracing::info!("shutting down");
    });
}

/// The control API over the node's backplane, with the credentials of `[control]`; `token_key` signs
/// the client tokens of `:generateToken`, which carry the gateways' required `iss` and `aud`.
fn control_api(
    chosen: &backplane::Chosen,
    config: &Config,
    token_key: Option<&[u8]>,
) -> anyhow::Result<Arc<ControlApi>> {
    let access = &config.control;
    let mut auth = ControlAuth::default();
    for key in &access.access_keys {
        auth = auth.with_access_key(key.expose().as_bytes());
    }
    for hash in &access.api_key_sha256 {
        auth = auth.with_api_key_sha256(hash)?;
    }
    if access.anonymous {
        auth = auth.allow_anonymous();
    }
    if !auth.is_configured() {
        tracing::info!(
            "the control API at /api refuses every call: no --access-key or --api-key-sha256"
        );
    }
    let api = ControlApi::new(chosen.backplane.clone(), auth)
        .with_token_claims(config.auth.issuer.clone(), config.auth.audience.clone())
        .with_failure_budget(access.auth_failures);
    Ok(Arc::new(match token_key {
        Some(key) => api.with_token_key(key),
        None => api,
    }))
}

/// `hubcast chat`: logs only warnings (its output is the conversation).
fn chat(args: chat_client::ChatArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(chat_client::run(args))
}

fn control(args: ControlArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let mut config = Config::load(read_file(args.config.as_deref())?.as_deref(), env)?;
    config.apply_control(&args);
    config.validate()?;
    if config.backplane.url == "memory" {
        anyhow::bail!(
            "hubcast control needs a shared backplane: --backplane redis://… (the same as the nodes')"
        );
    }
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_control(config))
}

/// `hubcast control`: the control API alone over Redis, with its own admin listener.
async fn run_control(config: Config) -> anyhow::Result<()> {
    let registry = process_registry();
    let http_metrics = HttpMetrics::new();
    http_metrics.register(&registry)?;
    let chosen = backplane::choose(&config, None).await?;
    if let Some(redis) = &chosen.redis {
        redis.register_metrics(&registry)?;
    }
    let token_key = config
        .auth
        .jwt_secret
        .as_ref()
        .map(|s| s.expose().as_bytes());
    let api = control_api(&chosen, &config, token_key)?;
    api.register_metrics(&registry)?;
    let listener = bind_clients(config.listen(), config.server.listen_backlog).await?;
    let admin_listener = bind(config.admin_listen).await?;
    let admin_addr = admin_listener.local_addr()?;
    let readiness = Readiness::with_grace(config.readiness_grace);
    watch_dependencies(readiness.clone(), chosen.redis.clone(), None);
    let tls = listener_tls(&config)?;
    let admin_tls = tls.clone().filter(|_| config.tls.admin);
    let admin = Admin::start(
        admin_listener,
        readiness.clone(),
        registry,
        http_metrics.clone(),
        admin_tls,
    );
    let shutdown = CancellationToken::new();
    stop_on_signal(shutdown.clone(), readiness.clone());
    readiness.set(true);
    tracing::info!(
        admin = %admin_addr,
        "control API listening on {}",
        listener.local_addr()?
    );
    api.serve(listener, &config.server, &http_metrics, tls, shutdown)
        .await;
    admin.stop().await;
    Ok(())
}

/// The chat's message store, from `[history]`. PostgreSQL is not connected to yet: the node starts
/// while the database is down, reports itself not ready, and catches up when it is back.
fn history(config: &Config) -> anyhow::Result<Arc<dyn MessageStore>> {
    let spec = config.history.url.as_str();
    if spec == "none" {
        return Ok(Arc::new(NoStore::default()));
    }
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        return Ok(Arc::new(
            PostgresStore::open(spec, &config.history.postgres()?)
                .context("the history database settings")?,
        ));
    }
    if let Some(path) = spec.strip_prefix("sqlite:") {
        return Ok(Arc::new(
            SqliteStore::open(path).with_context(|| format!("opening the history at {path}"))?,
        ));
    }
    anyhow::bail!("unsupported --history '{spec}' (expected sqlite:PATH, postgres://… or none)")
}

/// The process's one metrics registry, with the process collector (CPU, memory, descriptors); every
/// component registers its own series in it.
fn process_registry() -> Registry {
    let registry = Registry::new();
    let process = prometheus::process_collector::ProcessCollector::for_self();
    if let Err(error) = registry.register(Box::new(process)) {
        tracing::warn!(%error, "process metrics unavailable");
    }
    registry
}

fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "hubcast".to_owned());
    let suffix = hubcast_protocol::ids::random_id().unwrap_or_default();
    format!("{host}-{}", suffix.get(..6).unwrap_or(""))
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when it is first
/// polled: a signal that arrives right after the "listening on" line must not kill the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
