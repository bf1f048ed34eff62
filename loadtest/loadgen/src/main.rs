//! `hubcast-loadgen`: opens many SignalR WebSocket connections (skip-negotiation, JSON or MessagePack)
//! spread over 127.0.0.x source addresses, and measures
//!
//! - `idle`: connect rate and the server's resident memory per idle connection (from /proc/PID);
//! - `broadcast`: fan-out deliveries per second and publish-to-receive latency percentiles, with one
//!   publisher invoking `Broadcast(payload)` on the `/bench` hub of `hubcast serve --conformance`.
//!
//! One process may hold at most ~19k sockets here (the hard open-file limit is 20000); run several
//! processes for more.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use hdrhistogram::Histogram;
use http_body_util::Empty;
use hubcast_protocol::{
    HubMessage, Invocation, MessageReader, NamingPolicy, Protocol, encode_message,
};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpSocket;
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(about = "Load generator for SignalR hubs")]
struct Cli {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    server: SocketAddr,
    /// Hub path.
    #[arg(long, default_value = "/bench")]
    path: String,
    /// Hub protocol of the connections.
    #[arg(long, value_enum, default_value = "json")]
    protocol: ProtocolArg,
    /// Number of 127.0.0.x source addresses to spread connections over.
    #[arg(long, default_value_t = 8)]
    sources: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProtocolArg {
    Json,
    Messagepack,
}

#[derive(Subcommand)]
enum Command {
    /// Opens idle connections and reports connect rate and the server's memory per connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// The server's process id (to read its resident memory).
        #[arg(long)]
        server_pid: u32,
        /// Concurrent connection attempts.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
    },
    /// Measures fan-out: `messages` broadcasts to `connections` receivers.
    Broadcast {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 100)]
        payload: usize,
        /// Broadcasts per second (0 = as fast as the publisher's invocations complete).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Node the publisher connects to (another node of a cluster) [default: --server].
        #[arg(long)]
        publish_server: Option<SocketAddr>,
    },
}

type Ws = FragmentCollector<TokioIo<Upgraded>>;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let protocol = match cli.protocol {
        ProtocolArg::Json => Protocol::Json,
        ProtocolArg::Messagepack => Protocol::MessagePack,
    };
    let target = Target {
        server: cli.server,
        path: cli.path.clone(),
        protocol,
        sources: cli.sources.max(1),
    };
    match cli.command {
        Command::Idle {
            connections,
            server_pid,
            concurrency,
        } => idle(&target, connections, server_pid, concurrency).await,
        Command::Broadcast {
            connections,
            messages,
            payload,
            rate,
            publish_server,
        } => {
            let publish_at = publish_server.unwrap_or(target.server);
            broadcast(&target, publish_at, connections, messages, payload, rate).await
        }
    }
}

struct Target {
    server: SocketAddr,
    path: String,
    protocol: Protocol,
    sources: u8,
}

