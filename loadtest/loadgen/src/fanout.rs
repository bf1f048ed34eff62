//! The fan-out measurement: N receivers (spread over the servers and over 127.0.0.x source addresses),
//! one publisher at rising rates. Each step publishes at one rate for a fixed time; a payload carries
//! its step and its send time, so every receiver records per-step deliveries and publish→receive
//! latency (HDR histograms shared by the receivers in shards, merged at the end). A step whose
//! deliveries fall below 85 % of what was
//! offered, or that loses messages, is the saturation point: the rates stop rising there.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use crate::wire::{Audience, Conn, Kind};

/// At most this many rate steps.
pub(crate) const MAX_STEPS: usize = 24;

#[derive(Debug, Clone)]
pub(crate) struct Fanout {
    pub(crate) kind: Kind,
    /// Receivers are spread round-robin over these.
    pub(crate) servers: Vec<SocketAddr>,
    pub(crate) publish_server: SocketAddr,
    pub(crate) audience: Audience,
    pub(crate) receivers: usize,
    pub(crate) payload: usize,
    /// Messages per second of each step, rising.
    pub(crate) rates: Vec<u64>,
    pub(crate) step: Duration,
    /// Pause between connecting and measuring memory and publishing.
    pub(crate) settle: Duration,
    /// Server processes (CPU and memory are read from /proc).
    pub(crate) pids: Vec<u32>,
    pub(crate) sources: u8,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Step {
    pub(crate) rate: u64,
    pub(crate) offered: u64,
    pub(crate) delivered: u64,
    pub(crate) deliveries_per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// Server CPU in percent of one core (summed over the server processes).
    pub(crate) cpu_percent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) server: String,
    pub(crate) receivers: usize,
    pub(crate) connects_per_sec: f64,
    /// Server RSS (summed over the server processes) once the receivers are connected; 0 when
    /// no server pid was given.
    pub(crate) server_rss_kib: u64,
    /// Server RSS growth per connected receiver. Small runs on a warm server can read 0: the
    /// allocator reuses memory freed by earlier connections.
    pub(crate) rss_kib_per_connection: f64,
    pub(crate) steps: Vec<Step>,
    pub(crate) peak_deliveries_per_sec: f64,
    /// Receivers whose connection the server closed during the run.
    pub(crate) closed: u64,
}

pub(crate) fn source(n: usize, sources: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (n % usize::from(sources.max(1))) as u8,
    ))
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `S<step>T<micros>:` padded with `x` to `size` bytes.
fn payload(step: usize, size: usize) -> String {
    let mut text = format!("S{step:02}T{}:", now_micros());
    if text.len() < size {
        text.push_str(&"x".repeat(size - text.len()));
    }
    text
}

fn parse(payload: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = text.strip_prefix('S')?;
    let (step, rest) = rest.split_once('T')?;
    let (sent, _) = rest.split_once(':')?;
    Some((step.parse().ok()?, sent.parse().ok()?))
}

pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading the server's /proc status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// User plus system CPU time of a process, in clock ticks (USER_HZ, 100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the `(comm)`: state is field 3; utime and stime are fields 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

fn total_rss(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|&pid| rss_kib(pid)).sum()
}

