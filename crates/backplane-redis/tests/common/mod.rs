//! Real Redis processes for the backplane's tests (standalone, Cluster, Sentinel), each on free ports and
//! killed by pid when dropped, a recording `LocalHub` standing in for a gateway node's hub, and the
//! traffic every topology must carry between two nodes.
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hubcast_backplane::{
    BoxFuture, Broker, ClientInvocation, ConnectionId, GroupAction, GroupCommand, GroupName,
    Interest, LocalConnection, LocalHub, Member, Outcome, Presence, PresenceChange, Publish,
    RemoteError, SerializedMessage, Target, UserId,
};
use hubcast_backplane_redis::{RedisBackplane, RedisConfig};
use hubcast_protocol::{HubMessage, Invocation, NamingPolicy, Protocol, RawValue};

/// The hub every test node attaches.
pub const HUB: &str = "chat";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server process.
pub struct Redis {
    pub port: u16,
    child: Child,
    pub dir: PathBuf,
}

impl Redis {
    /// Starts `redis-server` with `extra` arguments on a free port (in its own directory). A port
    /// taken between choosing it and binding it (tests run in parallel) is retried with another.
    pub fn start(extra: &[&str]) -> Self {
        for _ in 0..4 {
            let mut redis = Self::spawn_on(free_port(), extra);
            if redis.wait_ready() {
                return redis;
            }
            let _ = redis.child.kill();
        }
        panic!("redis-server did not start on any of 4 free ports");
    }

