//! The Redis backplane over TLS against redis-servers with certificates made for the test: two nodes
//! talk through a standalone server (`rediss://`) as an ACL user whose password is full of URL
//! delimiters; another CA is refused and the status says why; a server that asks for client
//! certificates gets one; a TLS Sentinel with a password of its own and a TLS Cluster carry every kind
//! of traffic.

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

use common::{HUB, Recorder, free_port, json, message};
use hubcast_backplane::{Broker, Publish, Target};
use hubcast_backplane_redis::{RedisBackplane, RedisConfig};

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

/// A redis-server (or sentinel) on a TLS port only, in its own directory.
struct TlsRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl TlsRedis {
    fn start(certs: &Certificates, client_certificates: bool) -> Self {
        let auth = if client_certificates { "yes" } else { "no" };
        Self::spawn(certs, &format!("tls-auth-clients {auth}\n"), false)
    }

    /// Starts a server whose configuration is the TLS settings plus `config`; a sentinel if `sentinel`.
    fn spawn(certs: &Certificates, config: &str, sentinel: bool) -> Self {
        let port = free_port();
        let dir = certs.path(&format!("node-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("redis.conf");
        std::fs::write(
            &file,
            format!(
                "port 0\ntls-port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\n\
                 tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n{config}",
                dir.display(),
                certs.path("server.crt").display(),
                certs.path("server.key").display(),
                certs.path("ca.crt").display(),
            ),
        )
        .unwrap();
        let mut command = Command::new("redis-server");
        command.arg(&file);
        if sentinel {
            command.arg("--sentinel");
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let redis = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        // Any answer will do (one that wants a password says NOAUTH): nothing is printed until it is up.
        while redis.cli(certs, &["PING"]).is_empty() {
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes `app` (password [`PASSWORD`]) an ACL user allowed everything.
fn add_app_user(redis: &TlsRedis, certs: &Certificates) {
    let acl = redis.cli(
        certs,
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
    add_app_user(&redis, &certs);
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
    add_app_user(&redis, &certs);
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

/// TLS everywhere with Sentinel: to the sentinel (which wants its own password) and to the master it
/// names (as the ACL user); every kind of traffic flows between two nodes. Without the sentinel's
/// password no link comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_over_tls_with_its_own_password() {
    const SENTINEL_PASSWORD: &str = "S/e+n=t#i@n:el";
    let certs = Certificates::make();
    let master = TlsRedis::start(&certs, false);
    add_app_user(&master, &certs);
    let sentinel = TlsRedis::spawn(
        &certs,
        &format!(
            "tls-auth-clients no\ntls-replication yes\nrequirepass \"{SENTINEL_PASSWORD}\"\n\
             sentinel monitor mymaster 127.0.0.1 {} 1\nsentinel auth-user mymaster app\n\
             sentinel auth-pass mymaster \"{PASSWORD}\"\n",
            master.port
        ),
        true,
    );
    let base = RedisConfig {
        username: Some("app".to_owned()),
        password: Some(PASSWORD.to_owned()),
        sentinel_password: Some(SENTINEL_PASSWORD.to_owned()),
        ca_file: Some(certs.path("ca.crt")),
        ..RedisConfig::new(format!(
            "rediss+sentinel://127.0.0.1:{}/mymaster",
            sentinel.port
        ))
    };
    common::exercise(&base).await;

    let without = RedisBackplane::connect(RedisConfig {
        sentinel_password: None,
        ..base.clone()
    })
    .await
    .unwrap();
    assert!(
        !without.status().connected,
        "the sentinel wants its password"
    );
    let plain = RedisConfig {
        ca_file: None,
        ..RedisConfig::new(format!(
            "redis+sentinel://127.0.0.1:{}/mymaster",
            sentinel.port
        ))
    };
    let plain = RedisBackplane::connect(plain).await.unwrap();
    assert!(!plain.status().connected, "the sentinel speaks TLS only");
}

/// A 3-master Cluster whose nodes speak TLS only (also between themselves): sharded pub/sub and every
/// command work over `rediss+cluster://`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_over_tls() {
    let certs = Certificates::make();
    let nodes: Vec<TlsRedis> = (0..3)
        .map(|_| {
            TlsRedis::spawn(
                &certs,
                "tls-auth-clients no\ntls-cluster yes\ncluster-enabled yes\ncluster-node-timeout 2000\n",
                false,
            )
        })
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let ca = certs.path("ca.crt");
    let addresses = common::create_cluster(
        &ports,
        &["--tls".as_ref(), "--cacert".as_ref(), ca.as_os_str()],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes.iter().all(|n| {
        n.cli(&certs, &["CLUSTER", "INFO"])
            .contains("cluster_state:ok")
    }) {
        assert!(
            Instant::now() < deadline,
            "the TLS cluster did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let base = RedisConfig {
        ca_file: Some(certs.path("ca.crt")),
        ..RedisConfig::new(format!("rediss+cluster://{}", addresses.join(",")))
    };
    common::exercise(&base).await;
}
