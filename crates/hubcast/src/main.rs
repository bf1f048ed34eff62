//! The `hubcast` binary: command line, configuration layers, wiring of the gateway, signals.

mod backplane;
mod chat_client;
mod cli;
mod config;
mod web;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use hubcast_chat::{Chat, MessageStore, NoStore, PostgresStore, SqliteStore, chat_hub};
use hubcast_control::{ControlApi, ControlAuth};
use hubcast_gateway::auth::JwtAuth;
use hubcast_gateway::{GatewayBuilder, HubOptions};
use hubcast_http::admin::{self, Readiness};
use hubcast_http::{HttpMetrics, ServerLimits};
use hubcast_sessions::SessionCookies;
use hubcast_upstream::{UpstreamMetrics, upstream_hub};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command, ControlAccess, ControlArgs, LogFormat, ServeArgs};
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
        Command::Control(args) => control(*args),
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
    Config::load(Some(&text), env)?;
    println!("{}: ok", file.display());
    Ok(())
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
    init_logging(args.log_format);
    let file = args
        .config
        .as_ref()
        .map(|path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        })
        .transpose()?;
    let config = Config::load(file.as_deref(), env)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args, config))
}

async fn run(args: ServeArgs, config: Config) -> anyhow::Result<()> {
    let listen = args.listen.unwrap_or(config.listen);
    let admin_listen = args.admin_listen.unwrap_or(config.admin_listen);
    let node_id = args
        .node_id
        .clone()
        .or(config.node_id.clone())
        .unwrap_or_else(default_node_id);

    let registry = process_registry();
    let http_metrics = HttpMetrics::new();
    http_metrics.register(&registry)?;
    let chosen = backplane::choose(&args.backplane).await?;
    if let Some(redis) = &chosen.redis {
        redis.register_metrics(&registry)?;
    }
    if chosen.redis.is_some() && args.history.starts_with("sqlite:") {
        tracing::warn!(
            "the chat history is a SQLite file of this node: with several nodes use \
             --history postgres://… so every node shares it"
        );
    }
    let origins = args
        .allowed_origins
        .clone()
        .unwrap_or_else(|| config.allowed_origins.clone());
    let mut builder = GatewayBuilder::new(chosen.backplane.clone())
        .rate_limiter(chosen.limiter.clone())
        .server_limits(config.server.clone())
        .http_metrics(http_metrics.clone())
        .allowed_origins(origins);
    // Without any key configured: dev mode, with a secret made up for this process.
    let key_configured =
        args.jwt_secret.is_some() || args.jwt_public_key.is_some() || args.jwks.is_some();
    let random = hubcast_protocol::ids::random_id()?.into_bytes();
    let secret = match &args.jwt_secret {
        Some(secret) => Some(secret.clone().into_bytes()),
        None if !key_configured => Some(random.clone()),
        None => None,
    };
    if !key_configured {
        tracing::warn!(
            "DEV MODE: no token key is configured (--jwt-secret, --jwt-public-key or --jwks), so anyone \
             can sign in as anyone at POST /auth/dev-login and tokens are signed with a random secret of \
             this process. Do not expose this node."
        );
    }
    let bearer = authentication(&args, secret.as_deref())?.map(Arc::new);
    if let Some(auth) = &bearer {
        builder = builder.authentication(auth.clone());
    }
    let session_secret = args
        .session_secret
        .clone()
        .map(String::into_bytes)
        .or_else(|| secret.clone())
        .unwrap_or(random);
    let sessions = SessionCookies::new(&session_secret, Duration::from_secs(24 * 3600))
        .with_revocations(chosen.revocations.clone());
    let sessions = Arc::new(if !key_configured || args.dev_auth {
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
    let chat = Chat::new(history(&args.history, args.history_password.as_deref()).await?);
    chat.register_metrics(&registry)?;
    builder = builder.hub("/hubs/chat", chat_hub(chat), chat_options);
    let upstream_metrics = UpstreamMetrics::new();
    upstream_metrics.register(&registry)?;
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
    let token_claims = (args.jwt_issuer.clone(), args.jwt_audience.clone());
    let api = control_api(&chosen, &args.control, secret.as_deref(), token_claims)?;
    api.register_metrics(&registry)?;
    builder = builder.route("/api/", api.route_handler());
    builder = builder.fallback(web::page(args.web_root.clone()));
    #[cfg(feature = "conformance")]
    let test_hub = if args.conformance {
        let (mounted, handle) =
            hubcast_test_support::conformance::mount(builder, &config.hub_options("TestHub")?)?;
        builder = mounted;
        Some(handle)
    } else {
        None
    };
    let gateway = builder.build().await?;
    gateway.register_metrics(&registry)?;
    #[cfg(feature = "conformance")]
    if let (Some(handle), Some(context)) = (test_hub, gateway.hub_context("TestHub")) {
        let _ = handle.set(context);
    }

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let admin_listener = TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("binding {admin_listen}"))?;
    let admin_addr = admin_listener.local_addr().unwrap_or(admin_listen);
    let shutdown = CancellationToken::new();
    let readiness = Readiness::default();
    // The admin listener outlives the drain: /ready answers 503, /live 200 and /metrics can be
    // scraped until the process is about to exit.
    let admin_shutdown = CancellationToken::new();
    let admin_metrics = http_metrics.clone();
    let admin_readiness = readiness.clone();
    let admin_stop = admin_shutdown.clone();
    tokio::spawn(async move {
        admin::serve(
            admin_listener,
            admin_readiness,
            registry,
            &admin_metrics,
            admin_stop,
        )
        .await;
    });
    let signal = shutdown_signal();
    readiness.set(true);
    tracing::info!(
        node_id = %node_id,
        node_tag = chosen.backplane.node_tag().unwrap_or("-"),
        admin = %admin_addr,
        "listening on {}",
        listener.local_addr().unwrap_or(listen)
    );

    let signals = shutdown.clone();
    let ready = readiness.clone();
    tokio::spawn(async move {
        signal.await;
        ready.set(false);
        signals.cancel();
        tracing::info!("shutting down");
    });
    gateway
        .with_drain_window(args.drain_window.map_or(config.drain_window, Into::into))
        .serve(listener, shutdown, config.shutdown_grace)
        .await;
    if let Some(redis) = &chosen.redis
        && let Err(error) = redis.leave().await
    {
        tracing::warn!(%error, "could not remove this node's presence; other nodes will sweep it");
    }
    admin_shutdown.cancel();
    tracing::info!("stopped");
    Ok(())
}

/// The control API over the node's backplane, with the credentials the flags name; `token_key` signs the
/// client tokens of `:generateToken`, which carry the gateways' required `(iss, aud)`.
fn control_api(
    chosen: &backplane::Chosen,
    access: &ControlAccess,
    token_key: Option<&[u8]>,
    (issuer, audience): (Option<String>, Option<String>),
) -> anyhow::Result<Arc<ControlApi>> {
    let mut auth = ControlAuth::default();
    for key in &access.access_key {
        auth = auth.with_access_key(key.as_bytes());
    }
    for hash in &access.api_key_sha256 {
        auth = auth.with_api_key_sha256(hash)?;
    }
    if access.control_anonymous {
        auth = auth.allow_anonymous();
    }
    if !auth.is_configured() {
        tracing::info!(
            "the control API at /api refuses every call: no --access-key or --api-key-sha256"
        );
    }
    let api = ControlApi::new(chosen.backplane.clone(), auth)
        .with_token_claims(issuer, audience)
        .with_failure_budget(access.control_auth_failures);
    Ok(Arc::new(match token_key {
        Some(key) => api.with_token_key(key),
        None => api,
    }))
}

/// `hubcast control`: the control API alone, over Redis.
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

fn control(args: ControlArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        if args.backplane.backplane == "memory" {
            anyhow::bail!(
                "hubcast control needs a shared backplane: --backplane redis://… (the same as the nodes')"
            );
        }
        let registry = process_registry();
        let http_metrics = HttpMetrics::new();
        http_metrics.register(&registry)?;
        let chosen = backplane::choose(&args.backplane).await?;
        if let Some(redis) = &chosen.redis {
            redis.register_metrics(&registry)?;
        }
        let token_key = args.jwt_secret.as_deref().map(str::as_bytes);
        let token_claims = (args.jwt_issuer.clone(), args.jwt_audience.clone());
        let api = control_api(&chosen, &args.control, token_key, token_claims)?;
        api.register_metrics(&registry)?;
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let admin_listener = TcpListener::bind(args.admin_listen)
            .await
            .with_context(|| format!("binding {}", args.admin_listen))?;
        let signal = shutdown_signal();
        tracing::info!(
            admin = %admin_listener.local_addr().unwrap_or(args.admin_listen),
            "control API listening on {}",
            listener.local_addr().unwrap_or(args.listen)
        );
        let readiness = Readiness::default();
        readiness.set(true);
        let (shutdown, admin_shutdown) = (CancellationToken::new(), CancellationToken::new());
        let admin = tokio::spawn({
            let (readiness, metrics, stop) =
                (readiness.clone(), http_metrics.clone(), admin_shutdown.clone());
            async move { admin::serve(admin_listener, readiness, registry, &metrics, stop).await }
        });
        let signals = shutdown.clone();
        tokio::spawn(async move {
            signal.await;
            readiness.set(false);
            signals.cancel();
        });
        api.serve(listener, &ServerLimits::default(), &http_metrics, shutdown)
            .await;
        admin_shutdown.cancel();
        let _ = admin.await;
        Ok(())
    })
}

