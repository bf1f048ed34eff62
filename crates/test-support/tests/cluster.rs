//! The cross-node cases of `tests/node/cluster.test.js`, in process: three gateway nodes over one
//! in-memory backplane, each on its own loopback socket, driven by hubcast-client. Every send target,
//! group changes across nodes, client results and presence; each delivery is counted, so nothing may be
//! missing or duplicated. No Redis server is needed (the real-Redis tests stay as they are).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubcast_client::{HubConnection, HubConnectionBuilder};
use hubcast_gateway::HubOptions;
use hubcast_test_support::cluster::{Cluster, Node};
use hubcast_test_support::conformance::cluster_hub;

/// A started client of `/cluster` that records every `Message`.
struct Client {
    connection: HubConnection,
    id: String,
    got: Arc<Mutex<Vec<String>>>,
}

impl Client {
    async fn start(node: &Node, user: Option<&str>) -> Self {
        let mut builder = HubConnectionBuilder::new(node.url("/cluster"));
        if let Some(user) = user {
            builder = builder.with_access_token(Cluster::token(user, &[]));
        }
        let connection = builder.build().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        connection.on("Message", move |(text,): (String,)| {
            sink.lock().unwrap().push(text);
        });
        connection.start().await.unwrap();
        let id = connection.invoke::<String>("Id", ()).await.unwrap();
        Self {
            connection,
            id,
            got,
        }
    }

    fn got(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `count` messages arrived (5 s at most).
    async fn wait_for(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.got.lock().unwrap().len() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} got {:?}, expected {count} messages",
                self.id,
                self.got()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn invoke<R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        args: impl hubcast_client::ToArguments,
    ) -> hubcast_client::Result<R> {
        self.connection.invoke(method, args).await
    }
}

async fn cluster() -> Cluster {
    Cluster::start(3, |builder| {
        builder.hub("/cluster", cluster_hub(), HubOptions::default())
    })
    .await
    .unwrap()
}

/// One anonymous client on each node.
async fn one_each(cluster: &Cluster) -> Vec<Client> {
    let mut clients = Vec::new();
    for node in &cluster.nodes {
        clients.push(Client::start(node, None).await);
    }
    clients
}

