//! In-process clusters: N gateway nodes over one [`MemoryBackplane`], each serving on its own loopback
//! socket, so clients connect to different nodes exactly as they would to different processes. The
//! backplane hands every publish, group command, client result and presence query to every attached
//! node, which is the contract the Redis backplane keeps across processes; its own wire and routing
//! are tested against real Redis servers in hubcast-backplane-redis.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hubcast_backplane::MemoryBackplane;
use hubcast_gateway::auth::JwtAuth;
use hubcast_gateway::{Gateway, GatewayBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The HMAC secret every node of a [`Cluster`] validates bearer tokens with ([`Cluster::token`]).
const SECRET: &[u8] = b"hubcast in-process cluster secret";

/// One node of a cluster.
pub struct Node {
    /// Its address.
    pub addr: SocketAddr,
    /// The gateway it runs.
    pub gateway: Arc<Gateway>,
}

impl Node {
    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Gateway nodes sharing one in-memory backplane; dropping it stops them.
pub struct Cluster {
    /// The nodes, in start order.
    pub nodes: Vec<Node>,
    shutdown: CancellationToken,
    serving: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Starts `count` nodes, each built by `build` from a builder over the shared backplane that
    /// already validates the tokens of [`Cluster::token`].
    pub async fn start(
        count: usize,
        build: impl Fn(GatewayBuilder) -> GatewayBuilder,
    ) -> anyhow::Result<Self> {
        let backplane = Arc::new(MemoryBackplane::new());
        let shutdown = CancellationToken::new();
        let mut nodes = Vec::with_capacity(count);
        let mut serving = Vec::with_capacity(count);
        for _ in 0..count {
            let builder =
                GatewayBuilder::new(backplane.clone()).authentication(JwtAuth::hmac(SECRET));
            let gateway = Arc::new(build(builder).build().await?);
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let node = gateway.clone();
            let stop = shutdown.clone();
            serving.push(tokio::spawn(async move {
                node.serve(listener, stop, Duration::from_secs(1)).await;
            }));
            nodes.push(Node { addr, gateway });
        }
        Ok(Self {
            nodes,
            shutdown,
            serving,
        })
    }

    /// A bearer token for `user` (with `roles`) that every node accepts, valid for an hour.
    pub fn token(user: &str, roles: &[&str]) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims =
            serde_json::json!({ "sub": user, "role": roles, "iat": now, "exp": now + 3600 });
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
            .unwrap_or_else(|e| unreachable!("HS256 signing of JSON claims cannot fail: {e}"))
    }

    /// Stops every node and waits until they closed their connections.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for serving in self.serving.drain(..) {
            let _ = serving.await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
