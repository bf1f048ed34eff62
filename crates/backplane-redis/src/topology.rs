//! Which Redis to use, read from a URL, and how to open its connections: a standalone server
//! (`redis://[user:password@]host:port[/db]`), a Sentinel-managed master
//! (`redis+sentinel://[user:password@]host:port[,host:port…]/service[/db]`) or a Cluster
//! (`redis+cluster://[user:password@]host:port[,host:port…]`); `rediss…` for each over TLS (with a
//! Sentinel: TLS to the sentinels and to the master). The URL's credentials are used for every Redis
//! node; sentinels get their own ([`Sentinels::auth`]), as Redis keeps them apart.

use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo, ProtocolVersion, TlsCertificates, TlsMode};

/// Why a backplane URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Redis URL '{url}': {reason}")]
pub struct UrlError {
    url: String,
    reason: String,
}

impl UrlError {
    pub(crate) fn new(url: &str, reason: &str) -> Self {
        Self {
            url: redact(url),
            reason: reason.to_owned(),
        }
    }
}

/// A Redis deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server.
    Standalone(String),
    /// A master found through sentinels.
    Sentinel(Sentinels),
    /// A cluster, reached through any of its nodes (`rediss://` URLs over TLS).
    Cluster(Vec<String>),
}

/// A master found through sentinels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sentinels {
    pub(crate) addresses: Vec<(String, u16)>,
    pub(crate) service: String,
    pub(crate) db: i64,
    /// The master's (and its replicas') credentials.
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// The sentinels' own credentials (`requirepass` / ACL of the sentinel processes), if they ask.
    pub(crate) auth: (Option<String>, Option<String>),
    /// TLS to the sentinels and to the master.
    pub(crate) tls: bool,
}

impl Sentinels {
    /// A client that asks the sentinels for the master, then connects to it with `protocol`; with TLS
    /// both hops check the server's certificate against `certificates` (or the system's roots).
    pub(crate) fn client(
        &self,
        certificates: Option<&TlsCertificates>,
        protocol: ProtocolVersion,
    ) -> redis::RedisResult<SentinelClient> {
        let addresses = self.addresses.iter().map(|(host, port)| match self.tls {
            true => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
            false => ConnectionAddr::Tcp(host.clone(), *port),
        });
        let mut builder =
            SentinelClientBuilder::new(addresses, &self.service, SentinelServerType::Master)?
                .set_client_to_redis_protocol(protocol)
                .set_client_to_redis_db(self.db);
        if self.tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(certificates) = certificates {
                builder = builder
                    .set_client_to_redis_certificates(certificates.clone())
                    .set_client_to_sentinel_certificates(certificates.clone());
            }
        }
        if let Some(username) = &self.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(username) = &self.auth.0 {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = &self.auth.1 {
            builder = builder.set_client_to_sentinel_password(password);
        }
        builder.build()
    }
}

/// How long connecting and each reply may take before the link is considered broken.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(3);

fn hosts(list: &str) -> Result<Vec<(String, u16)>, String> {
    list.split(',')
        .map(|entry| {
            let (host, port) = entry
                .rsplit_once(':')
                .ok_or_else(|| format!("'{entry}' has no port"))?;
            let port = port
                .parse()
                .map_err(|_| format!("'{port}' is not a port"))?;
            if host.is_empty() {
                return Err(format!("'{entry}' has no host"));
            }
            Ok((host.to_owned(), port))
        })
        .collect()
}

