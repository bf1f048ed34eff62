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
    let fail = |reason: &str| UrlError {
        url: redact(url),
        reason: reason.to_owned(),
    };
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
            Topology::Sentinel {
                password: p,
                username,
                ..
            } => {
                assert_eq!(p.as_deref(), Some(password));
                assert_eq!(username, None);
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