    fn spawn_on(port: u16, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("hubcast-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir", dir.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        Self { port, child, dir }
    }

    /// Starts a sentinel watching `master_port` as `mymaster` (quorum 1, fast failover).
    pub fn sentinel(master_port: u16) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("hubcast-sentinel-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let mut sentinel = Self { port, child, dir };
        assert!(
            sentinel.wait_ready(),
            "sentinel on port {port} did not start"
        );
        sentinel
    }

    /// Whether the server answers PING within 10 s (false at once if it exited, e.g. port taken).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .cli(&["PING"])
                .map(|out| out.contains("PONG"))
                .unwrap_or(false)
            {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Runs `redis-cli` against this server.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Joins the servers on `ports` (loopback) into a cluster of masters, with `redis-cli --cluster create`
/// given `options` first (`--tls`, `--cacert …`); returns their addresses.
pub fn create_cluster(ports: &[u16], options: &[&std::ffi::OsStr]) -> Vec<String> {
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let status = Command::new("redis-cli")
        .args(options)
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "redis-cli --cluster create {options:?} failed"
    );
    addresses
}

/// A 3-master Redis Cluster.
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

impl Cluster {
    pub fn start() -> Self {
        let nodes: Vec<Redis> = (0..3)
            .map(|_| Redis::start(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]))
            .collect();
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        create_cluster(&ports, &[]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ok = nodes.iter().all(|n| {
                n.cli(&["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return Self { nodes };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the cluster did not become ready");
    }

    pub fn url(&self) -> String {
        let list: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", list.join(","))
    }
}

/// What a recording hub saw: each delivery's target and JSON text.
pub type Seen = Arc<Mutex<Vec<(Target, String)>>>;

/// A stand-in for a gateway node's hub: records deliveries, holds the connections it is given.
pub struct Recorder {
    pub seen: Seen,
    pub connections: Mutex<HashSet<ConnectionId>>,
    pub groups: Mutex<Vec<(ConnectionId, GroupName, GroupAction)>>,
}

impl Recorder {
    pub fn new(connections: &[&ConnectionId]) -> Arc<Self> {
        Arc::new(Self {
            seen: Arc::default(),
            connections: Mutex::new(connections.iter().map(|c| (*c).clone()).collect()),
            groups: Mutex::default(),
        })
    }

    pub fn texts(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Waits until `count` deliveries arrived (at most 5 s) and returns their texts.
    pub async fn wait_for(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.seen.lock().unwrap().len() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.texts()
    }
}

impl LocalHub for Recorder {
    fn deliver(&self, publish: &Publish) {
        let json = publish.message.get(Protocol::Json).unwrap();
        let text = String::from_utf8_lossy(json).into_owned();
        self.seen
            .lock()
            .unwrap()
            .push((publish.target.clone(), text));
    }

    fn group_command(&self, command: GroupCommand) -> BoxFuture<'_, Result<(), RemoteError>> {
        let known = self
            .connections
            .lock()
            .unwrap()
            .contains(&command.connection);
        if known {
            self.groups.lock().unwrap().push((
                command.connection.clone(),
                command.group.clone(),
                command.action,
            ));
        }
        Box::pin(async move {
            if known {
                Ok(())
            } else {
                Err(RemoteError::UnknownConnection(command.connection))
            }
        })
    }

    fn invoke_client(
        &self,
        invocation: ClientInvocation,
    ) -> BoxFuture<'_, Result<Outcome, RemoteError>> {
        let known = self
            .connections
            .lock()
            .unwrap()
            .contains(&invocation.connection);
        Box::pin(async move {
            if !known {
                return Err(RemoteError::UnknownConnection(invocation.connection));
            }
            let answer = format!("\"answer to {}\"", invocation.invocation_id);
            Ok(Outcome::Result(RawValue::new(
                Protocol::Json,
                Bytes::from(answer),
            )))
        })
    }

    fn close(&self, target: &Target, reason: &str) -> usize {
        let text = format!("closed: {reason}");
        self.seen.lock().unwrap().push((target.clone(), text));
        1
    }

    fn user_groups(
        &self,
        user: &UserId,
        group: Option<&GroupName>,
        action: GroupAction,
    ) -> BoxFuture<'_, ()> {
        let text = format!("user {user} {action:?} {group:?}");
        let target = Target::Users(vec![user.clone()]);
        self.seen.lock().unwrap().push((target, text));
        Box::pin(async {})
    }

    fn has_connection(&self, connection: &ConnectionId) -> bool {
        self.connections.lock().unwrap().contains(connection)
    }

    fn snapshot(&self) -> Vec<LocalConnection> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .map(|c| LocalConnection {
                member: Member {
                    connection: c.clone(),
                    user: Some(UserId::from("snap")),
                },
                groups: vec![GroupName::from("snapgroup")],
            })
            .collect()
    }

    fn local_users(&self) -> Vec<(UserId, usize)> {
        Vec::new()
    }

    fn local_group_members(&self, _group: &GroupName) -> Vec<Member> {
        Vec::new()
    }

    fn local_user_connections(&self, _user: &UserId) -> Vec<ConnectionId> {
        Vec::new()
    }
}

/// A `Message(text)` invocation.
pub fn message(text: &str) -> Arc<SerializedMessage> {
    let message: HubMessage<(String,), ()> =
        HubMessage::Invocation(Invocation::new("Message", (text.to_owned(),)));
    Arc::new(SerializedMessage::new(message, NamingPolicy::CamelCase))
}

/// The JSON a `Message(text)` delivery shows.
pub fn json(text: &str) -> String {
    format!("{{\"type\":1,\"target\":\"Message\",\"arguments\":[\"{text}\"]}}\u{1e}")
}

/// Polls `check` every 50 ms for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A backplane node with a recording hub and one local connection.
pub struct Node {
    pub backplane: RedisBackplane,
    pub hub: Arc<Recorder>,
    pub connection: ConnectionId,
}

/// A node on `base` (its URL, credentials and TLS files) with channel prefix `prefix`.
pub async fn node(base: &RedisConfig, prefix: &str) -> Node {
    let config = RedisConfig {
        prefix: prefix.to_owned(),
        node_ttl: Duration::from_millis(1500),
        ..base.clone()
    };
    let backplane = RedisBackplane::connect(config).await.unwrap();
    let status = backplane.status();
    assert!(
        status.connected,
        "connected to {}: {:?}",
        base.url, status.last_error
    );
    let connection = ConnectionId::from(format!("{}.c1", backplane.node_tag().unwrap()));
    let hub = Recorder::new(&[&connection]);
    backplane.attach(HUB, hub.clone()).await.unwrap();
    Node {
        backplane,
        hub,
        connection,
    }
}

pub fn publish(target: Target, text: &str) -> Publish {
    Publish {
        hub: HUB.into(),
        target,
        excluded: Vec::new(),
        message: message(text),
    }
}

/// Every kind of traffic between two nodes on `base`.
pub async fn exercise(base: &RedisConfig) {
    let a = node(base, "t").await;
    let b = node(base, "t").await;

    a.backplane
        .publish(publish(Target::All, "all"))
        .await
        .unwrap();
    assert_eq!(a.hub.wait_for(1).await, vec![json("all")], "local delivery");
    assert_eq!(
        b.hub.wait_for(1).await,
        vec![json("all")],
        "remote delivery"
    );

    b.backplane
        .subscribe(HUB, Interest::Group("room".into()))
        .await
        .unwrap();
    let to_group = Target::Groups(vec!["room".into()]);
    a.backplane
        .publish(publish(to_group, "group"))
        .await
        .unwrap();
    assert_eq!(b.hub.wait_for(2).await[1], json("group"));

    b.backplane
        .subscribe(HUB, Interest::User("ann".into()))
        .await
        .unwrap();
    let to_user = Target::Users(vec!["ann".into()]);
    a.backplane.publish(publish(to_user, "user")).await.unwrap();
    assert_eq!(b.hub.wait_for(3).await[2], json("user"));

    let to_connection = Target::Connections(vec![b.connection.clone()]);
    a.backplane
        .publish(publish(to_connection, "direct"))
        .await
        .unwrap();
    assert_eq!(b.hub.wait_for(4).await[3], json("direct"));

    let add = GroupCommand {
        connection: b.connection.clone(),
        group: "remote".into(),
        action: GroupAction::Add,
    };
    a.backplane.group_command(HUB, add).await.unwrap();
    assert_eq!(b.hub.groups.lock().unwrap().len(), 1);
    let unknown = ConnectionId::from(format!("{}.nobody", b.backplane.node_tag().unwrap()));
    let add_unknown = GroupCommand {
        connection: unknown.clone(),
        group: "remote".into(),
        action: GroupAction::Add,
    };
    assert_eq!(
        a.backplane.group_command(HUB, add_unknown).await,
        Err(RemoteError::UnknownConnection(unknown))
    );

    let invocation = ClientInvocation {
        connection: b.connection.clone(),
        invocation_id: "s1".into(),
        message: message("ask"),
        timeout: Duration::from_secs(2),
    };
    match a.backplane.invoke_client(HUB, invocation).await.unwrap() {
        Outcome::Result(raw) => assert_eq!(raw.deserialize::<String>().unwrap(), "answer to s1"),
        other => panic!("unexpected {other:?}"),
    }

    let member = |node: &Node, user: &str| Member {
        connection: node.connection.clone(),
        user: Some(UserId::from(user)),
    };
    a.backplane
        .record(HUB, PresenceChange::Connected(member(&a, "ann")))
        .await
        .unwrap();
    b.backplane
        .record(HUB, PresenceChange::Connected(member(&b, "ann")))
        .await
        .unwrap();
    b.backplane
        .record(
            HUB,
            PresenceChange::Joined(member(&b, "ann"), "room".into()),
        )
        .await
        .unwrap();
    let online = a.backplane.online_users(HUB).await.unwrap();
    assert!(online.contains(&(UserId::from("ann"), 2)), "{online:?}");
    let members = a
        .backplane
        .group_members(HUB, &"room".into())
        .await
        .unwrap();
    assert_eq!(members, vec![member(&b, "ann")]);
    b.backplane
        .record(HUB, PresenceChange::Disconnected(member(&b, "ann")))
        .await
        .unwrap();
    assert!(
        a.backplane
            .group_members(HUB, &"room".into())
            .await
            .unwrap()
            .is_empty()
    );
    let connections = a
        .backplane
        .user_connections(HUB, &"ann".into())
        .await
        .unwrap();
    assert_eq!(connections, vec![a.connection.clone()]);
    assert!(a.backplane.take_token("chat:ann", 1.0, 1.0).await.unwrap());
    assert!(
        !b.backplane.take_token("chat:ann", 1.0, 1.0).await.unwrap(),
        "the bucket is shared"
    );

    let ann = Target::Users(vec!["ann".into()]);
    a.backplane
        .close(HUB, ann.clone(), "bye".into())
        .await
        .unwrap();
    assert_eq!(b.hub.wait_for(5).await[4], "closed: bye");
    assert_eq!(b.hub.seen.lock().unwrap()[4].0, ann);

    // Nothing was delivered twice: each node saw each send once (the publisher locally, never again
    // through Redis; the recorder does not filter by target as a real hub would).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(a.hub.texts(), b.hub.texts());
    assert_eq!(b.hub.texts().len(), 5);

    // A node without the hub (a control-API process) forwards sends and commands to the nodes.
    let control = RedisBackplane::connect(RedisConfig {
        prefix: "t".into(),
        ..base.clone()
    })
    .await
    .unwrap();
    control
        .publish(publish(Target::All, "from control"))
        .await
        .unwrap();
    assert_eq!(a.hub.wait_for(6).await[5], json("from control"));
    assert_eq!(b.hub.wait_for(6).await[5], json("from control"));
    control
        .user_groups(HUB, "ann".into(), Some("room".into()), GroupAction::Add)
        .await
        .unwrap();
    let expected = "user ann Add Some(GroupName(\"room\"))";
    assert_eq!(a.hub.wait_for(7).await[6], expected);
    assert_eq!(b.hub.wait_for(7).await[6], expected);
    assert!(control.connection_exists(HUB, &a.connection).await.unwrap());
    assert!(!control.connection_exists(HUB, &b.connection).await.unwrap());
    a.backplane.leave().await.unwrap();
    b.backplane.leave().await.unwrap();
}