/// Lets in-flight messages land, so duplicates would show.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_and_others_reach_every_node_exactly_once() {
    let cluster = cluster().await;
    let c = one_each(&cluster).await;
    c[0].invoke::<()>("Broadcast", ("to all",)).await.unwrap();
    for client in &c {
        client.wait_for(1).await;
    }
    c[1].invoke::<()>("Others", ("not to me",)).await.unwrap();
    c[0].wait_for(2).await;
    c[2].wait_for(2).await;
    settle().await;
    assert_eq!(c[0].got(), texts(&["to all", "not to me"]));
    assert_eq!(c[1].got(), texts(&["to all"]));
    assert_eq!(c[2].got(), texts(&["to all", "not to me"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_with_members_on_two_nodes_group_except_and_several_groups() {
    let cluster = cluster().await;
    let c = one_each(&cluster).await;
    let (a, b, x) = (&c[0], &c[1], &c[2]);
    a.invoke::<()>("AddToGroup", (&a.id, "g1")).await.unwrap();
    b.invoke::<()>("AddToGroup", (&b.id, "g1")).await.unwrap();
    a.invoke::<()>("AddToGroup", (&a.id, "g2")).await.unwrap();
    x.invoke::<()>("ToGroup", ("g1", "group")).await.unwrap();
    a.wait_for(1).await;
    b.wait_for(1).await;
    x.invoke::<()>("ToGroupExcept", ("g1", [&b.id], "except b"))
        .await
        .unwrap();
    a.wait_for(2).await;
    x.invoke::<()>("ToGroups", (["g1", "g2"], "both groups"))
        .await
        .unwrap();
    a.wait_for(3).await;
    b.wait_for(2).await;
    settle().await;
    assert_eq!(a.got(), texts(&["group", "except b", "both groups"]));
    assert_eq!(b.got(), texts(&["group", "both groups"]));
    assert!(x.got().is_empty());
    b.invoke::<()>("RemoveFromGroup", (&b.id, "g1"))
        .await
        .unwrap();
    x.invoke::<()>("ToGroup", ("g1", "after leaving"))
        .await
        .unwrap();
    a.wait_for(4).await;
    settle().await;
    assert_eq!(b.got(), texts(&["group", "both groups"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_connections_on_two_nodes_gets_user_sends_on_both() {
    let cluster = cluster().await;
    let ann1 = Client::start(&cluster.nodes[0], Some("ann")).await;
    let ann2 = Client::start(&cluster.nodes[1], Some("ann")).await;
    let bob = Client::start(&cluster.nodes[2], Some("bob")).await;
    bob.invoke::<()>("ToUser", ("ann", "hi ann")).await.unwrap();
    ann1.wait_for(1).await;
    ann2.wait_for(1).await;
    ann1.invoke::<()>("ToUsers", (["ann", "bob"], "hi both"))
        .await
        .unwrap();
    ann1.wait_for(2).await;
    ann2.wait_for(2).await;
    bob.wait_for(1).await;
    settle().await;
    assert_eq!(ann1.got(), texts(&["hi ann", "hi both"]));
    assert_eq!(ann2.got(), texts(&["hi ann", "hi both"]));
    assert_eq!(bob.got(), texts(&["hi both"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_to_connections_on_other_nodes() {
    let cluster = cluster().await;
    let c = one_each(&cluster).await;
    let (a, b, x) = (&c[0], &c[1], &c[2]);
    a.invoke::<()>("ToConnections", ([&b.id, &x.id], "direct"))
        .await
        .unwrap();
    b.wait_for(1).await;
    x.wait_for(1).await;
    a.invoke::<()>(
        "ToConnections",
        ([a.id.as_str(), "nosuchconnection00000"], "mixed"),
    )
    .await
    .unwrap();
    a.wait_for(1).await;
    settle().await;
    assert_eq!(a.got(), texts(&["mixed"]));
    assert_eq!(b.got(), texts(&["direct"]));
    assert_eq!(x.got(), texts(&["direct"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_adds_and_removes_a_connection_of_another_node_to_and_from_a_group() {
    let cluster = cluster().await;
    let c = one_each(&cluster).await;
    let (a, b, x) = (&c[0], &c[1], &c[2]);
    a.invoke::<()>("AddToGroup", (&b.id, "remote"))
        .await
        .unwrap();
    x.invoke::<()>("ToGroup", ("remote", "added from A"))
        .await
        .unwrap();
    b.wait_for(1).await;
    a.invoke::<()>("RemoveFromGroup", (&b.id, "remote"))
        .await
        .unwrap();
    x.invoke::<()>("ToGroup", ("remote", "removed from A"))
        .await
        .unwrap();
    settle().await;
    assert_eq!(b.got(), texts(&["added from A"]));
    let error = a
        .invoke::<()>("AddToGroup", ("nosuchconnection00000", "x"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_results_across_nodes() {
    let cluster = cluster().await;
    let a = Client::start(&cluster.nodes[0], None).await;
    let b = Client::start(&cluster.nodes[1], None).await;
    b.connection
        .on_invoke("Ask", |(question,): (String,)| async move {
            Ok::<_, String>(format!("answer to {question}"))
        });
    let answer: String = a.invoke("Ask", (&b.id, "life")).await.unwrap();
    assert_eq!(answer, "answer to life");
    a.connection
        .on_invoke("Ask", |(_question,): (String,)| async move {
            Err::<String, _>("no idea".to_owned())
        });
    let error = b.invoke::<String>("Ask", (&a.id, "x")).await.unwrap_err();
    assert!(error.to_string().contains("no idea"), "{error}");
    let error = a
        .invoke::<String>("Ask", ("deadnode00.nosuchconnection00000", "x"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_lists_users_their_connections_and_group_members_on_every_node() {
    let cluster = cluster().await;
    let zed1 = Client::start(&cluster.nodes[0], Some("zed")).await;
    let zed2 = Client::start(&cluster.nodes[1], Some("zed")).await;
    let yan = Client::start(&cluster.nodes[2], Some("yan")).await;
    zed1.invoke::<()>("AddToGroup", (&zed1.id, "presence"))
        .await
        .unwrap();
    yan.invoke::<()>("AddToGroup", (&zed2.id, "presence"))
        .await
        .unwrap();
    let online: Vec<(String, u64)> = yan.invoke("OnlineUsers", ()).await.unwrap();
    assert_eq!(online, vec![("yan".to_owned(), 1), ("zed".to_owned(), 2)]);
    let mut ids = vec![zed1.id.clone(), zed2.id.clone()];
    ids.sort();
    let connections: Vec<String> = zed1.invoke("UserConnections", ("zed",)).await.unwrap();
    assert_eq!(connections, ids);
    let members: Vec<(String, Option<String>)> =
        yan.invoke("GroupMembers", ("presence",)).await.unwrap();
    let zed = Some("zed".to_owned());
    assert_eq!(
        members,
        ids.iter()
            .map(|id| (id.clone(), zed.clone()))
            .collect::<Vec<_>>()
    );
    zed2.connection.stop().await;
    settle().await;
    let online: Vec<(String, u64)> = yan.invoke("OnlineUsers", ()).await.unwrap();
    assert_eq!(online, vec![("yan".to_owned(), 1), ("zed".to_owned(), 1)]);
    let members: Vec<(String, Option<String>)> =
        yan.invoke("GroupMembers", ("presence",)).await.unwrap();
    assert_eq!(members, vec![(zed1.id.clone(), zed)]);
}
