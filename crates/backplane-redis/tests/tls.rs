//! The Redis backplane over TLS (`rediss://`) against a redis-server with a certificate made for the
//! test: two nodes talk through it as an ACL user whose password is full of URL delimiters; another CA
//! is refused and the status says why; a server that asks for client certificates gets one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[allow(dead_code)] // the plain-text servers of common are for the topology tests
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Recorder, free_port, json, message};
use hubcast_backplane::{Broker, Publish, Target};
use hubcast_backplane_redis::{RedisBackplane, RedisConfig};

const HUB: &str = "chat";
const PASSWORD: &str = "Tl/s+p=a#s@s:w%?";

/// Certificates made for one test: a CA, a server certificate for 127.0.0.1 and localhost, a client
/// certificate, and another CA that signed none of them.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    fn make() -> Self {
        let dir = std::env::temp_dir().join(format!("hubcast-redis-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .current_dir(&dir)
                .args(args)
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "openssl {args:?}");
        };
        for ca in ["ca", "other"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-subj",
                &format!("/CN={ca}"),
            ]);
        }
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &format!("{name}.crt"),
                "-extfile",
                ext,
            ]);
        }
        Self { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A redis-server on a TLS port only.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    fn start(certs: &Certificates, client_certificates: bool) -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(certs.path("server.crt"))
            .arg("--tls-key-file")
            .arg(certs.path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(certs.path("ca.crt"))
            .args([
                "--tls-auth-clients",
                if client_certificates { "yes" } else { "no" },
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.cli(certs, &["PING"]) != "PONG" {
            assert!(
                Instant::now() < deadline,
                "redis-server with TLS did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    /// `redis-cli` over TLS (with the client certificate).
    fn cli(&self, certs: &Certificates, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["--tls", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("--cacert")
            .arg(certs.path("ca.crt"))
            .arg("--cert")
            .arg(certs.path("client.crt"))
            .arg("--key")
            .arg(certs.path("client.key"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(redis: &TlsRedis, ca: &Path) -> RedisConfig {
    RedisConfig {
        prefix: "tls".to_owned(),
        username: Some("app".to_owned()),
        password: Some(PASSWORD.to_owned()),
        ca_file: Some(ca.to_path_buf()),
        ..RedisConfig::new(redis.url())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_over_tls_as_an_acl_user_and_another_ca_is_refused() {
    let certs = Certificates::make();
    let redis = TlsRedis::start(&certs, false);
    let acl = redis.cli(
        &certs,
        &[
            "ACL",
            "SETUSER",
            "app",
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ],
    );
    assert_eq!(acl, "OK");
    let a = RedisBackplane::connect(config(&redis, &certs.path("ca.crt")))
        .await
        .unwrap();
    let b = RedisBackplane::connect(config(&redis, &certs.path("ca.crt")))
        .await
        .unwrap();
    assert!(
        a.status().connected && b.status().connected,
        "{:?}",
        a.status().last_error
    );
    let hub = Recorder::new(&[]);
    b.attach(HUB, hub.clone()).await.unwrap();
    a.attach(HUB, Recorder::new(&[])).await.unwrap();
    let publish = Publish {
        hub: HUB.into(),
        target: Target::All,
        excluded: Vec::new(),
        message: message("over tls"),
    };
    a.publish(publish).await.unwrap();
    assert_eq!(hub.wait_for(1).await, vec![json("over tls")]);

    // A CA that did not sign the server's certificate: no link, and the status says why.
    let refused = RedisBackplane::connect(config(&redis, &certs.path("other.crt")))
        .await
        .unwrap();
    let status = refused.status();
    assert!(!status.connected);
    let error = status.last_error.unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(!error.contains(PASSWORD), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_asking_for_client_certificates_gets_one() {
    let certs = Certificates::make();
    let redis = TlsRedis::start(&certs, true);
    let acl = redis.cli(
        &certs,
        &[
            "ACL",
            "SETUSER",
            "app",
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ],
    );
    assert_eq!(acl, "OK");
    let without = RedisBackplane::connect(config(&redis, &certs.path("ca.crt")))
        .await
        .unwrap();
    assert!(
        !without.status().connected,
        "no client certificate, no link"
    );
    let with = RedisConfig {
        client_cert: Some((certs.path("client.crt"), certs.path("client.key"))),
        ..config(&redis, &certs.path("ca.crt"))
    };
    let with = RedisBackplane::connect(with).await.unwrap();
    assert!(with.status().connected, "{:?}", with.status().last_error);
}
