//! Which Redis to use, read from a URL, and how to open its connections: a standalone server
//! (`redis://[user:password@]host:port[/db]`), a Sentinel-managed master
//! (`redis+sentinel://[user:password@]host:port[,host:port…]/service[/db]`) or a Cluster
//! (`redis+cluster://[user:password@]host:port[,host:port…]`). The same credentials are used for every
//! Redis node; sentinels are contacted without them.

use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo, ProtocolVersion};

/// Why a backplane URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Redis URL '{url}': {reason}")]
pub struct UrlError {
    url: String,
    reason: String,
}

/// A Redis deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server.
    Standalone(String),
    /// A master found through sentinels.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        service: String,
        db: i64,
        username: Option<String>,
        password: Option<String>,
    },
    /// A cluster, reached through any of its nodes.
    Cluster(Vec<String>),
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
        let fail = |reason: String| UrlError {
            url: redact(url),
            reason,
        };
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            url.into_connection_info()
                .map_err(|e| fail(e.to_string()))?;
            return Ok(Self::Standalone(url.to_owned()));
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            fail("expected redis://, redis+sentinel:// or redis+cluster://".into())
        })?;
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (Some(credentials), rest),
            None => (None, rest),
        };
        let (list, path) = rest.split_once('/').unwrap_or((rest, ""));
        let nodes = hosts(list).map_err(fail)?;
        let userinfo = credentials.map(|c| format!("{c}@")).unwrap_or_default();
        match scheme {
            "redis+cluster" => Ok(Self::Cluster(
                nodes
                    .iter()
                    .map(|(host, port)| format!("redis://{userinfo}{host}:{port}"))
                    .collect(),
            )),
            "redis+sentinel" => {
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
                let (username, password) = match credentials {
                    Some(c) => match c.split_once(':') {
                        Some((user, password)) => (
                            Some(user.to_owned()).filter(|u| !u.is_empty()),
                            Some(password.to_owned()),
                        ),
                        None => (Some(c.to_owned()), None),
                    },
                    None => (None, None),
                };
                Ok(Self::Sentinel {
                    sentinels: nodes,
                    service: service.to_owned(),
                    db,
                    username,
                    password,
                })
            }
            other => Err(fail(format!("unknown scheme '{other}'"))),
        }
    }

    /// The sentinel addresses, as redis-rs wants them.
    pub(crate) fn sentinel_addrs(sentinels: &[(String, u16)]) -> Vec<ConnectionAddr> {
        sentinels
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port))
            .collect()
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
            Ok(Topology::Sentinel {
                sentinels: vec![("s1".into(), 26379), ("s2".into(), 26380)],
                service: "mymaster".into(),
                db: 3,
                username: Some("u".into()),
                password: Some("p".into()),
            })
        );
        for bad in [
            "memory",
            "http://x:1",
            "redis+sentinel://s1:26379",
            "redis+cluster://a",
            "redis+cluster://a:port",
            "redis+sentinel://s:1/m/x",
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
