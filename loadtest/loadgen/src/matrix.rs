//! `hubcast-loadgen matrix`: the same fan-out workload against hubcast and its peers in one run, on
//! this machine, and one table at the end. Each server is started here on a free loopback port (and
//! a private redis-server for the two-node rows), measured with [`crate::fanout`], and stopped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use hubcast_protocol::Protocol;
use tokio::process::{Child, Command};

use crate::fanout::{self, Fanout, Report};
use crate::wire::{Audience, Kind};

/// Where the servers' programs are.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Programs {
    /// hubcast binary (release build).
    #[arg(long, default_value = "target/release/hubcast")]
    pub(crate) hubcast: PathBuf,
    /// The ceiling program.
    #[arg(long, default_value = "target/release/hubcast-ceiling")]
    pub(crate) ceiling: PathBuf,
    /// socketioxide peer binary (`loadtest/peers/socketioxide`).
    #[arg(
        long,
        default_value = "loadtest/peers/socketioxide/target/release/socketioxide-peer"
    )]
    pub(crate) socketioxide: PathBuf,
    /// Socket.IO peer script (`loadtest/peers/socketio`).
    #[arg(long, default_value = "loadtest/peers/socketio/server.js")]
    pub(crate) socketio: PathBuf,
    /// node, for the Socket.IO peer.
    #[arg(long, default_value = "node")]
    pub(crate) node: PathBuf,
    /// redis-server, for the two-node rows.
    #[arg(long, default_value = "redis-server")]
    pub(crate) redis_server: PathBuf,
}

/// One row of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// `hubcast-ceiling`; `true`: its `--sequential` mode.
    Ceiling(bool),
    Hubcast(Protocol),
    Socketioxide,
    SocketIo,
}

impl Server {
    fn label(self) -> String {
        match self {
            Server::Ceiling(false) => "ceiling (tasks)".to_owned(),
            Server::Ceiling(true) => "ceiling (sequential)".to_owned(),
            Server::Hubcast(protocol) => format!("hubcast {protocol}"),
            Server::Socketioxide => "socketioxide".to_owned(),
            Server::SocketIo => "Socket.IO (node)".to_owned(),
        }
    }

    fn kind(self) -> Kind {
        match self {
            Server::Ceiling(_) => Kind::Ceiling,
            Server::Hubcast(protocol) => Kind::Hubcast {
                protocol,
                path: "/bench".to_owned(),
                negotiate: false,
                token: None,
            },
            Server::Socketioxide | Server::SocketIo => Kind::SocketIo,
        }
    }

