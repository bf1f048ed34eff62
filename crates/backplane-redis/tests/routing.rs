//! The Redis backplane's own logic over an in-memory pub/sub (the `stub-pubsub` feature), no Redis
//! server: routing by node tag, the pending-request map of commands and client results, interest
//! channels, and origin filtering (a node never handles its own broadcast twice). The same flows
//! against real Redis topologies are in `topologies.rs`.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code)] // the Redis servers of common are for the topology tests
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Recorder, json, message};
use hubcast_backplane::{
    Broker, ClientInvocation, ConnectionId, GroupAction, GroupCommand, Interest, Outcome, Publish,
    RemoteError, Target,
};
use hubcast_backplane_redis::{MemoryPubSub, RedisBackplane, RedisConfig};

const HUB: &str = "chat";

struct Node {
    backplane: RedisBackplane,
    hub: Arc<Recorder>,
    connection: ConnectionId,
}

/// A node over `stub`: one hub with one connection named after the node's tag.
async fn node(stub: &MemoryPubSub) -> Node {
    let config = RedisConfig {
        prefix: "stub".to_owned(),
        command_timeout: Duration::from_millis(500),
        // Nothing listens here: presence and rate limits are not under test.
        ..RedisConfig::new("redis://127.0.0.1:1")
    };
    let backplane = RedisBackplane::connect_over(config, stub).await.unwrap();
    assert!(backplane.status().connected);
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

async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_reach_each_node_once_and_connection_sends_only_their_node() {
    let stub = MemoryPubSub::new();
    let (a, b, c) = (node(&stub).await, node(&stub).await, node(&stub).await);
    a.backplane
        .publish(publish(Target::All, "all"))
        .await
        .unwrap();
    for n in [&a, &b, &c] {
        assert_eq!(n.hub.wait_for(1).await, vec![json("all")]);
    }
    // To B's connection: routed to B's node channel by the tag in the id; C hears nothing. A hands
    // every send to its own hub first (its registry resolves the target), and only once.
    let to_b = Target::Connections(vec![b.connection.clone()]);
    a.backplane.publish(publish(to_b, "to b")).await.unwrap();
    assert_eq!(b.hub.wait_for(2).await, vec![json("all"), json("to b")]);
    settle().await;
    // Origin filtering: A delivered its sends locally and ignored them coming back.
    assert_eq!(a.hub.texts(), vec![json("all"), json("to b")]);
    assert_eq!(c.hub.texts(), vec![json("all")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_sends_follow_interest_subscriptions() {
    let stub = MemoryPubSub::new();
    let (a, b) = (node(&stub).await, node(&stub).await);
    let room = Target::Groups(vec!["room".into()]);
    a.backplane
        .publish(publish(room.clone(), "nobody yet"))
        .await
        .unwrap();
    // Publishing hands the send to the outbox: let it go out before B starts listening.
    settle().await;
    b.backplane
        .subscribe(HUB, Interest::Group("room".into()))
        .await
        .unwrap();
    a.backplane
        .publish(publish(room.clone(), "b listens"))
        .await
        .unwrap();
    assert_eq!(b.hub.wait_for(1).await, vec![json("b listens")]);
    b.backplane
        .unsubscribe(HUB, Interest::Group("room".into()))
        .await
        .unwrap();
    a.backplane.publish(publish(room, "b left")).await.unwrap();
    settle().await;
    assert_eq!(b.hub.texts(), vec![json("b listens")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_client_results_come_back_through_the_pending_map() {
    let stub = MemoryPubSub::new();
    let (a, b) = (node(&stub).await, node(&stub).await);
    let add = GroupCommand {
        connection: b.connection.clone(),
        group: "g".into(),
        action: GroupAction::Add,
    };
    a.backplane.group_command(HUB, add).await.unwrap();
    assert_eq!(b.hub.groups.lock().unwrap().len(), 1, "applied on B");
    assert!(a.hub.groups.lock().unwrap().is_empty(), "not on A");
    // Several requests in flight at once each get their own answer.
    let asks = (0..5).map(|i| {
        a.backplane.invoke_client(
            HUB,
            ClientInvocation {
                connection: b.connection.clone(),
                invocation_id: format!("s{i}"),
                message: message("ask"),
                timeout: Duration::from_secs(1),
            },
        )
    });
    for (i, answer) in futures_util::future::join_all(asks)
        .await
        .into_iter()
        .enumerate()
    {
        let Ok(Outcome::Result(value)) = answer else {
            panic!("{answer:?}")
        };
        let text: String = value.deserialize().unwrap();
        assert_eq!(text, format!("answer to s{i}"));
    }
    // A connection B does not hold: B answers so. A node tag nobody has: nobody hears it.
    let unknown = ConnectionId::from(format!("{}.nobody", b.backplane.node_tag().unwrap()));
    let missing = GroupCommand {
        connection: unknown.clone(),
        group: "g".into(),
        action: GroupAction::Add,
    };
    assert_eq!(
        a.backplane.group_command(HUB, missing).await,
        Err(RemoteError::UnknownConnection(unknown))
    );
    let dead = ConnectionId::from("deadnode00.c1");
    let to_dead = GroupCommand {
        connection: dead.clone(),
        group: "g".into(),
        action: GroupAction::Add,
    };
    assert_eq!(
        a.backplane.group_command(HUB, to_dead).await,
        Err(RemoteError::UnknownConnection(dead))
    );
    assert!(a.hub.texts().is_empty());
}
