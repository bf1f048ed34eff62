//! The command line as other tools use it: `serve` logs `listening on ADDR` when ready, serves
//! `/live` and `/ready`, and exits cleanly on SIGTERM; `default-config` and `check-config`.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hubcast");

fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    use std::io::Write;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn serve_reports_its_address_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("HUBCAST_LOG", "info")
        .env("HUBCAST_HISTORY", "none")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|line| line.contains("listening on"))
        .unwrap();
    let addr = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let admin = line
        .split("admin=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(get(&addr, "/nothing").starts_with("HTTP/1.1 404"));
    assert!(get(&admin, "/live").starts_with("HTTP/1.1 200"));
    assert!(get(&admin, "/ready").starts_with("HTTP/1.1 200"));

    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(
        lines
            .map(Result::unwrap)
            .any(|line| line.contains("stopped"))
    );
}

#[test]
fn default_config_is_valid_and_check_config_reports_errors() {
    let out = Command::new(BIN).arg("default-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("keep_alive_interval = \"15s\""));
    let dir = std::env::temp_dir().join(format!("hubcast-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, &text).unwrap();
    let checked = Command::new(BIN)
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[hub]\nkeep_alive_intervall = \"1s\"\n").unwrap();
    let checked = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!checked.status.success());
    assert!(String::from_utf8_lossy(&checked.stderr).contains("keep_alive_intervall"));
    // The environment is a layer too.
    let env_bad = Command::new(BIN)
        .arg("check-config")
        .arg(&good)
        .env("HUBCAST_HUB_MAXIMUM_PARALLEL_INVOCATIONS_PER_CLIENT", "0")
        .output()
        .unwrap();
    assert!(!env_bad.status.success());
    let _ = std::fs::remove_dir_all(dir);
}
