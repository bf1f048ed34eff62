//! The in-process backplane: a publish is handed synchronously to every node attached in this process.
//! With one node this is the single-node default; with several it lets tests run many nodes in one
//! process without Redis. Presence is read straight from the attached nodes' local indexes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::{
    BackplaneError, BoxFuture, Broker, ClientInvocation, ConnectionId, GroupCommand, GroupName,
    Interest, LocalHub, Member, Outcome, Presence, PresenceChange, Publish, RemoteError, UserId,
};

/// The nodes attached to each hub.
type Nodes = HashMap<Arc<str>, Vec<Arc<dyn LocalHub>>>;

/// The in-memory backplane.
#[derive(Default)]
pub struct MemoryBackplane {
    nodes: RwLock<Nodes>,
}

impl MemoryBackplane {
    /// An empty backplane.
    pub fn new() -> Self {
        Self::default()
    }

    fn nodes_of(&self, hub: &str) -> Result<Vec<Arc<dyn LocalHub>>, BackplaneError> {
        let nodes = self
            .nodes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        nodes
            .get(hub)
            .cloned()
            .ok_or_else(|| BackplaneError::UnknownHub(hub.to_owned()))
    }
}

impl Broker for MemoryBackplane {
    fn node_tag(&self) -> Option<&str> {
        None
    }

    fn attach(
        &self,
        hub: &str,
        local: Arc<dyn LocalHub>,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let mut nodes = self
            .nodes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        nodes.entry(Arc::from(hub)).or_default().push(local);
        Box::pin(async { Ok(()) })
    }

    fn publish(&self, publish: Publish) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let result = self
            .nodes_of(&publish.hub)
            .map(|nodes| nodes.iter().for_each(|node| node.deliver(&publish)));
        Box::pin(async move { result })
    }

    fn subscribe(
        &self,
        _hub: &str,
        _interest: Interest,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async { Ok(()) })
    }

    fn unsubscribe(
        &self,
        _hub: &str,
        _interest: Interest,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async { Ok(()) })
    }

    fn group_command(
        &self,
        hub: &str,
        command: GroupCommand,
    ) -> BoxFuture<'_, Result<(), RemoteError>> {
        let nodes = self.nodes_of(hub);
        Box::pin(async move {
            for node in nodes? {
                match node.group_command(command.clone()).await {
                    Err(RemoteError::UnknownConnection(_)) => continue,
                    other => return other,
                }
            }
            Err(RemoteError::UnknownConnection(command.connection))
        })
    }

    fn invoke_client(
        &self,
        hub: &str,
        invocation: ClientInvocation,
    ) -> BoxFuture<'_, Result<Outcome, RemoteError>> {
        let nodes = self.nodes_of(hub);
        Box::pin(async move {
            for node in nodes? {
                match node.invoke_client(invocation.clone()).await {
                    Err(RemoteError::UnknownConnection(_)) => continue,
                    other => return other,
                }
            }
            Err(RemoteError::UnknownConnection(invocation.connection))
        })
    }

    fn user_groups(
        &self,
        hub: &str,
        user: UserId,
        group: Option<GroupName>,
        action: crate::GroupAction,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let nodes = self.nodes_of(hub);
        Box::pin(async move {
            for node in nodes? {
                node.user_groups(&user, group.as_ref(), action).await;
            }
            Ok(())
        })
    }

    fn close(
        &self,
        hub: &str,
        target: crate::Target,
        reason: String,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let result = self.nodes_of(hub).map(|nodes| {
            nodes
                .iter()
                .for_each(|node| _ = node.close(&target, &reason))
        });
        Box::pin(async move { result })
    }
}

