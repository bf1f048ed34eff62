//! A hub as the gateway runs it: the user's hub definition, its options, its local registry and the
//! backplane it publishes through.

use std::sync::Arc;

use hubcast_backplane::{Backplane, BackplaneError};

use super::HubApp;
use super::clients::HubContext;
use super::registry::Registry;
use crate::config::HubOptions;
use crate::connection::{Connection, Inbound};

/// What every connection and send of a hub shares.
pub(crate) struct HubShared {
    pub(crate) name: Arc<str>,
    pub(crate) options: HubOptions,
    pub(crate) backplane: Arc<dyn Backplane>,
    pub(crate) registry: Arc<Registry>,
    /// Per-user rate limits (shared beyond this connection).
    pub(crate) limiter: Arc<dyn super::RateLimiter>,
    /// Numbers the server's client-result invocations (`s1`, `s2`, …: never a client stream id).
    result_ids: std::sync::atomic::AtomicU64,
}

impl HubShared {
    pub(crate) fn next_result_id(&self) -> u64 {
        self.result_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }
}

/// A running hub.
pub(crate) struct HubRuntime {
    pub(crate) app: Arc<dyn HubApp>,
    pub(crate) shared: Arc<HubShared>,
}

impl HubRuntime {
    /// Attaches the hub's registry to the backplane.
    pub(crate) async fn start(
        app: Arc<dyn HubApp>,
        options: HubOptions,
        backplane: Arc<dyn Backplane>,
        limiter: Arc<dyn super::RateLimiter>,
    ) -> Result<Arc<Self>, BackplaneError> {
        let registry = Arc::new(Registry::default());
        backplane.attach(app.name(), registry.clone()).await?;
        let shared = Arc::new(HubShared {
            name: Arc::from(app.name()),
            options,
            backplane,
            registry,
            limiter,
            result_ids: std::sync::atomic::AtomicU64::new(0),
        });
        Ok(Arc::new(Self { app, shared }))
    }

    /// A handle for sending from outside hub methods.
    pub(crate) fn context(&self) -> HubContext {
        HubContext::new(self.shared.clone())
    }

    /// Runs the hub protocol on a connection until it ends.
    pub(crate) async fn run_session(
        self: Arc<Self>,
        connection: Arc<Connection>,
        inbound: Inbound,
    ) {
        super::session::run(self, connection, inbound).await;
    }
}