impl Topology {
    /// Reads a backplane URL.
    pub(crate) fn parse(url: &str) -> Result<Self, UrlError> {
        let fail = |reason: String| UrlError::new(url, &reason);
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            url.into_connection_info()
                .map_err(|e| fail(e.to_string()))?;
            return Ok(Self::Standalone(url.to_owned()));
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            fail("expected redis[s]://, redis[s]+sentinel:// or redis[s]+cluster://".into())
        })?;
        let (tls, scheme) = match scheme.strip_prefix("rediss+") {
            Some(kind) => (true, kind),
            None => (false, scheme.strip_prefix("redis+").unwrap_or(scheme)),
        };
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (Some(credentials), rest),
            None => (None, rest),
        };
        let (list, path) = rest.split_once('/').unwrap_or((rest, ""));
        let nodes = hosts(list).map_err(fail)?;
        let userinfo = credentials.map(|c| format!("{c}@")).unwrap_or_default();
        let node_scheme = if tls { "rediss" } else { "redis" };
        match scheme {
            "cluster" => Ok(Self::Cluster(
                nodes
                    .iter()
                    .map(|(host, port)| format!("{node_scheme}://{userinfo}{host}:{port}"))
                    .collect(),
            )),
            "sentinel" => {
                let mut parts = path.split('/');
                let service = parts.next().unwrap_or_default();
                if service.is_empty() {
                    return Err(fail("the sentinel service name is missing".into()));
                }
                let db = match parts.next() {
                    Some(db) if !db.is_empty() => db
                        .parse()
                        .map_err(|_| fail(format!("'{db}' is not a database")))?,
                    _ => 0,
                };
                // Percent-encoded in the URL, as in the standalone and cluster forms.
                let decode = |part: &str| {
                    percent_encoding::percent_decode_str(part)
                        .decode_utf8()
                        .map(|v| v.into_owned())
                        .map_err(|_| fail("the credentials are not UTF-8 once decoded".into()))
                };
                let (username, password) = match credentials {
                    Some(c) => match c.split_once(':') {
                        Some((user, password)) => (
                            Some(decode(user)?).filter(|u| !u.is_empty()),
                            Some(decode(password)?),
                        ),
                        None => (Some(decode(c)?), None),
                    },
                    None => (None, None),
                };
                Ok(Self::Sentinel(Sentinels {
                    addresses: nodes,
                    service: service.to_owned(),
                    db,
                    username,
                    password,
                    auth: (None, None),
                    tls,
                }))
            }
            _ => Err(fail(format!(
                "unknown scheme '{}'",
                url.split("://").next().unwrap_or_default()
            ))),
        }
    }

    /// A cluster client (`protocol`, with `certificates` over TLS), configured further by `more`.
    pub(crate) fn cluster_client(
        nodes: &[String],
        certificates: Option<&TlsCertificates>,
        more: impl FnOnce(redis::cluster::ClusterClientBuilder) -> redis::cluster::ClusterClientBuilder,
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
        let mut builder = redis::cluster::ClusterClient::builder(nodes.to_vec());
        if let Some(certificates) = certificates {
            builder = builder.certs(certificates.clone());
        }
        more(builder).build()
    }
}

/// A client for `info`, with `certificates` (CA, client certificate) when given.
pub(crate) fn client(
    info: impl IntoConnectionInfo,
    certificates: Option<&redis::TlsCertificates>,
) -> redis::RedisResult<redis::Client> {
    match certificates {
        Some(certificates) => redis::Client::build_with_tls(info, certificates.clone()),
        None => redis::Client::open(info),
    }
}

/// A standalone URL's connection info with RESP3 (pub/sub pushes on a multiplexed connection).
pub(crate) fn resp3(url: &str) -> redis::RedisResult<redis::ConnectionInfo> {
    let info = url.into_connection_info()?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Ok(info.set_redis_settings(settings))
}

