//! Who a request comes from, as authentication established it. Transports bind it to a connection and
//! hubs read it from their context; it lives here so neither depends on the other for it.

use hubcast_backplane::UserId;

/// An authenticated user, as the authentication layer established it.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// The user id (`Clients.User` targets it).
    pub id: UserId,
    /// Roles, for per-method authorization.
    pub roles: Vec<String>,
    /// When the credential expires (seconds since the Unix epoch), if it says.
    pub expires_at: Option<u64>,
    /// Every claim of the credential.
    pub claims: serde_json::Map<String, serde_json::Value>,
}
