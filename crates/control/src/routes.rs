//! The route table: every endpoint as a method and a path template (also what the OpenAPI document must
//! list, which a test checks), and the parsing of a request's method and path into a [`Route`] with
//! validated, percent-decoded names.

use http::Method;
use hubcast_backplane::{ConnectionId, GroupName, UserId};

/// One endpoint, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Health,
    OpenApi,
    Broadcast(String),
    CloseHub(String),
    OnlineUsers(String),
    GenerateToken(String),
    SendUser(String, UserId),
    UserExists(String, UserId),
    CloseUser(String, UserId),
    LeaveAllGroups(String, UserId),
    SendGroup(String, GroupName),
    GroupExists(String, GroupName),
    GroupConnections(String, GroupName),
    CloseGroup(String, GroupName),
    AddConnection(String, GroupName, ConnectionId),
    RemoveConnection(String, GroupName, ConnectionId),
    UserInGroup(String, GroupName, UserId),
    AddUser(String, GroupName, UserId),
    RemoveUser(String, GroupName, UserId),
    SendConnection(String, ConnectionId),
    ConnectionExists(String, ConnectionId),
    CloseConnection(String, ConnectionId),
}

/// Every endpoint: method and path template, as the OpenAPI document lists them (the tests hold the
/// parser and the document to it).
#[cfg(test)]
pub(crate) const TABLE: &[(&str, &str)] = &[
    ("get", "/api/health"),
    ("get", "/api/openapi.json"),
    ("post", "/api/v1/hubs/{hub}"),
    ("post", "/api/v1/hubs/{hub}/:closeConnections"),
    ("get", "/api/v1/hubs/{hub}/users"),
    ("post", "/api/v1/hubs/{hub}/:generateToken"),
    ("post", "/api/v1/hubs/{hub}/users/{user}"),
    ("get", "/api/v1/hubs/{hub}/users/{user}"),
    ("post", "/api/v1/hubs/{hub}/users/{user}/:closeConnections"),
    ("delete", "/api/v1/hubs/{hub}/users/{user}/groups"),
    ("post", "/api/v1/hubs/{hub}/groups/{group}"),
    ("get", "/api/v1/hubs/{hub}/groups/{group}"),
    ("get", "/api/v1/hubs/{hub}/groups/{group}/connections"),
    (
        "post",
        "/api/v1/hubs/{hub}/groups/{group}/:closeConnections",
    ),
    (
        "put",
        "/api/v1/hubs/{hub}/groups/{group}/connections/{connectionId}",
    ),
    (
        "delete",
        "/api/v1/hubs/{hub}/groups/{group}/connections/{connectionId}",
    ),
    ("get", "/api/v1/hubs/{hub}/groups/{group}/users/{user}"),
    ("put", "/api/v1/hubs/{hub}/groups/{group}/users/{user}"),
    ("delete", "/api/v1/hubs/{hub}/groups/{group}/users/{user}"),
    ("post", "/api/v1/hubs/{hub}/connections/{connectionId}"),
    ("get", "/api/v1/hubs/{hub}/connections/{connectionId}"),
    ("delete", "/api/v1/hubs/{hub}/connections/{connectionId}"),
];

/// The longest group name (as Azure SignalR's).
const MAX_GROUP: usize = 1024;
/// The longest user id or connection id accepted.
const MAX_NAME: usize = 1024;

/// Why a request matched no endpoint or named something invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteError {
    /// No such path.
    NotFound,
    /// The path exists, not with this method; these are allowed.
    MethodNotAllowed(Vec<Method>),
    /// A name in the path is invalid: (error code, message).
    Invalid(&'static str, String),
}

fn invalid(code: &'static str, message: impl Into<String>) -> RouteError {
    RouteError::Invalid(code, message.into())
}

/// Hub names as Azure SignalR accepts them: a letter, then letters, digits or `_`.
pub(crate) fn valid_hub(hub: &str) -> bool {
    let mut chars = hub.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && hub.len() <= 128
}

