//! Keys from an OpenID provider (`--oidc-issuer`): found through discovery, fetched at start, fetched
//! again when the provider rotates them (a token names a key not yet known), but no more than once per
//! `jwks_min_interval` however many unknown key ids arrive. The provider is a small HTTP server of this
//! test; tokens are RS256, signed with keys made by openssl.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

const BIN: &str = env!("CARGO_BIN_EXE_hubcast");

/// An RSA key made by openssl: its private PEM and its JWK.
struct Key {
    pem: Vec<u8>,
    jwk: String,
}

fn rsa_key(dir: &std::path::Path, kid: &str) -> Key {
    let path = dir.join(format!("{kid}.pem"));
    let status = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&path)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let modulus = Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    let hex = String::from_utf8(modulus.stdout).unwrap();
    let hex = hex.trim().trim_start_matches("Modulus=");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Key {
        pem: std::fs::read(&path).unwrap(),
        jwk: format!(
            r#"{{"kty":"RSA","kid":"{kid}","use":"sig","alg":"RS256","n":"{n}","e":"AQAB"}}"#
        ),
    }
}

fn token(key: &Key, kid: &str, issuer: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({"sub": "ann", "iss": issuer, "iat": now, "exp": now + 600});
    let signer = jsonwebtoken::EncodingKey::from_rsa_pem(&key.pem).unwrap();
    jsonwebtoken::encode(&header, &claims, &signer).unwrap()
}

/// The provider: its OpenID configuration and its JWKS, which the test replaces; counts JWKS fetches.
struct Provider {
    url: String,
    jwks: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl Provider {
    fn start(jwks: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let jwks = Arc::new(Mutex::new(jwks));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (document, counter, base) = (jwks.clone(), fetches.clone(), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let body = if line.contains("/.well-known/openid-configuration") {
                    format!(r#"{{"issuer":"{base}","jwks_uri":"{base}/jwks"}}"#)
                } else {
                    counter.fetch_add(1, Ordering::SeqCst);
                    document.lock().unwrap().clone()
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url, jwks, fetches }
    }

    fn serve(&self, keys: &[&Key]) {
        let keys: Vec<&str> = keys.iter().map(|k| k.jwk.as_str()).collect();
        *self.jwks.lock().unwrap() = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

struct Node {
    child: Child,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of a negotiate on the chat hub (which requires authentication) with `token`.
fn negotiate(node: &Node, token: &str) -> u16 {
    let mut stream = TcpStream::connect(&node.addr).unwrap();
    write!(
        stream,
        "POST /hubs/chat/negotiate?negotiateVersion=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response[9..12].parse().unwrap()
}

#[test]
fn rotated_keys_are_fetched_and_unknown_kids_cannot_hammer_the_provider() {
    let dir = std::env::temp_dir().join(format!("hubcast-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (old, new) = (rsa_key(&dir, "old"), rsa_key(&dir, "new"));
    let provider = Provider::start(String::new());
    provider.serve(&[&old]);
    let config = dir.join("hubcast.toml");
    std::fs::write(
        &config,
        "[auth]\njwks_refresh = \"1h\"\njwks_min_interval = \"1s\"\n[history]\nurl = \"none\"\n",
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
        .args(["--oidc-issuer", &provider.url])
        .env("HUBCAST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|line| line.contains("listening on"))
        .unwrap();
    // The rest of the log goes to the test's output (shown when it fails).
    std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .for_each(|line| eprintln!("{line}"))
    });
    let addr = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let node = Node { child, addr };
    assert_eq!(provider.fetches(), 1, "fetched at start");

    assert_eq!(negotiate(&node, &token(&old, "old", &provider.url)), 200);
    // The issuer is required to be the provider's.
    assert_eq!(
        negotiate(&node, &token(&old, "old", "https://elsewhere")),
        401
    );

    // The provider rotates: a token with the new key is refused until the keys are fetched again,
    // which the unknown key id asks for.
    provider.serve(&[&new]);
    let rotated = Instant::now();
    while negotiate(&node, &token(&new, "new", &provider.url)) != 200 {
        assert!(
            rotated.elapsed() < Duration::from_secs(5),
            "the new key was never fetched"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "a token of the rotated key accepted after {:?}",
        rotated.elapsed()
    );

    // Made-up key ids, 40 of them over 2 s: at most one fetch a second.
    let before = provider.fetches();
    let started = Instant::now();
    for i in 0..40 {
        assert_eq!(
            negotiate(&node, &token(&new, &format!("made-up-{i}"), &provider.url)),
            401
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1200));
    let fetched = provider.fetches() - before;
    let allowed = started.elapsed().as_secs() as usize + 1;
    assert!(
        fetched <= allowed,
        "{fetched} fetches in {:?}",
        started.elapsed()
    );
    assert!(fetched >= 1, "unknown key ids ask for a fetch");
    println!(
        "{fetched} fetches for 40 unknown key ids over {:?}",
        started.elapsed()
    );
    // The new key still works, the old one no longer does.
    assert_eq!(negotiate(&node, &token(&new, "new", &provider.url)), 200);
    assert_eq!(negotiate(&node, &token(&old, "old", &provider.url)), 401);
    let _ = std::fs::remove_dir_all(&dir);
}