    fn command(self, programs: &Programs, port: u16, redis: Option<&str>) -> Command {
        let address = format!("127.0.0.1:{port}");
        let mut command = match self {
            Server::Ceiling(sequential) => {
                let mut c = Command::new(&programs.ceiling);
                c.arg(&address);
                if sequential {
                    c.arg("--sequential");
                }
                c
            }
            Server::Hubcast(_) => {
                let mut c = Command::new(&programs.hubcast);
                c.args(["serve", "--conformance", "--admin-listen", "127.0.0.1:0"])
                    .args(["--listen", &address])
                    .env("HUBCAST_HISTORY", "none")
                    .env("HUBCAST_LOG", "warn");
                if let Some(url) = redis {
                    c.args(["--backplane", url]);
                }
                c
            }
            Server::Socketioxide => {
                let mut c = Command::new(&programs.socketioxide);
                c.env("PORT", port.to_string());
                c
            }
            Server::SocketIo => {
                let mut c = Command::new(&programs.node);
                c.arg(&programs.socketio).env("PORT", port.to_string());
                c
            }
        };
        if let (Some(url), false) = (redis, matches!(self, Server::Hubcast(_))) {
            command.env("REDIS_URL", url);
        }
        if matches!(self, Server::Socketioxide | Server::SocketIo) {
            // The publisher never reads, so it never answers Engine.IO pings; and hubcast never
            // closes a client for not pinging. A heartbeat that cannot expire during a run treats
            // the peers alike (node caps timers at 2^31-1 ms).
            command
                .env("PING_INTERVAL_MS", "2000000000")
                .env("PING_TIMEOUT_MS", "2000000000");
        }
        // Servers' errors show (why one failed to start); their logs are at warning level.
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        command
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `command(port)` on a free port and waits until it accepts connections; returns the child,
/// its pid and the port. A port found free can be taken before the server binds it (as the local
/// end of another process's outgoing connection, say): a server that exits early is started again
/// on another port, twice at most.
async fn launch(command: impl Fn(u16) -> Command) -> anyhow::Result<(Child, u32, u16)> {
    let mut attempt = 0;
    'start: loop {
        attempt += 1;
        let port = free_port()?;
        let mut child = command(port).spawn().context("starting a server")?;
        let pid = child.id().context("no pid")?;
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok((child, pid, port));
            }
            if let Some(status) = child.try_wait()? {
                if attempt < 3 {
                    eprintln!("   the server exited early ({status}); again on another port");
                    continue 'start;
                }
                bail!("server exited early: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("server did not listen on {port} within 20 s")
    }
}

/// The rising rates: `start`, then ×1.5 per step.
pub(crate) fn rising_rates(start: u64, steps: usize) -> Vec<u64> {
    let mut rates: Vec<u64> = Vec::with_capacity(steps);
    let mut rate = start.max(1) as f64;
    while rates.len() < steps {
        let next = rate.round() as u64;
        if rates.last().is_none_or(|&last| next > last) {
            rates.push(next);
        }
        rate *= 1.5;
    }
    rates
}

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) programs: Programs,
    pub(crate) receivers: usize,
    pub(crate) payload: usize,
    pub(crate) rates: Vec<u64>,
    pub(crate) step: Duration,
    pub(crate) sources: u8,
    /// Row names to run (empty: all).
    pub(crate) only: Vec<String>,
    pub(crate) two_nodes: bool,
}

/// One measured row: the server, its node count, and the report.
pub(crate) struct Row {
    pub(crate) label: String,
    pub(crate) nodes: usize,
    pub(crate) report: Report,
}

pub(crate) async fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    let single = [
        Server::Ceiling(false),
        Server::Ceiling(true),
        Server::Hubcast(Protocol::Json),
        Server::Hubcast(Protocol::MessagePack),
        Server::Socketioxide,
        Server::SocketIo,
    ];
    let double = [
        Server::Hubcast(Protocol::Json),
        Server::Hubcast(Protocol::MessagePack),
        Server::Socketioxide,
        Server::SocketIo,
    ];
    let mut plan: Vec<(Server, usize)> = single.iter().map(|&s| (s, 1)).collect();
    if options.two_nodes {
        plan.extend(double.iter().map(|&s| (s, 2)));
    }
    let wanted = |server: Server| {
        options.only.is_empty()
            || options
                .only
                .iter()
                .any(|name| server.label().to_lowercase().contains(&name.to_lowercase()))
    };
    let mut rows = Vec::new();
    for (server, nodes) in plan {
        if !wanted(server) {
            continue;
        }
        let label = server.label();
        eprintln!("== {label} x{nodes}");
        match measure(options, server, nodes).await {
            Ok(report) => rows.push(Row {
                label,
                nodes,
                report,
            }),
            Err(error) => eprintln!("   {label} x{nodes} failed: {error:#}"),
        }
    }
    Ok(rows)
}

