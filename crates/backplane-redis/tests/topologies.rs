//! Two backplane nodes over each Redis topology (standalone, a 3-master Cluster with sharded pub/sub, a
//! Sentinel-managed master), and a Sentinel failover under way.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{Cluster, HUB, Recorder, Redis, eventually, exercise, json, node, publish};
use hubcast_backplane::{BackplaneError, Broker, Interest, Target};
use hubcast_backplane_redis::{RedisBackplane, RedisConfig};

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
    exercise(&RedisConfig::new(redis.url())).await;

    let too_short = RedisConfig {
        node_ttl: Duration::from_millis(10),
        ..RedisConfig::new(redis.url())
    };
    assert!(RedisBackplane::connect(too_short).await.is_err());

    // Hub names end up in channel and key names.
    let other = node(&RedisConfig::new(redis.url()), "names").await;
    for bad in ["", "a:b", "a\nb"] {
        let result = other.backplane.attach(bad, other.hub.clone()).await;
        assert!(
            matches!(result, Err(BackplaneError::InvalidHubName(..))),
            "{bad:?}"
        );
    }

    // One PUBLISH per send, whatever the number of nodes and recipients.
    let nodes = [
        node(&RedisConfig::new(redis.url()), "one").await,
        node(&RedisConfig::new(redis.url()), "one").await,
        node(&RedisConfig::new(redis.url()), "one").await,
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
    exercise(&RedisConfig::new(cluster.url())).await;
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
    exercise(&RedisConfig::new(&url)).await;

    let a = node(&RedisConfig::new(&url), "f").await;
    let b = node(&RedisConfig::new(&url), "f").await;
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