/// Characters left as they are in the user-info part of a URL (RFC 3986 unreserved).
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `url` with `username` and `password` put into it, percent-encoded so that any characters work
/// (generated secrets hold `/ + = # @ :`). A URL that carries credentials of its own is refused: the
/// password lives in one place.
pub(crate) fn with_credentials(
    url: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<String, UrlError> {
    if username.is_none() && password.is_none() {
        return Ok(url.to_owned());
    }
    let fail = |reason: &str| UrlError::new(url, reason);
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| fail("expected redis://, redis+sentinel:// or redis+cluster://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(fail(
            "the URL carries credentials and a username or password is set apart: give them in one place",
        ));
    }
    let encode = |v: &str| percent_encoding::utf8_percent_encode(v, USERINFO).to_string();
    let user = username.map(encode).unwrap_or_default();
    let userinfo = match password {
        Some(password) => format!("{user}:{}", encode(password)),
        None => user,
    };
    Ok(format!("{scheme}://{userinfo}@{rest}"))
}

/// The URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (credentials, host) = rest.rsplit_once('@').unwrap_or(("", rest));
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_set_apart_reach_every_topology_whatever_their_characters() {
        let password = "p/a+s=s#w@o:r d%";
        let url = with_credentials("redis://h:6379/1", Some("app"), Some(password)).unwrap();
        let info = url.as_str().into_connection_info().unwrap();
        assert_eq!(info.redis_settings().password(), Some(password));
        assert_eq!(info.redis_settings().username(), Some("app"));
        assert!(!redact(&url).contains("s#w"), "{}", redact(&url));
        let url = with_credentials("redis+sentinel://s1:26379/main", None, Some(password)).unwrap();
        match Topology::parse(&url).unwrap() {
            Topology::Sentinel(sentinels) => {
                assert_eq!(sentinels.password.as_deref(), Some(password));
                assert_eq!(sentinels.username, None);
            }
            other => panic!("{other:?}"),
        }
        let url = with_credentials("redis+cluster://a:7000,b:7001", None, Some(password)).unwrap();
        let Topology::Cluster(nodes) = Topology::parse(&url).unwrap() else {
            panic!("not a cluster")
        };
        for node in nodes {
            let info = node.as_str().into_connection_info().unwrap();
            assert_eq!(info.redis_settings().password(), Some(password));
        }
        assert!(with_credentials("redis://u:p@h:6379", None, Some("x")).is_err());
        assert_eq!(
            with_credentials("redis://h:6379", None, None).unwrap(),
            "redis://h:6379"
        );
    }

    #[test]
    fn urls_name_the_topology() {
        assert_eq!(
            Topology::parse("redis://127.0.0.1:6379/2"),
            Ok(Topology::Standalone("redis://127.0.0.1:6379/2".into()))
        );
        assert_eq!(
            Topology::parse("redis+cluster://a:7000,b:7001"),
            Ok(Topology::Cluster(vec![
                "redis://a:7000".into(),
                "redis://b:7001".into()
            ]))
        );
        assert_eq!(
            Topology::parse("redis+sentinel://u:p@s1:26379,s2:26380/mymaster/3"),
            Ok(Topology::Sentinel(Sentinels {
                addresses: vec![("s1".into(), 26379), ("s2".into(), 26380)],
                service: "mymaster".into(),
                db: 3,
                username: Some("u".into()),
                password: Some("p".into()),
                auth: (None, None),
                tls: false,
            }))
        );
        assert_eq!(
            Topology::parse("rediss+cluster://a:7000,b:7001"),
            Ok(Topology::Cluster(vec![
                "rediss://a:7000".into(),
                "rediss://b:7001".into()
            ]))
        );
        match Topology::parse("rediss+sentinel://s1:26379/mymaster") {
            Ok(Topology::Sentinel(sentinels)) => assert!(sentinels.tls),
            other => panic!("{other:?}"),
        }
        for bad in [
            "memory",
            "http://x:1",
            "redis+sentinel://s1:26379",
            "redis+cluster://a",
            "redis+cluster://a:port",
            "redis+sentinel://s:1/m/x",
            "rediss+shard://a:1",
            "redis+rediss://a:1",
        ] {
            assert!(Topology::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_never_show_in_errors() {
        let error = Topology::parse("redis+sentinel://u:secret@s1:1").unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