async fn measure(options: &Options, server: Server, nodes: usize) -> anyhow::Result<Report> {
    let mut redis = None;
    let redis_url = if nodes > 1 {
        let (child, pid, port) = launch(|port| {
            let mut command = Command::new(&options.programs.redis_server);
            command
                .args([
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .kill_on_drop(true);
            command
        })
        .await?;
        redis = Some((child, pid));
        Some(format!("redis://127.0.0.1:{port}"))
    } else {
        None
    };
    let mut children = Vec::new();
    let mut servers = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..nodes {
        let (child, pid, port) =
            launch(|port| server.command(&options.programs, port, redis_url.as_deref())).await?;
        children.push(child);
        pids.push(pid);
        servers.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let publish_server = *servers.last().context("no server")?;
    let report = fanout::run(&Fanout {
        kind: server.kind(),
        servers,
        publish_server,
        audience: if matches!(server, Server::Hubcast(_)) {
            Audience::Group
        } else {
            Audience::All
        },
        receivers: options.receivers,
        payload: options.payload,
        rates: options.rates.clone(),
        step: options.step,
        settle: Duration::from_secs(2),
        pids,
        sources: options.sources,
    })
    .await;
    for mut child in children {
        let _ = child.kill().await;
    }
    if let Some((mut child, _)) = redis {
        let _ = child.kill().await;
    }
    report
}

/// The step closest below half of the peak rate (where latency is compared).
fn half_peak(report: &Report) -> Option<&fanout::Step> {
    let half = report.peak_deliveries_per_sec / 2.0;
    report
        .steps
        .iter()
        .rfind(|s| s.deliveries_per_sec <= half && s.delivered == s.offered)
        .or(report.steps.first())
}

/// The table: one line per row, ratios against hubcast JSON with the same node count.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| server | nodes | peak deliveries/s | vs hubcast | p50 / p99 at ~half peak | server CPU at peak | RSS per connection | vs hubcast | closed |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        let reference = rows
            .iter()
            .find(|r| r.nodes == row.nodes && r.label == "hubcast json")
            .map(|r| &r.report);
        let report = &row.report;
        let ratio = |ours: f64, theirs: Option<f64>| match theirs {
            Some(theirs) if theirs > 0.0 => format!("{:.2}x", ours / theirs),
            _ => "-".to_owned(),
        };
        let latency = half_peak(report).map_or("-".to_owned(), |s| {
            format!("{:.1} / {:.1} ms at {} msg/s", s.p50_ms, s.p99_ms, s.rate)
        });
        let peak_cpu = report
            .steps
            .iter()
            .max_by(|a, b| a.deliveries_per_sec.total_cmp(&b.deliveries_per_sec))
            .map_or(0.0, |s| s.cpu_percent);
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {:.0} % | {:.1} KiB | {} | {} |\n",
            row.label,
            row.nodes,
            report.peak_deliveries_per_sec,
            ratio(
                report.peak_deliveries_per_sec,
                reference.map(|r| r.peak_deliveries_per_sec)
            ),
            latency,
            peak_cpu,
            report.rss_kib_per_connection,
            ratio(
                report.rss_kib_per_connection,
                reference.map(|r| r.rss_kib_per_connection)
            ),
            report.closed,
        ));
    }
    out.push_str(
        "\np99 latency (ms) per publish rate (msg/s to every receiver):\n\n| server | nodes |",
    );
    let rates: Vec<u64> = {
        let mut all: Vec<u64> = rows
            .iter()
            .flat_map(|r| r.report.steps.iter().map(|s| s.rate))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    for rate in &rates {
        out.push_str(&format!(" {rate} |"));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(rates.len()));
    out.push('\n');
    for row in rows {
        out.push_str(&format!("| {} | {} |", row.label, row.nodes));
        for rate in &rates {
            let cell =
                row.report
                    .steps
                    .iter()
                    .find(|s| s.rate == *rate)
                    .map_or("-".to_owned(), |s| {
                        if s.delivered < s.offered {
                            format!("{:.0} (lost {})", s.p99_ms, s.offered - s.delivered)
                        } else {
                            format!("{:.0}", s.p99_ms)
                        }
                    });
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_rise_by_half() {
        assert_eq!(rising_rates(5, 6), vec![5, 8, 11, 17, 25, 38]);
        assert_eq!(rising_rates(1, 4), vec![1, 2, 3, 5]);
    }
}