/// Opens `count` connections with `concurrency` attempts in flight; connection `n` goes to
/// `servers[n % len]`.
pub(crate) async fn connect_many(
    kind: &Kind,
    servers: &[SocketAddr],
    count: usize,
    concurrency: usize,
    sources: u8,
    audience: Audience,
) -> anyhow::Result<Vec<Conn>> {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(count);
    for n in 0..count {
        let permit = slots.clone().acquire_owned().await?;
        let kind = kind.clone();
        let server = *servers.get(n % servers.len().max(1)).context("no server")?;
        tasks.push(tokio::spawn(async move {
            let result = async {
                let mut conn = Conn::open(&kind, server, source(n, sources), false).await?;
                conn.subscribe(audience).await?;
                anyhow::Ok(conn)
            }
            .await;
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

/// Receivers share their latency histograms in this many shards (receiver `i` records into shard
/// `i % SHARDS`): one set per receiver was most of the load generator's own memory and cache misses
/// (5,000 receivers × one histogram per step), for the same merged result.
const SHARDS: usize = 16;

/// One latency histogram per step: 1 µs .. 60 s at 3 significant digits.
fn histograms(steps: usize) -> anyhow::Result<Vec<Histogram<u64>>> {
    (0..steps)
        .map(|_| Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?))
        .collect()
}

pub(crate) async fn run(config: &Fanout) -> anyhow::Result<Report> {
    let rss_before = total_rss(&config.pids)?;
    let started = Instant::now();
    let connections = connect_many(
        &config.kind,
        &config.servers,
        config.receivers,
        200,
        config.sources,
        config.audience,
    )
    .await?;
    let connect_time = started.elapsed();
    // Let the servers settle (lazily created state, allocator) before reading their memory.
    tokio::time::sleep(config.settle).await;
    let rss_after = total_rss(&config.pids)?;
    let rss_per_connection =
        rss_after.saturating_sub(rss_before) as f64 / config.receivers.max(1) as f64;

    let steps = config.rates.len().min(MAX_STEPS);
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..steps).map(|_| AtomicU64::new(0)).collect());
    let closed = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop) = watch::channel(false);
    let shards: Arc<Vec<std::sync::Mutex<Vec<Histogram<u64>>>>> = Arc::new(
        (0..SHARDS)
            .map(|_| Ok(std::sync::Mutex::new(histograms(steps)?)))
            .collect::<anyhow::Result<_>>()?,
    );
    let mut readers = Vec::with_capacity(connections.len());
    for (index, mut conn) in connections.into_iter().enumerate() {
        let counts = counts.clone();
        let closed = closed.clone();
        let mut stop = stop.clone();
        let shards = shards.clone();
        readers.push(tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = stop.changed() => break,
                    next = conn.next_payload() => next,
                };
                let Ok(Some(payload)) = next else {
                    closed.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                if let Some((step, sent)) = parse(&payload)
                    && let Some(count) = counts.get(step)
                {
                    count.fetch_add(1, Ordering::Relaxed);
                    let latency = now_micros().saturating_sub(sent).max(1);
                    if let Some(shard) = shards.get(index % SHARDS)
                        && let Ok(mut set) = shard.lock()
                        && let Some(histogram) = set.get_mut(step)
                    {
                        let _ = histogram.record(latency);
                    }
                }
            }
            conn
        }));
    }

    let mut publisher = Conn::open(
        &config.kind,
        config.publish_server,
        source(config.receivers, config.sources),
        true,
    )
    .await?;
    let mut results = Vec::new();
    let mut peak: f64 = 0.0;
    for (step, &rate) in config.rates.iter().take(steps).enumerate() {
        let messages = (rate as f64 * config.step.as_secs_f64()).ceil() as u64;
        let offered = messages * config.receivers as u64;
        let ticks = config.pids.iter().map(|&p| cpu_ticks(p)).sum::<u64>();
        let began = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        for i in 0..messages {
            publisher
                .publish(config.audience, &payload(step, config.payload))
                .await?;
            tokio::time::sleep_until((began + interval * (i as u32 + 1)).into()).await;
        }
        // Wait for the stragglers: until all arrived, or nothing arrived for 2 s.
        let count = counts.get(step).context("step")?;
        let mut last = (count.load(Ordering::Relaxed), Instant::now());
        while count.load(Ordering::Relaxed) < offered && last.1.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let now = count.load(Ordering::Relaxed);
            if now != last.0 {
                last = (now, Instant::now());
            }
        }
        let delivered = count.load(Ordering::Relaxed);
        let elapsed = if delivered >= offered {
            began.elapsed()
        } else {
            last.1.duration_since(began)
        };
        let wall = began.elapsed();
        let cpu = config.pids.iter().map(|&p| cpu_ticks(p)).sum::<u64>() - ticks;
        let per_sec = delivered as f64 / elapsed.as_secs_f64().max(1e-6);
        peak = peak.max(per_sec);
        eprintln!(
            "  {} step {step}: {rate} msg/s -> {delivered}/{offered} delivered, {per_sec:.0}/s",
            config.kind.name()
        );
        results.push(Step {
            rate,
            offered,
            delivered,
            deliveries_per_sec: per_sec,
            p50_ms: 0.0,
            p99_ms: 0.0,
            cpu_percent: cpu as f64 / wall.as_secs_f64().max(1e-6),
        });
        let saturated =
            delivered < offered || per_sec < 0.85 * (rate * config.receivers as u64) as f64;
        if saturated {
            break;
        }
    }
    let _ = stop_tx.send(true);
    for reader in readers {
        let _ = reader.await;
    }
    let mut merged = histograms(steps)?;
    for shard in shards.iter() {
        let set = shard
            .lock()
            .map_err(|_| anyhow::anyhow!("a receiver panicked"))?;
        for (total, part) in merged.iter_mut().zip(set.iter()) {
            let _ = total.add(part);
        }
    }
    for (step, result) in results.iter_mut().enumerate() {
        if let Some(latency) = merged.get(step) {
            result.p50_ms = latency.value_at_quantile(0.5) as f64 / 1000.0;
            result.p99_ms = latency.value_at_quantile(0.99) as f64 / 1000.0;
        }
    }
    Ok(Report {
        server: config.kind.name(),
        receivers: config.receivers,
        connects_per_sec: config.receivers as f64 / connect_time.as_secs_f64().max(1e-6),
        server_rss_kib: rss_after,
        rss_kib_per_connection: rss_per_connection,
        steps: results,
        peak_deliveries_per_sec: peak,
        closed: closed.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_step_and_time() {
        let text = payload(3, 100);
        assert_eq!(text.len(), 100);
        let (step, sent) = parse(text.as_bytes()).unwrap();
        assert_eq!(step, 3);
        assert!(now_micros() - sent < 10_000_000);
        assert_eq!(parse(b"junk"), None);
    }
}
