//! A private PostgreSQL cluster for tests that must break it (stop, restart, terminate backends) or
//! configure it (TLS): `initdb` into a directory of its own, started with `pg_ctl` on a free loopback
//! port, trust authentication, stopped and removed on drop. As root (CI), the cluster belongs to the
//! `postgres` user, as PostgreSQL refuses to run as root.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running private cluster.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// The test CA (PEM) that signed the server's certificate, with TLS on.
    pub ca_file: Option<PathBuf>,
}

/// The directory of the newest installed PostgreSQL's programs.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    dirs.sort_by_key(|dir| {
        dir.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL under /usr/lib/postgresql"))
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs `program` as the cluster's owner (the `postgres` user under root).
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) -> anyhow::Result<()> {
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

impl PrivatePostgres {
    /// A cluster named `name` (its directory under /var/tmp), with TLS when `tls` (a certificate for
    /// `localhost` only, signed by a CA made for the test: connecting to 127.0.0.1 passes `verify-ca`
    /// but not `verify-full`).
    pub fn start(name: &str, tls: bool) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let dir = PathBuf::from(format!("/var/tmp/hubcast-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            run(
                {
                    let mut chown = Command::new("chown");
                    chown.arg("postgres:").arg(&dir);
                    chown
                },
                "chown",
            )?;
        }
        let data = dir.join("data");
        let mut initdb = as_owner(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        run(initdb, "initdb")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut cluster = Self {
            dir,
            bin,
            port,
            ca_file: None,
        };
        if tls {
            cluster.make_certificates(&data)?;
        }
        cluster.start_again()?;
        Ok(cluster)
    }

    /// A test CA and a server certificate for `localhost`, and `ssl = on`.
    fn make_certificates(&mut self, data: &Path) -> anyhow::Result<()> {
        let openssl = |args: &[&str]| {
            let mut command = Command::new("openssl");
            command.current_dir(&self.dir).args(args);
            run(command, "openssl")
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=hubcast test CA",
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ])?;
        std::fs::write(self.dir.join("ext"), "subjectAltName=DNS:localhost\n")?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.crt",
            "-extfile",
            "ext",
        ])?;
        for file in ["server.crt", "server.key"] {
            std::fs::copy(self.dir.join(file), data.join(file))?;
        }
        let mut own = Command::new("sh");
        own.arg("-c").arg(format!(
            "chmod 600 {0}/server.key && {1}",
            data.display(),
            if is_root() {
                format!(
                    "chown postgres: {0}/server.key {0}/server.crt",
                    data.display()
                )
            } else {
                "true".to_owned()
            }
        ));
        run(own, "securing the server key")?;
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text)?;
        self.ca_file = Some(self.dir.join("ca.crt"));
        Ok(())
    }

    /// `key=value` connection settings for `host` (user `postgres`, database `postgres`).
    pub fn url(&self, host: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres", self.port)
    }

    /// Starts the cluster (again), waiting until it accepts connections.
    pub fn start_again(&self) -> anyhow::Result<()> {
        let mut start = as_owner(&self.bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
                self.port,
                self.dir.display()
            ))
            .arg("start");
        run(start, "pg_ctl start")
    }

    /// Stops the cluster at once (`immediate`: connections are cut, as in a crash or failover).
    pub fn stop(&self) -> anyhow::Result<()> {
        let mut stop = as_owner(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        run(stop, "pg_ctl stop")
    }

    /// Ends every other backend (`pg_terminate_backend`), as a failover or a pgbouncer restart does.
    pub fn terminate_backends(&self) -> anyhow::Result<()> {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atqc",
        ])
        .arg(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .args(["-p", &self.port.to_string()]);
        run(psql, "pg_terminate_backend")
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