fn hub(segment: &str) -> Result<String, RouteError> {
    if valid_hub(segment) {
        Ok(segment.to_owned())
    } else {
        Err(invalid(
            "InvalidHubName",
            "Hub names start with a letter and hold only letters, digits and '_' (at most 128).",
        ))
    }
}

fn decode(segment: &str) -> Result<String, RouteError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid("InvalidPath", "The path is not valid UTF-8 once decoded."))
}

fn group(segment: &str) -> Result<GroupName, RouteError> {
    let name = decode(segment)?;
    let length = name.chars().count();
    if (1..=MAX_GROUP).contains(&length) {
        Ok(GroupName::from(name))
    } else {
        Err(invalid(
            "InvalidGroupName",
            "Group names are 1 to 1024 characters long.",
        ))
    }
}

fn named<T: From<String>>(segment: &str, code: &'static str, what: &str) -> Result<T, RouteError> {
    let name = decode(segment)?;
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(invalid(
            code,
            format!("{what} must be 1 to 1024 bytes long."),
        ));
    }
    Ok(T::from(name))
}

fn user(segment: &str) -> Result<UserId, RouteError> {
    named(segment, "InvalidUserId", "User ids")
}

fn connection(segment: &str) -> Result<ConnectionId, RouteError> {
    named(segment, "InvalidConnectionId", "Connection ids")
}

/// Picks the route for `method` among the `(method, route)` choices of one path.
fn pick(method: &Method, choices: Vec<(Method, Route)>) -> Result<Route, RouteError> {
    let allowed = choices.iter().map(|(m, _)| m.clone()).collect();
    choices
        .into_iter()
        .find(|(m, _)| m == method)
        .map(|(_, route)| route)
        .ok_or(RouteError::MethodNotAllowed(allowed))
}

