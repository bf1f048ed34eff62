//! Two backplane nodes over each Redis topology (standalone, a 3-master Cluster with sharded pub/sub, a
//! Sentinel-managed master), and a Sentinel failover under way.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, Recorder, Redis, eventually, json, message};
use hubcast_backplane::{
    BackplaneError, Broker, ClientInvocation, ConnectionId, GroupAction, GroupCommand, Interest,
    Member, Outcome, Presence, PresenceChange, Publish, RemoteError, Target, UserId,
};
use hubcast_backplane_redis::{RedisBackplane, RedisConfig};

const HUB: &str = "chat";

struct Node {
    backplane: RedisBackplane,
    hub: Arc<Recorder>,
    connection: ConnectionId,
}

async fn node(url: &str, prefix: &str) -> Node {
    let config = RedisConfig {
        prefix: prefix.to_owned(),
        node_ttl: Duration::from_millis(1500),
        ..RedisConfig::new(url)
    };
    let backplane = RedisBackplane::connect(config).await.unwrap();
    assert!(backplane.status().connected, "connected to {url}");
    let connection = ConnectionId::from(format!("{}.c1", backplane.node_tag().unwrap()));
    let hub = Recorder::new(&[&connection]);
    backplane.attach(HUB, hub.clone()).await.unwrap();
    Node {
        backplane,
        hub,
        connection,
    }
}

fn publish(target: Target, text: &str) -> Publish {
    Publish {
        hub: HUB.into(),
        target,
        excluded: Vec::new(),
        message: message(text),
    }
}

/// Every kind of traffic between two nodes.
async fn exercise(url: &str) {
    let a = node(url, "t").await;
    let b = node(url, "t").await;

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
        ..RedisConfig::new(url)
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

/// How many PUBLISH commands the server has run.
fn publishes(redis: &Redis) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]).unwrap();
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_publish:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone() {
    let redis = Redis::start(&[]);
    exercise(&redis.url()).await;

    let too_short = RedisConfig {
        node_ttl: Duration::from_millis(10),
        ..RedisConfig::new(redis.url())
    };
    assert!(RedisBackplane::connect(too_short).await.is_err());

    // Hub names end up in channel and key names.
    let other = node(&redis.url(), "names").await;
    for bad in ["", "a:b", "a\nb"] {
        let result = other.backplane.attach(bad, other.hub.clone()).await;
        assert!(
            matches!(result, Err(BackplaneError::InvalidHubName(..))),
            "{bad:?}"
        );
    }

    // One PUBLISH per send, whatever the number of nodes and recipients.
    let nodes = [
        node(&redis.url(), "one").await,
        node(&redis.url(), "one").await,
        node(&redis.url(), "one").await,
    ];
    for n in &nodes {
        n.backplane
            .subscribe(HUB, Interest::Group("g".into()))
            .await
            .unwrap();
    }
    let before = publishes(&redis);
    nodes[0]
        .backplane
        .publish(publish(Target::All, "x"))
        .await
        .unwrap();
    let to_group = Target::Groups(vec!["g".into()]);
    nodes[0]
        .backplane
        .publish(publish(to_group, "y"))
        .await
        .unwrap();
    for n in &nodes {
        assert_eq!(n.hub.wait_for(2).await.len(), 2);
    }
    assert_eq!(publishes(&redis) - before, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_with_sharded_pubsub() {
    let cluster = Cluster::start();
    exercise(&cluster.url()).await;
    // The channels went to several shards (SSUBSCRIBE spreads them by slot).
    let shards_with_channels = cluster
        .nodes
        .iter()
        .filter(|n| {
            let list = n.cli(&["PUBSUB", "SHARDCHANNELS"]).unwrap_or_default();
            !list.trim().is_empty()
        })
        .count();
    assert!(shards_with_channels >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_and_failover() {
    let mut master = Redis::start(&[]);
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let sentinel = Redis::sentinel(master.port);
    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster", sentinel.port);
    exercise(&url).await;

    let a = node(&url, "f").await;
    let b = node(&url, "f").await;
    // Let the replica catch up, then kill the master: the sentinel promotes the replica.
    tokio::time::sleep(Duration::from_millis(500)).await;
    master.kill();
    let promoted = eventually(Duration::from_secs(20), || async {
        replica
            .cli(&["ROLE"])
            .is_some_and(|role| role.starts_with("master"))
    })
    .await;
    assert!(promoted, "the sentinel promoted the replica");
    let mut sent = 0;
    let delivered = eventually(Duration::from_secs(15), || {
        sent += 1;
        let text = format!("after failover {sent}");
        let (a, b) = (&a, &b);
        async move {
            a.backplane
                .publish(publish(Target::All, &text))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            b.hub.texts().iter().any(|t| t.contains("after failover"))
        }
    })
    .await;
    assert!(delivered, "sends flow again through the new master");
    assert!(a.backplane.status().connected && b.backplane.status().connected);
}

/// A generated password full of URL delimiters, given apart from the URL: two nodes talk; without it
/// no link comes up; a URL with credentials as well is refused, and the error does not name them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_set_apart_works_whatever_its_characters() {
    const PASSWORD: &str = "Zq/8+x=Y#k@p:w%?";
    let redis = Redis::start(&[]);
    let set = redis
        .cli(&["CONFIG", "SET", "requirepass", PASSWORD])
        .unwrap();
    assert!(set.contains("OK"), "{set}");
    let config = |password: Option<&str>| RedisConfig {
        prefix: "pw".to_owned(),
        password: password.map(str::to_owned),
        ..RedisConfig::new(redis.url())
    };
    let a = RedisBackplane::connect(config(Some(PASSWORD)))
        .await
        .unwrap();
    let b = RedisBackplane::connect(config(Some(PASSWORD)))
        .await
        .unwrap();
    assert!(a.status().connected && b.status().connected);
    let hub = Recorder::new(&[]);
    b.attach(HUB, hub.clone()).await.unwrap();
    a.attach(HUB, Recorder::new(&[])).await.unwrap();
    a.publish(publish(Target::All, "through auth"))
        .await
        .unwrap();
    assert_eq!(hub.wait_for(1).await, vec![json("through auth")]);
    // Without it the node starts (Redis being down at start is survivable) but never links up.
    let unauthenticated = RedisBackplane::connect(config(None)).await.unwrap();
    assert!(!unauthenticated.status().connected);
    let wrong = RedisConfig {
        password: Some("x".into()),
        ..RedisConfig::new("redis://:inurl@127.0.0.1:1")
    };
    let error = RedisBackplane::connect(wrong)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("one place") && !error.contains("inurl"),
        "{error}"
    );
}