/// The chat's message store, from `--history` (and `--history-password`).
async fn history(spec: &str, password: Option<&str>) -> anyhow::Result<Arc<dyn MessageStore>> {
    if spec == "none" {
        return Ok(Arc::new(NoStore::default()));
    }
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        return Ok(Arc::new(
            PostgresStore::connect(spec, password)
                .await
                .context("connecting to the history database")?,
        ));
    }
    if let Some(path) = spec.strip_prefix("sqlite:") {
        return Ok(Arc::new(
            SqliteStore::open(path).with_context(|| format!("opening the history at {path}"))?,
        ));
    }
    anyhow::bail!("unsupported --history '{spec}' (expected sqlite:PATH, postgres://… or none)")
}

/// The bearer-token validation the flags describe, if any.
fn authentication(args: &ServeArgs, secret: Option<&[u8]>) -> anyhow::Result<Option<JwtAuth>> {
    let auth = if let Some(path) = &args.jwks {
        let json = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        JwtAuth::jwks(&json)?
    } else if let Some(path) = &args.jwt_public_key {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        JwtAuth::public_key_pem(&pem)?
    } else if let Some(secret) = secret {
        JwtAuth::hmac(secret)
    } else {
        return Ok(None);
    };
    let auth = match &args.jwt_user_claim {
        Some(claims) => auth.with_user_claims(claims.clone()),
        None => auth,
    };
    let auth = match &args.jwt_issuer {
        Some(issuer) => auth.with_issuer(issuer),
        None => auth,
    };
    Ok(Some(match &args.jwt_audience {
        Some(audience) => auth.with_audience(audience),
        None => auth,
    }))
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