impl Target {
    /// Opens a WebSocket from source address 127.0.0.(1 + n % sources) and completes the handshake.
    async fn connect(&self, n: usize) -> anyhow::Result<(Ws, MessageReader)> {
        let source = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            1 + (n % usize::from(self.sources)) as u8,
        ));
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(self.server).await?;
        stream.set_nodelay(true)?;
        let request = http::Request::builder()
            .method("GET")
            .uri(format!("http://{}{}", self.server, self.path))
            .header("host", self.server.to_string())
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header(
                "sec-websocket-key",
                fastwebsockets::handshake::generate_key(),
            )
            .header("sec-websocket-version", "13")
            .body(Empty::<Bytes>::new())?;
        let (ws, _) =
            fastwebsockets::handshake::client(&TokioExecutor::new(), request, stream).await?;
        let mut ws = FragmentCollector::new(ws);
        let handshake = format!(
            "{{\"protocol\":\"{}\",\"version\":1}}\x1e",
            self.protocol.name()
        );
        ws.write_frame(Frame::text(Payload::Owned(handshake.into_bytes())))
            .await?;
        let reply = ws.read_frame().await?;
        let Some(rest) = reply.payload.strip_prefix(b"{}\x1e") else {
            bail!(
                "handshake refused: {}",
                String::from_utf8_lossy(&reply.payload)
            );
        };
        let mut reader = MessageReader::new(self.protocol, None);
        reader.push(rest);
        Ok((ws, reader))
    }

    /// Opens `count` connections with `concurrency` attempts in flight.
    async fn connect_many(
        self: &Arc<Self>,
        count: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<(Ws, MessageReader)>> {
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = Vec::with_capacity(count);
        for n in 0..count {
            let target = self.clone();
            let permit = slots.clone().acquire_owned().await?;
            tasks.push(tokio::spawn(async move {
                let result = target.connect(n).await;
                drop(permit);
                result
            }));
        }
        let mut connections = Vec::with_capacity(count);
        for task in tasks {
            connections.push(task.await??);
        }
        Ok(connections)
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading the server's /proc status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

async fn idle(target: &Target, count: usize, pid: u32, concurrency: usize) -> anyhow::Result<()> {
    let target = Arc::new(Target {
        path: target.path.clone(),
        ..*target
    });
    let before = rss_kib(pid)?;
    let started = Instant::now();
    let connections = target.connect_many(count, concurrency).await?;
    let elapsed = started.elapsed();
    // Let the server settle (allocator, lazily created state), then read its memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid)?;
    let per_connection = (after.saturating_sub(before) as f64 * 1024.0) / count as f64;
    println!(
        "idle: {count} connections ({}) in {:.2}s = {:.0} connects/s; server RSS {before} KiB -> {after} KiB = {:.1} KiB per connection",
        target.protocol,
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        per_connection / 1024.0
    );
    drop(connections);
    Ok(())
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn broadcast(
    target: &Target,
    publish_at: SocketAddr,
    count: usize,
    messages: usize,
    payload: usize,
    rate: u64,
) -> anyhow::Result<()> {
    let target = Arc::new(Target {
        path: target.path.clone(),
        ..*target
    });
    let connections = target.connect_many(count, 200).await?;
    let delivered = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let expected = (count * messages) as u64;
    let mut readers = Vec::new();
    for (mut ws, mut reader) in connections {
        let delivered = delivered.clone();
        let histogram = histogram.clone();
        readers.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
            let mut seen = 0;
            while seen < messages {
                let frame =
                    match tokio::time::timeout(Duration::from_secs(30), ws.read_frame()).await {
                        Ok(Ok(frame)) => frame,
                        _ => break,
                    };
                if frame.opcode == OpCode::Close {
                    break;
                }
                reader.push(&frame.payload);
                while let Ok(Some(message)) = reader.next_message() {
                    if let HubMessage::Invocation(call) = message
                        && call.target == "Broadcast"
                    {
                        seen += 1;
                        delivered.fetch_add(1, Ordering::Relaxed);
                        let sent: Option<u64> = call
                            .arguments
                            .get(0)
                            .and_then(|raw| raw.deserialize::<String>().ok())
                            .and_then(|text| text.split(':').next().and_then(|t| t.parse().ok()));
                        if let (Some(sent), Some(h)) = (sent, local.as_mut()) {
                            let _ = h.record(now_micros().saturating_sub(sent).max(1));
                        }
                    }
                }
            }
            if let Some(local) = local {
                let _ = histogram.lock().await.add(local);
            }
            ws
        }));
    }

    let publishing = Target {
        server: publish_at,
        path: target.path.clone(),
        ..*target
    };
    let (mut publisher, _) = publishing.connect(count).await?;
    let padding = "x".repeat(payload.saturating_sub(20));
    let interval = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    let started = Instant::now();
    for i in 0..messages {
        let text = format!("{}:{padding}", now_micros());
        let call: HubMessage<(String,), ()> =
            HubMessage::Invocation(Invocation::new("Broadcast", (text,)));
        let bytes = encode_message(target.protocol, &call, NamingPolicy::CamelCase)?;
        let opcode = if target.protocol == Protocol::MessagePack {
            OpCode::Binary
        } else {
            OpCode::Text
        };
        publisher
            .write_frame(Frame::new(true, opcode, None, Payload::Borrowed(&bytes)))
            .await?;
        if let Some(interval) = interval {
            let due = started + interval * (i as u32 + 1);
            tokio::time::sleep_until(due.into()).await;
        }
    }
    let mut last_report = Instant::now();
    while delivered.load(Ordering::Relaxed) < expected
        && started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("delivered {}/{expected}", delivered.load(Ordering::Relaxed));
            last_report = Instant::now();
        }
    }
    let elapsed = started.elapsed();
    let got = delivered.load(Ordering::Relaxed);
    for reader in readers {
        reader.abort();
    }
    let histogram = histogram.lock().await;
    println!(
        "broadcast: {count} receivers x {messages} messages of {payload} B ({}){}{}: {got}/{expected} delivered in {:.3}s = {:.0} deliveries/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        target.protocol,
        if rate > 0 {
            format!(" at {rate}/s")
        } else {
            String::new()
        },
        if publish_at == target.server {
            String::new()
        } else {
            format!(", published on {publish_at}")
        },
        elapsed.as_secs_f64(),
        got as f64 / elapsed.as_secs_f64(),
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
    );
    Ok(())
}
