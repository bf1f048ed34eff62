//! `/ready` tells the truth about the history store: a node over a private PostgreSQL answers 200, 503
//! with a JSON body naming `history` once the database has been down for the readiness grace, and 200
//! again when it is back, with no restart; `hubcast_history_up` follows. A node started while the
//! database is down starts, and is not ready until it answers.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hubcast_test_support::postgres::PrivatePostgres;

const BIN: &str = env!("CARGO_BIN_EXE_hubcast");

/// `(status, body)` of a GET.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

struct Node {
    child: Child,
    admin: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hubcast serve` with its history in `url`, a 1 s readiness grace.
fn serve(url: &str, dir: &std::path::Path) -> Node {
    let config = dir.join("hubcast.toml");
    std::fs::write(
        &config,
        format!("readiness_grace = \"1s\"\n[history]\nurl = \"{url}\"\nconnect_timeout = \"1s\"\n"),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .env("HUBCAST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .find(|line| line.contains("listening on"))
        .unwrap();
    let admin = line
        .split("admin=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    Node { child, admin }
}

/// Polls `/ready` until its status is `status` (20 s at most); how long that took.
fn wait_ready(node: &Node, status: u16) -> (Duration, String) {
    let started = Instant::now();
    loop {
        let (got, body) = get(&node.admin, "/ready");
        if got == status {
            return (started.elapsed(), body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "/ready stayed {got} ({body}), expected {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn history_up(node: &Node) -> String {
    let (_, metrics) = get(&node.admin, "/metrics");
    metrics
        .lines()
        .find(|line| line.starts_with("hubcast_history_up "))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn ready_follows_the_history_store_through_an_outage() {
    let cluster = PrivatePostgres::start("ready", false).unwrap();
    let dir = std::env::temp_dir().join(format!("hubcast-ready-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let node = serve(&cluster.url("127.0.0.1"), &dir);
    wait_ready(&node, 200);
    assert_eq!(history_up(&node), "hubcast_history_up 1");

    cluster.stop().unwrap();
    let (after, body) = wait_ready(&node, 503);
    assert!(body.contains(r#""failing":["history"]"#), "{body}");
    assert_eq!(history_up(&node), "hubcast_history_up 0");
    // Not before the grace, and not long after it (checks come at most 5 s apart while failing).
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(8),
        "503 after {after:?}"
    );
    println!("/ready 503 {after:?} after PostgreSQL stopped");

    cluster.start_again().unwrap();
    let (back, _) = wait_ready(&node, 200);
    assert_eq!(history_up(&node), "hubcast_history_up 1");
    println!("/ready 200 {back:?} after PostgreSQL restarted");
    drop(node);

    // Started while the database is down: it runs, not ready, until the database answers.
    cluster.stop().unwrap();
    let node = serve(&cluster.url("127.0.0.1"), &dir);
    let (_, body) = wait_ready(&node, 503);
    assert!(body.contains("history"), "{body}");
    cluster.start_again().unwrap();
    wait_ready(&node, 200);
    let _ = std::fs::remove_dir_all(&dir);
}