/// Reads a request's method and path (the raw, still percent-encoded path).
pub(crate) fn parse(method: &Method, path: &str) -> Result<Route, RouteError> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    use Method as M;
    match segments.as_slice() {
        ["api", "health"] => pick(method, vec![(M::GET, Route::Health)]),
        ["api", "openapi.json"] => pick(method, vec![(M::GET, Route::OpenApi)]),
        ["api", "v1", "hubs", h] => {
            let h = hub(h)?;
            pick(method, vec![(M::POST, Route::Broadcast(h))])
        }
        ["api", "v1", "hubs", h, ":closeConnections"] => {
            pick(method, vec![(M::POST, Route::CloseHub(hub(h)?))])
        }
        ["api", "v1", "hubs", h, ":generateToken"] => {
            pick(method, vec![(M::POST, Route::GenerateToken(hub(h)?))])
        }
        ["api", "v1", "hubs", h, "users"] => {
            pick(method, vec![(M::GET, Route::OnlineUsers(hub(h)?))])
        }
        ["api", "v1", "hubs", h, "users", u] => {
            let (h, u) = (hub(h)?, user(u)?);
            pick(
                method,
                vec![
                    (M::POST, Route::SendUser(h.clone(), u.clone())),
                    (M::GET, Route::UserExists(h, u)),
                ],
            )
        }
        ["api", "v1", "hubs", h, "users", u, ":closeConnections"] => {
            pick(method, vec![(M::POST, Route::CloseUser(hub(h)?, user(u)?))])
        }
        ["api", "v1", "hubs", h, "users", u, "groups"] => pick(
            method,
            vec![(M::DELETE, Route::LeaveAllGroups(hub(h)?, user(u)?))],
        ),
        ["api", "v1", "hubs", h, "groups", g] => {
            let (h, g) = (hub(h)?, group(g)?);
            pick(
                method,
                vec![
                    (M::POST, Route::SendGroup(h.clone(), g.clone())),
                    (M::GET, Route::GroupExists(h, g)),
                ],
            )
        }
        ["api", "v1", "hubs", h, "groups", g, "connections"] => pick(
            method,
            vec![(M::GET, Route::GroupConnections(hub(h)?, group(g)?))],
        ),
        ["api", "v1", "hubs", h, "groups", g, ":closeConnections"] => pick(
            method,
            vec![(M::POST, Route::CloseGroup(hub(h)?, group(g)?))],
        ),
        ["api", "v1", "hubs", h, "groups", g, "connections", c] => {
            let (h, g, c) = (hub(h)?, group(g)?, connection(c)?);
            pick(
                method,
                vec![
                    (
                        M::PUT,
                        Route::AddConnection(h.clone(), g.clone(), c.clone()),
                    ),
                    (M::DELETE, Route::RemoveConnection(h, g, c)),
                ],
            )
        }
        ["api", "v1", "hubs", h, "groups", g, "users", u] => {
            let (h, g, u) = (hub(h)?, group(g)?, user(u)?);
            pick(
                method,
                vec![
                    (M::GET, Route::UserInGroup(h.clone(), g.clone(), u.clone())),
                    (M::PUT, Route::AddUser(h.clone(), g.clone(), u.clone())),
                    (M::DELETE, Route::RemoveUser(h, g, u)),
                ],
            )
        }
        ["api", "v1", "hubs", h, "connections", c] => {
            let (h, c) = (hub(h)?, connection(c)?);
            pick(
                method,
                vec![
                    (M::POST, Route::SendConnection(h.clone(), c.clone())),
                    (M::GET, Route::ConnectionExists(h.clone(), c.clone())),
                    (M::DELETE, Route::CloseConnection(h, c)),
                ],
            )
        }
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills a template's parameters with sample values.
    fn sample(template: &str) -> String {
        template
            .replace("{hub}", "chat")
            .replace("{user}", "ann")
            .replace("{group}", "room%201")
            .replace("{connectionId}", "n1.abc")
    }

    #[test]
    fn every_table_entry_parses_and_nothing_else_does() {
        for (method, template) in TABLE {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let route = parse(&method, &sample(template));
            assert!(route.is_ok(), "{method} {template}: {route:?}");
        }
        let methods = [Method::GET, Method::POST, Method::PUT, Method::DELETE];
        let templates: std::collections::BTreeSet<&str> = TABLE.iter().map(|(_, t)| *t).collect();
        for template in templates {
            for method in &methods {
                let listed = TABLE
                    .iter()
                    .any(|(m, t)| *t == template && m.eq_ignore_ascii_case(method.as_str()));
                let parsed = parse(method, &sample(template));
                assert_eq!(parsed.is_ok(), listed, "{method} {template}");
                if !listed {
                    assert!(matches!(parsed, Err(RouteError::MethodNotAllowed(_))));
                }
            }
        }
    }

    #[test]
    fn names_are_decoded_and_validated() {
        assert_eq!(
            parse(&Method::POST, "/api/v1/hubs/chat/groups/room%201"),
            Ok(Route::SendGroup("chat".into(), "room 1".into()))
        );
        let long_group = format!("/api/v1/hubs/chat/groups/{}", "g".repeat(1025));
        for (path, code) in [
            ("/api/v1/hubs/1chat", "InvalidHubName"),
            ("/api/v1/hubs/ch-at", "InvalidHubName"),
            (long_group.as_str(), "InvalidGroupName"),
            ("/api/v1/hubs/chat/users/%FF", "InvalidPath"),
        ] {
            match parse(&Method::POST, path) {
                Err(RouteError::Invalid(got, _)) => assert_eq!(got, code, "{path}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        assert_eq!(parse(&Method::GET, "/api/v2/x"), Err(RouteError::NotFound));
        assert_eq!(
            parse(&Method::GET, "/api/v1/hubs/chat/"),
            Err(RouteError::MethodNotAllowed(vec![Method::POST]))
        );
    }
}
