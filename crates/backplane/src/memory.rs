//! The in-process backplane: a publish is handed synchronously to every node attached in this process.
//! With one node this is the single-node default; with several it lets tests run many nodes in one
//! process without Redis.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::{Backplane, BackplaneError, BoxFuture, Interest, LocalDelivery, Publish};

/// The nodes attached to each hub.
type Nodes = HashMap<Arc<str>, Vec<Arc<dyn LocalDelivery>>>;

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

    fn nodes_of(&self, hub: &str) -> Vec<Arc<dyn LocalDelivery>> {
        let nodes = self
            .nodes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        nodes.get(hub).cloned().unwrap_or_default()
    }
}

impl Backplane for MemoryBackplane {
    fn attach(
        &self,
        hub: &str,
        local: Arc<dyn LocalDelivery>,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let mut nodes = self
            .nodes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        nodes.entry(Arc::from(hub)).or_default().push(local);
        Box::pin(async { Ok(()) })
    }

    fn publish(&self, publish: Publish) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let nodes = self.nodes_of(&publish.hub);
        let result = if nodes.is_empty() {
            Err(BackplaneError::UnknownHub(publish.hub.to_string()))
        } else {
            nodes.iter().for_each(|node| node.deliver(&publish));
            Ok(())
        };
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
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use hubcast_protocol::{HubMessage, Invocation, NamingPolicy, Protocol, SerializedMessage};

    use super::*;
    use crate::{ConnectionId, Target};

    type Seen = (Target, Vec<ConnectionId>, Vec<u8>);

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Seen>>);

    impl LocalDelivery for Recorder {
        fn deliver(&self, publish: &Publish) {
            let bytes = publish.message.get(Protocol::Json).unwrap().to_vec();
            self.0
                .lock()
                .unwrap()
                .push((publish.target.clone(), publish.excluded.clone(), bytes));
        }
    }

    #[tokio::test]
    async fn publishes_reach_every_attached_node_of_the_hub() {
        let backplane = MemoryBackplane::new();
        let (a, b, other) = (
            Arc::new(Recorder::default()),
            Arc::new(Recorder::default()),
            Arc::new(Recorder::default()),
        );
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
