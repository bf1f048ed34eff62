//! `hubcast-loadgen`: opens many WebSocket connections (spread over 127.0.0.x source addresses) to
//! hubcast or to a peer server and measures
//!
//! - `idle`: connect rate (with or without negotiate) and the server's resident memory per idle
//!   connection (from /proc/PID);
//! - `fanout`: deliveries per second and publish→receive latency percentiles for broadcast, group or
//!   user fan-out, at rising publish rates until saturation (`fanout`);
//! - `matrix`: the fan-out workload against hubcast, the ceiling program, socketioxide and Socket.IO
//!   (one and two nodes over Redis) in one run, printed as one table (`matrix`).
//!
//! One process may hold at most ~19k sockets here (the hard open-file limit is 20000); run several
//! processes for more. Module map: `wire` (each server's protocol), `fanout`, `matrix`.

mod fanout;
mod matrix;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Empty};
use hubcast_protocol::Protocol;
use hyper_util::rt::TokioIo;

use wire::{Audience, Kind};

#[derive(Parser)]
#[command(about = "Load generator for hubcast, SignalR hubs and the benchmark peers")]
struct Cli {
    /// Number of 127.0.0.x source addresses to spread connections over (each has its own ~28,000
    /// ephemeral ports; with few, back-to-back runs reuse ports still in TIME_WAIT and some connects
    /// wait a second for a SYN retry).
    #[arg(long, default_value_t = 32, global = true)]
    sources: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Hubcast,
    Socketio,
    Ceiling,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProtocolArg {
    Json,
    Messagepack,
}

#[derive(clap::Args)]
struct Server {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    server: SocketAddr,
    /// What the server speaks.
    #[arg(long, value_enum, default_value = "hubcast")]
    kind: KindArg,
    /// Hub path (hubcast).
    #[arg(long, default_value = "/bench")]
    path: String,
    /// Hub protocol (hubcast).
    #[arg(long, value_enum, default_value = "json")]
    protocol: ProtocolArg,
    /// Negotiate before each WebSocket (hubcast; default: skip negotiation).
    #[arg(long)]
    negotiate: bool,
    /// Bearer token for hubcast connections [default for `--audience user`: a dev login as `loadgen`].
    #[arg(long)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Opens idle connections and reports connect rate and the server's memory per connection.
    Idle {
        #[command(flatten)]
        server: Server,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// The server's process id (to read its resident memory).
        #[arg(long)]
        server_pid: u32,
        /// Concurrent connection attempts.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Seconds to hold the connections after measuring (to look at the server meanwhile).
        #[arg(long, default_value_t = 0)]
        hold: u64,
    },
    /// Fan-out: receivers, one publisher at rising rates until saturation.
    Fanout {
        #[command(flatten)]
        server: Server,
        /// Further nodes to spread receivers over (with the same kind).
        #[arg(long)]
        also: Vec<SocketAddr>,
        /// Node the publisher connects to [default: the last node].
        #[arg(long)]
        publish_server: Option<SocketAddr>,
        #[arg(long, value_enum, default_value = "group")]
        audience: Audience,
        #[arg(long, default_value_t = 1000)]
        receivers: usize,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 100)]
        payload: usize,
        /// First publish rate (messages per second); each step is 1.5 times the previous.
        #[arg(long, default_value_t = 10)]
        rate: u64,
        /// Number of steps at most.
        #[arg(long, default_value_t = 12)]
        steps: usize,
        /// Seconds per step.
        #[arg(long, default_value_t = 3.0)]
        step_secs: f64,
        /// Seconds between connecting and measuring (memory settles, lazily created state).
        #[arg(long, default_value_t = 2.0)]
        settle_secs: f64,
        /// Server process ids (CPU and memory).
        #[arg(long)]
        server_pid: Vec<u32>,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The fan-out matrix: hubcast and its peers, one table.
    Matrix {
        #[command(flatten)]
        programs: matrix::Programs,
        #[arg(long, default_value_t = 5000)]
        receivers: usize,
        #[arg(long, default_value_t = 100)]
        payload: usize,
        /// First publish rate (messages per second); each step is 1.5 times the previous.
        #[arg(long, default_value_t = 5)]
        rate: u64,
        #[arg(long, default_value_t = 16)]
        steps: usize,
        #[arg(long, default_value_t = 3.0)]
        step_secs: f64,
        /// Also run the two-node rows (Redis).
        #[arg(long)]
        two_nodes: bool,
        /// Only rows whose name contains one of these (e.g. `hubcast`, `ceiling`, `socket`).
        #[arg(long)]
        only: Vec<String>,
        /// Also write every report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

impl Server {
    async fn kind(&self, audience: Audience) -> anyhow::Result<Kind> {
        Ok(match self.kind {
            KindArg::Hubcast => {
                let token = match (&self.token, audience) {
                    (Some(token), _) => Some(token.clone()),
                    (None, Audience::User) => Some(dev_login(self.server).await?),
                    (None, _) => None,
                };
                Kind::Hubcast {
                    protocol: match self.protocol {
                        ProtocolArg::Json => Protocol::Json,
                        ProtocolArg::Messagepack => Protocol::MessagePack,
                    },
                    path: self.path.clone(),
                    negotiate: self.negotiate,
                    token,
                }
            }
            KindArg::Socketio => Kind::SocketIo,
            KindArg::Ceiling => Kind::Ceiling,
        })
    }
}

/// `POST /auth/dev-login?user=loadgen` on a dev-mode hubcast: a token for user fan-out.
async fn dev_login(server: SocketAddr) -> anyhow::Result<String> {
    let stream = tokio::net::TcpStream::connect(server).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::post(format!("/auth/dev-login?user={}", wire::USER))
        .header("host", server.to_string())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body).context("dev login answer")?;
    value
        .get("accessToken")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .context("no accessToken (is the server in dev mode?)")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Idle {
            server,
            connections,
            server_pid,
            concurrency,
            hold,
        } => {
            let kind = server.kind(Audience::All).await?;
            let before = fanout::rss_kib(server_pid)?;
            let started = Instant::now();
            let open = fanout::connect_many(
                &kind,
                &[server.server],
                connections,
                concurrency,
                cli.sources,
                Audience::All,
            )
            .await?;
            let elapsed = started.elapsed();
            // Let the server settle (allocator, lazily created state), then read its memory.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let after = fanout::rss_kib(server_pid)?;
            println!(
                "idle: {connections} connections ({}{}) in {:.2}s = {:.0} connects/s; server RSS {before} KiB -> {after} KiB = {:.1} KiB per connection",
                kind.name(),
                if server.negotiate { ", negotiate" } else { "" },
                elapsed.as_secs_f64(),
                connections as f64 / elapsed.as_secs_f64(),
                after.saturating_sub(before) as f64 / connections as f64
            );
            tokio::time::sleep(Duration::from_secs(hold)).await;
            drop(open);
            Ok(())
        }
        Command::Fanout {
            server,
            also,
            publish_server,
            audience,
            receivers,
            payload,
            rate,
            steps,
            step_secs,
            settle_secs,
            server_pid,
            json,
        } => {
            let kind = server.kind(audience).await?;
            let mut servers = vec![server.server];
            servers.extend(also);
            let report = fanout::run(&fanout::Fanout {
                kind,
                publish_server: publish_server
                    .or(servers.last().copied())
                    .unwrap_or(server.server),
                servers,
                audience,
                receivers,
                payload,
                rates: matrix::rising_rates(rate, steps),
                step: Duration::from_secs_f64(step_secs),
                settle: Duration::from_secs_f64(settle_secs),
                pids: server_pid,
                sources: cli.sources,
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(path) = json {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
            }
            Ok(())
        }
        Command::Matrix {
            programs,
            receivers,
            payload,
            rate,
            steps,
            step_secs,
            two_nodes,
            only,
            json,
        } => {
            let rows = matrix::run(&matrix::Options {
                programs,
                receivers,
                payload,
                rates: matrix::rising_rates(rate, steps),
                step: Duration::from_secs_f64(step_secs),
                sources: cli.sources,
                only,
                two_nodes,
            })
            .await?;
            println!(
                "fan-out matrix: {receivers} receivers, {payload} B payloads, one publisher, rates x1.5 per {step_secs} s step\n"
            );
            println!("{}", matrix::table(&rows));
            if let Some(path) = json {
                let all: Vec<_> = rows
                    .iter()
                    .map(|r| serde_json::json!({"label": r.label, "nodes": r.nodes, "report": r.report}))
                    .collect();
                std::fs::write(path, serde_json::to_vec_pretty(&all)?)?;
            }
            Ok(())
        }
    }
}
