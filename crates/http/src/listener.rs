//! Accepting TCP connections without letting clients starve the node: a listen backlog deep enough for
//! a reconnect storm, caps on concurrent connections
//! (all of them, and per client address) applied at accept, a reserve of file descriptors kept free for
//! the admin listener and for outgoing connections (Redis, PostgreSQL), the HTTP/1 limits every
//! connection is served with (header-read and idle timeout, header size), and a rate-limited log of
//! accept errors (a node out of descriptors would otherwise log thousands of lines a second).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::HttpMetrics;
use crate::throttle::LogThrottle;

/// Limits of the HTTP listener (the `[server]` table of the configuration file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// A connection must send a whole request head within this time, and a kept-alive connection
    /// with no request in flight is closed after it (slowloris, idle sockets).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers); larger ones get 431.
    pub max_header_bytes: usize,
    /// Concurrent TCP connections on the listener; 0 sets it from the process's file-descriptor
    /// limit, less `fd_headroom`.
    pub max_connections: usize,
    /// Concurrent TCP connections from one client address; 0 for no cap (the default: behind a proxy
    /// every client has the proxy's address).
    pub max_connections_per_ip: usize,
    /// File descriptors kept free for everything that is not a client connection.
    pub fd_headroom: usize,
    /// Connections the kernel completes and queues before the server accepts them (`listen`'s
    /// backlog; Linux caps it at `net.core.somaxconn`). A connect storm past it makes clients resend
    /// their SYN after a second.
    pub listen_backlog: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            max_connections: 0,
            max_connections_per_ip: 0,
            fd_headroom: 128,
            listen_backlog: 4096,
        }
    }
}

/// Binds a listener at `address` with room for `backlog` connections waiting to be accepted (tokio's
/// `TcpListener::bind` leaves 128, which a reconnect storm after a rollout overflows).
pub async fn bind(address: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind`: a restarted server may bind while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

impl ServerLimits {
    /// The global cap: `max_connections`, else the descriptor limit less the headroom.
    pub fn connection_cap(&self) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        match rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
            Some(limit) => usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(self.fd_headroom)
                .max(1),
            None => usize::MAX,
        }
    }

    /// The HTTP/1 connection builder with these limits.
    pub(crate) fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_header_size(self.max_header_bytes);
        builder
    }
}

/// Counts the open connections, in all and per address.
pub(crate) struct Admission {
    metrics: HttpMetrics,
    cap: usize,
    per_ip: usize,
    open: AtomicUsize,
    by_address: DashMap<IpAddr, usize>,
    refused: AtomicU64,
}

/// One admitted connection; dropping it gives the place back.
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    address: IpAddr,
}

/// An admitted connection's place, in the extensions of its requests: a WebSocket upgrade takes it
/// along, so the socket counts against the caps for as long as it is open, not only its HTTP part.
#[derive(Clone)]
pub struct Place {
    _held: Arc<Admitted>,
}

impl Place {
    pub(crate) fn new(admitted: Admitted) -> Self {
        Self {
            _held: Arc::new(admitted),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::Relaxed);
        if self.admission.per_ip > 0
            && let dashmap::Entry::Occupied(mut entry) =
                self.admission.by_address.entry(self.address)
        {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

impl Admission {
    pub(crate) fn new(limits: &ServerLimits, metrics: HttpMetrics) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            cap: limits.connection_cap(),
            per_ip: limits.max_connections_per_ip,
            open: AtomicUsize::new(0),
            by_address: DashMap::new(),
            refused: AtomicU64::new(0),
        })
    }

    /// Takes a place for a connection from `address`, or refuses it (over a cap).
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Option<Admitted> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.cap {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return self.refuse("max_connections");
        }
        if self.per_ip > 0 {
            let mut count = self.by_address.entry(address).or_insert(0);
            if *count >= self.per_ip {
                drop(count);
                self.open.fetch_sub(1, Ordering::Relaxed);
                return self.refuse("max_connections_per_ip");
            }
            *count += 1;
        }
        Some(Admitted {
            admission: self.clone(),
            address,
        })
    }

    fn refuse(&self, reason: &'static str) -> Option<Admitted> {
        self.metrics
            .refused_connections
            .with_label_values(&[reason])
            .inc();
        let refused = self.refused.fetch_add(1, Ordering::Relaxed);
        if refused.is_power_of_two() {
            tracing::warn!(
                reason,
                refused = refused + 1,
                "refusing TCP connections over the cap"
            );
        }
        None
    }
}

/// Accepts the next connection, retrying after errors (out of descriptors, say) with a back-off and a
/// log line at most once a second.
pub(crate) async fn accept(listener: &TcpListener, errors: &ErrorLog) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(error) => {
                errors.record(&error);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Accept errors, logged at most once a second with the number left out.
pub(crate) struct ErrorLog {
    metrics: HttpMetrics,
    throttle: LogThrottle,
}

impl ErrorLog {
    pub(crate) fn new(metrics: HttpMetrics) -> Self {
        Self {
            metrics,
            throttle: LogThrottle::default(),
        }
    }

    fn record(&self, error: &std::io::Error) {
        self.metrics.accept_errors.inc();
        if let Some(suppressed) = self.throttle.admit() {
            tracing::warn!(%error, suppressed, "accept failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_backlog_holds_a_storm_of_connections_not_yet_accepted() {
        // Nothing accepts: every connect below completes only if the kernel queues it. With tokio's
        // default of 128, connects past the 129th would wait for a SYN retry and time out here.
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), 1024)
            .await
            .unwrap();
        let address = listener.local_addr().unwrap();
        let mut connects = tokio::task::JoinSet::new();
        for _ in 0..400 {
            connects.spawn(async move {
                let connect = TcpStream::connect(address);
                tokio::time::timeout(Duration::from_millis(900), connect).await
            });
        }
        let streams = connects.join_all().await;
        let connected = streams.iter().filter(|s| matches!(s, Ok(Ok(_)))).count();
        assert_eq!(connected, 400);
    }

    #[test]
    fn caps_count_and_release() {
        let limits = ServerLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..ServerLimits::default()
        };
        let admission = Admission::new(&limits, HttpMetrics::new());
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let first = admission.admit(a);
        let second = admission.admit(a);
        assert!(first.is_some() && second.is_some());
        assert!(admission.admit(a).is_none(), "per address");
        let third = admission.admit(b);
        assert!(third.is_some());
        assert!(admission.admit(b).is_none(), "global");
        drop(first);
        let again = admission.admit(a);
        assert!(again.is_some());
        assert_eq!(admission.open.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_default_cap_leaves_the_headroom() {
        let limits = ServerLimits::default();
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap();
        assert_eq!(
            limits.connection_cap() as u64,
            limit - limits.fd_headroom as u64
        );
    }
}