impl Presence for MemoryBackplane {
    fn connection_exists(
        &self,
        hub: &str,
        connection: &ConnectionId,
    ) -> BoxFuture<'_, Result<bool, BackplaneError>> {
        let result = self
            .nodes_of(hub)
            .map(|nodes| nodes.iter().any(|node| node.has_connection(connection)));
        Box::pin(async move { result })
    }

    fn record(
        &self,
        _hub: &str,
        _change: PresenceChange,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async { Ok(()) })
    }

    fn online_users(&self, hub: &str) -> BoxFuture<'_, Result<Vec<(UserId, u64)>, BackplaneError>> {
        let result = self.nodes_of(hub).map(|nodes| {
            let mut users = BTreeMap::<UserId, u64>::new();
            for (user, count) in nodes.iter().flat_map(|node| node.local_users()) {
                *users.entry(user).or_default() += count as u64;
            }
            users.into_iter().collect()
        });
        Box::pin(async move { result })
    }

    fn user_connections(
        &self,
        hub: &str,
        user: &UserId,
    ) -> BoxFuture<'_, Result<Vec<ConnectionId>, BackplaneError>> {
        let result = self.nodes_of(hub).map(|nodes| {
            nodes
                .iter()
                .flat_map(|node| node.local_user_connections(user))
                .collect()
        });
        Box::pin(async move { result })
    }

    fn group_members(
        &self,
        hub: &str,
        group: &GroupName,
    ) -> BoxFuture<'_, Result<Vec<Member>, BackplaneError>> {
        let result = self.nodes_of(hub).map(|nodes| {
            nodes
                .iter()
                .flat_map(|node| node.local_group_members(group))
                .collect()
        });
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use hubcast_protocol::{HubMessage, Invocation, NamingPolicy, Protocol, SerializedMessage};

    use super::*;
    use crate::{ConnectionId, Target};

    type Seen = (Target, Vec<ConnectionId>, Vec<u8>);

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Seen>>, &'static str);

    /// A node holding one connection `{name}.c` of user `u`, in group `g`.
    impl LocalHub for Recorder {
        fn deliver(&self, publish: &Publish) {
            let bytes = publish.message.get(Protocol::Json).unwrap().to_vec();
            self.0
                .lock()
                .unwrap()
                .push((publish.target.clone(), publish.excluded.clone(), bytes));
        }

        fn group_command(&self, command: GroupCommand) -> BoxFuture<'_, Result<(), RemoteError>> {
            let known = command.connection.as_str() == format!("{}.c", self.1);
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
            let known = invocation.connection.as_str() == format!("{}.c", self.1);
            let name = self.1;
            Box::pin(async move {
                if known {
                    Ok(Outcome::Error(name.to_owned()))
                } else {
                    Err(RemoteError::UnknownConnection(invocation.connection))
                }
            })
        }

        fn close(&self, target: &Target, reason: &str) -> usize {
            let seen = (target.clone(), Vec::new(), reason.as_bytes().to_vec());
            self.0.lock().unwrap().push(seen);
            1
        }

        fn user_groups(
            &self,
            user: &UserId,
            group: Option<&GroupName>,
            _action: crate::GroupAction,
        ) -> BoxFuture<'_, ()> {
            let target = Target::Groups(group.into_iter().cloned().collect());
            let seen = (target, vec![ConnectionId::from(user.as_str())], Vec::new());
            self.0.lock().unwrap().push(seen);
            Box::pin(async {})
        }

        fn has_connection(&self, connection: &ConnectionId) -> bool {
            connection.as_str() == format!("{}.c", self.1)
        }

        fn snapshot(&self) -> Vec<crate::LocalConnection> {
            Vec::new()
        }

        fn local_users(&self) -> Vec<(UserId, usize)> {
            vec![(UserId::from("u"), 1), (UserId::from(self.1), 1)]
        }

        fn local_group_members(&self, group: &GroupName) -> Vec<Member> {
            (group.as_str() == "g")
                .then(|| Member {
                    connection: ConnectionId::from(format!("{}.c", self.1)),
                    user: Some(UserId::from("u")),
                })
                .into_iter()
                .collect()
        }

        fn local_user_connections(&self, user: &UserId) -> Vec<ConnectionId> {
            (user.as_str() == "u")
                .then(|| ConnectionId::from(format!("{}.c", self.1)))
                .into_iter()
                .collect()
        }
    }

    #[tokio::test]
    async fn commands_and_presence_span_every_node_of_the_hub() {
        let backplane = MemoryBackplane::new();
        let mut nodes = Vec::new();
        for name in ["a", "b"] {
            let node = Arc::new(Recorder(Mutex::default(), name));
            backplane.attach("chat", node.clone()).await.unwrap();
            nodes.push(node);
        }
        let add = |connection: &str| GroupCommand {
            connection: connection.into(),
            group: "g".into(),
            action: crate::GroupAction::Add,
        };
        assert_eq!(backplane.group_command("chat", add("b.c")).await, Ok(()));
        assert_eq!(
            backplane.group_command("chat", add("z.c")).await,
            Err(RemoteError::UnknownConnection("z.c".into()))
        );
        let invocation = ClientInvocation {
            connection: "b.c".into(),
            invocation_id: "1".into(),
            message: a_publish().message,
            timeout: std::time::Duration::from_secs(1),
        };
        let outcome = backplane.invoke_client("chat", invocation).await.unwrap();
        assert_eq!(outcome, Outcome::Error("b".into()));
        let online = backplane.online_users("chat").await.unwrap();
        assert_eq!(
            online,
            vec![("a".into(), 1), ("b".into(), 1), ("u".into(), 2)]
        );
        let members = backplane.group_members("chat", &"g".into()).await.unwrap();
        assert_eq!(members.len(), 2);
        let conns = backplane
            .user_connections("chat", &"u".into())
            .await
            .unwrap();
        assert_eq!(
            conns,
            vec![ConnectionId::from("a.c"), ConnectionId::from("b.c")]
        );
        assert!(backplane.online_users("other").await.is_err());
        let ann = Target::Users(vec!["ann".into()]);
        backplane
            .close("chat", ann.clone(), "bye".into())
            .await
            .unwrap();
        let add = crate::GroupAction::Add;
        backplane
            .user_groups("chat", "ann".into(), Some("g".into()), add)
            .await
            .unwrap();
        let in_g = Target::Groups(vec!["g".into()]);
        for node in nodes {
            assert_eq!(
                *node.0.lock().unwrap(),
                vec![
                    (ann.clone(), vec![], b"bye".to_vec()),
                    (in_g.clone(), vec!["ann".into()], vec![])
                ]
            );
        }
        assert!(
            backplane
                .connection_exists("chat", &"b.c".into())
                .await
                .unwrap()
        );
        assert!(
            !backplane
                .connection_exists("chat", &"z.c".into())
                .await
                .unwrap()
        );
        assert!(
            backplane
                .close("other", Target::All, "bye".into())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn publishes_reach_every_attached_node_of_the_hub() {
        let backplane = MemoryBackplane::new();
        let (a, b, other) = (
            Arc::new(Recorder::default()),
            Arc::new(Recorder::default()),
            Arc::new(Recorder::default()),
        );
        assert_eq!(backplane.node_tag(), None);
        backplane.attach("chat", a.clone()).await.unwrap();
        backplane.attach("chat", b.clone()).await.unwrap();
        backplane.attach("other", other.clone()).await.unwrap();
        let message: HubMessage<(i32,), ()> = HubMessage::Invocation(Invocation::new("M", (1,)));
        let publish = Publish {
            hub: "chat".into(),
            target: Target::All,
            excluded: vec![ConnectionId::from("x")],
            message: Arc::new(SerializedMessage::new(message, NamingPolicy::CamelCase)),
        };
        backplane.publish(publish).await.unwrap();
        for node in [&a, &b] {
            let seen = node.0.lock().unwrap();
            assert_eq!(seen.len(), 1);
            assert_eq!(seen[0].1, vec![ConnectionId::from("x")]);
            assert_eq!(
                seen[0].2,
                b"{\"type\":1,\"target\":\"M\",\"arguments\":[1]}\x1e"
            );
        }
        assert!(other.0.lock().unwrap().is_empty());
        let unknown = Publish {
            hub: "nope".into(),
            ..a_publish()
        };
        assert_eq!(
            backplane.publish(unknown).await,
            Err(BackplaneError::UnknownHub("nope".into()))
        );
    }

    fn a_publish() -> Publish {
        let message: HubMessage<(), ()> = HubMessage::Ping;
        Publish {
            hub: "chat".into(),
            target: Target::All,
            excluded: Vec::new(),
            message: Arc::new(SerializedMessage::new(message, NamingPolicy::CamelCase)),
        }
    }
}
