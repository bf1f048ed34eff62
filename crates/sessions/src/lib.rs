//! # hubcast-sessions
//!
//! Cookie sign-in for browser pages (the seed's cookie option): a session cookie carrying a signed token,
//! HttpOnly and SameSite=Lax (and Secure when the page is served over https), accepted by negotiate and
//! the transports like a bearer token. Also the embedded dev login, for trying hubcast without an
//! identity provider.
//!
//! Session tokens are a kind of their own: signed with a key derived (HKDF-SHA256) from the session
//! secret, never with the secret itself, and carrying their own `iss`, `aud`, `typ` and a session id
//! (`sid`). A token minted with the JWT secret for some other audience is therefore never accepted as a
//! session, and a session token is never accepted by the configured bearer validator. A session ends at
//! the presented token's `exp` or after the session lifetime, whichever is first; logout revokes its
//! `sid` (on every node when the revocations are shared, see [`Revocations`]).
//!
//! Routes (mounted by [`SessionCookies::routes`]):
//! - `POST /auth/login` with a valid bearer token: sets the session cookie for that user;
//! - `POST /auth/logout`: revokes the session and clears the cookie (204);
//! - `POST /auth/dev-login?user=NAME[&role=ROLE]` (dev mode only): signs NAME in without credentials,
//!   sets the cookie;
//! - `GET /auth/session`: `{"user": NAME or null, "roles": [...], "devLogin": bool}`, who the
//!   request's cookie signs in (so a page resumes after a reload), with the roles, and whether the dev
//!   login is on.
//!
//! Sign-ins answer `{"accessToken": …, "user": …}`, the session token also usable as a bearer token.
//!
//! An application of the gateway's authentication seam ([`SessionAuth`]): the gateway asks it for the
//! user of a session token or cookie, and the binary mounts its routes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hkdf::Hkdf;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hubcast_gateway::auth::{JwtAuth, SessionAuth, User, authorization_header};
use hubcast_http::{Body, BoxFuture, RouteHandler, bytes as response_bytes, empty};
use hyper::body::Incoming;
use jsonwebtoken::{EncodingKey, Header};
use sha2::Sha256;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "hubcast_session";

/// The `iss` of session tokens.
const SESSION_ISSUER: &str = "hubcast";
/// The `aud` of session tokens.
const SESSION_AUDIENCE: &str = "hubcast-session";
/// The `typ` claim of session tokens.
const SESSION_TYPE: &str = "session";

/// Revoked session ids, each until the time its token expires anyway.
pub trait Revocations: Send + Sync + 'static {
    /// Revokes `session` until `until` (seconds since the Unix epoch).
    fn revoke<'a>(&'a self, session: &'a str, until: u64) -> BoxFuture<'a, ()>;
    /// Whether `session` was revoked.
    fn is_revoked<'a>(&'a self, session: &'a str) -> BoxFuture<'a, bool>;
}

/// Revocations kept in this process (one node, or the fallback of a shared store).
#[derive(Debug, Default)]
pub struct LocalRevocations {
    revoked: Mutex<HashMap<String, u64>>,
}

impl LocalRevocations {
    /// Revokes `session` until `until`, forgetting the revocations that expired.
    pub fn revoke_now(&self, session: &str, until: u64) {
        let now = jsonwebtoken::get_current_timestamp();
        if let Ok(mut revoked) = self.revoked.lock() {
            revoked.retain(|_, until| *until >= now);
            revoked.insert(session.to_owned(), until);
        }
    }

    /// Whether `session` is revoked here.
    pub fn contains(&self, session: &str) -> bool {
        self.revoked
            .lock()
            .is_ok_and(|revoked| revoked.contains_key(session))
    }
}

impl Revocations for LocalRevocations {
    fn revoke<'a>(&'a self, session: &'a str, until: u64) -> BoxFuture<'a, ()> {
        self.revoke_now(session, until);
        Box::pin(async {})
    }

    fn is_revoked<'a>(&'a self, session: &'a str) -> BoxFuture<'a, bool> {
        let revoked = self.contains(session);
        Box::pin(async move { revoked })
    }
}

/// Issues and reads session cookies.
pub struct SessionCookies {
    signer: EncodingKey,
    validator: JwtAuth,
    lifetime: Duration,
    dev_login: bool,
    revocations: Arc<dyn Revocations>,
}

impl std::fmt::Debug for SessionCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCookies")
            .field("lifetime", &self.lifetime)
            .field("dev_login", &self.dev_login)
            .finish_non_exhaustive()
    }
}

/// The key session tokens are signed with: HKDF-SHA256 of the session secret, so it differs from any
/// key the same secret is used as directly.
fn session_key(secret: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 8,160: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(b"hubcast session tokens"), secret)
        .expand(b"hubcast-session-v1", &mut key);
    key
}

impl SessionCookies {
    /// Cookies signed (HS256) with a key derived from `secret`, valid for `lifetime` at most. Every node
    /// of a cluster needs the same secret. Revocations are kept in this process until
    /// [`with_revocations`](Self::with_revocations) shares them.
    pub fn new(secret: &[u8], lifetime: Duration) -> Self {
        let key = session_key(secret);
        Self {
            signer: EncodingKey::from_secret(&key),
            validator: JwtAuth::hmac(&key)
                .with_issuer(SESSION_ISSUER)
                .with_audience(SESSION_AUDIENCE),
            lifetime,
            dev_login: false,
            revocations: Arc::new(LocalRevocations::default()),
        }
    }

    /// Where logouts record revoked sessions (shared by every node, on a cluster).
    pub fn with_revocations(mut self, revocations: Arc<dyn Revocations>) -> Self {
        self.revocations = revocations;
        self
    }

    /// Enables `POST /auth/dev-login` (anyone can sign in as anyone: development only).
    pub fn with_dev_login(mut self) -> Self {
        self.dev_login = true;
        self
    }

    /// Whether the dev login is on.
    pub fn dev_login(&self) -> bool {
        self.dev_login
    }

    /// Signs a session token for `user` with `roles`, ending at the session lifetime or at `not_after`
    /// (seconds since the Unix epoch), whichever is first. Returns the token and its `exp`.
    pub fn issue(
        &self,
        user: &str,
        roles: &[String],
        not_after: Option<u64>,
    ) -> Option<(String, u64)> {
        let now = jsonwebtoken::get_current_timestamp();
        let exp = (now + self.lifetime.as_secs()).min(not_after.unwrap_or(u64::MAX));
        let session = hubcast_protocol::ids::random_id().ok()?;
        let claims = serde_json::json!({
            "sub": user,
            "role": roles,
            "iat": now,
            "exp": exp,
            "iss": SESSION_ISSUER,
            "aud": SESSION_AUDIENCE,
            "typ": SESSION_TYPE,
            "sid": session,
        });
        let token = jsonwebtoken::encode(&Header::default(), &claims, &self.signer).ok()?;
        Some((token, exp))
    }

    /// The user of a session token (a bearer token or the cookie's), unless it is invalid or revoked.
    pub async fn validate(&self, token: &str) -> Option<User> {
        let user = self
            .validator
            .validate(token)
            .inspect_err(|error| tracing::debug!(%error, "refused a session token"))
            .ok()?;
        let session = user.claims.get("sid").and_then(serde_json::Value::as_str)?;
        if user.claims.get("typ").and_then(serde_json::Value::as_str) != Some(SESSION_TYPE)
            || self.revocations.is_revoked(session).await
        {
            return None;
        }
        Some(user)
    }

    /// The token of the request's session cookie, if it has one.
    fn cookie_token(headers: &http::HeaderMap) -> Option<String> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == COOKIE_NAME)
            .map(|c| c.value().to_owned())
    }

    /// The user of the request's session cookie, if it carries a valid one.
    pub async fn user(&self, headers: &http::HeaderMap) -> Option<User> {
        let token = Self::cookie_token(headers)?;
        self.validate(&token).await
    }

    /// Revokes the session of the request's cookie (or of its bearer session token).
    async fn revoke(&self, headers: &http::HeaderMap) {
        let tokens = Self::cookie_token(headers)
            .into_iter()
            .chain(authorization_header(headers).map(str::to_owned));
        for token in tokens {
            let Ok(user) = self.validator.validate(&token) else {
                continue;
            };
            if let (Some(session), Some(exp)) = (
                user.claims.get("sid").and_then(serde_json::Value::as_str),
                user.expires_at,
            ) {
                self.revocations.revoke(session, exp).await;
            }
        }
    }

    fn set_cookie(token: &str, max_age: u64, secure: bool) -> Option<HeaderValue> {
        let mut cookie = cookie::Cookie::build((COOKIE_NAME, token.to_owned()))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(
                i64::try_from(max_age).unwrap_or(i64::MAX),
            ));
        if secure {
            cookie = cookie.secure(true);
        }
        HeaderValue::from_str(&cookie.build().to_string()).ok()
    }

    fn clear_cookie(secure: bool) -> HeaderValue {
        let value = format!(
            "{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            if secure { "; Secure" } else { "" }
        );
        HeaderValue::from_str(&value)
            .unwrap_or_else(|_| HeaderValue::from_static("hubcast_session=; Max-Age=0"))
    }

    /// The `/auth/…` routes; `bearer` validates the tokens `POST /auth/login` exchanges for a cookie.
    pub fn routes(self: Arc<Self>, bearer: Option<Arc<JwtAuth>>) -> RouteHandler {
        Arc::new(move |request: Request<Incoming>| {
            let sessions = self.clone();
            let bearer = bearer.clone();
            Box::pin(async move { sessions.handle(&request, bearer.as_deref()).await })
        })
    }

    async fn handle(
        &self,
        request: &Request<Incoming>,
        bearer: Option<&JwtAuth>,
    ) -> Response<Body> {
        let path = request.uri().path().to_ascii_lowercase();
        if path.trim_end_matches('/') == "/auth/session" {
            if request.method() != Method::GET {
                return empty(StatusCode::METHOD_NOT_ALLOWED);
            }
            let user = self.user(request.headers()).await;
            let roles = user.as_ref().map(|u| u.roles.clone()).unwrap_or_default();
            let user = user.map(|u| u.id.to_string());
            let body =
                serde_json::json!({ "user": user, "roles": roles, "devLogin": self.dev_login })
                    .to_string();
            let mut response =
                response_bytes(StatusCode::OK, "application/json", Bytes::from(body));
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return response;
        }
        if request.method() != Method::POST {
            return empty(StatusCode::METHOD_NOT_ALLOWED);
        }
        // Behind a TLS-terminating proxy the page is https: mark the cookie Secure.
        let secure = request
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
            || request.uri().scheme_str() == Some("https");
        let (name, roles, not_after) = match path.trim_end_matches('/') {
            "/auth/logout" => {
                self.revoke(request.headers()).await;
                let mut response = empty(StatusCode::NO_CONTENT);
                response
                    .headers_mut()
                    .insert(header::SET_COOKIE, Self::clear_cookie(secure));
                return response;
            }
            "/auth/login" => {
                // The header only: tokens in URLs are for hub paths, where browsers have no choice.
                let user = bearer.and_then(|auth| {
                    let token = authorization_header(request.headers())?;
                    auth.validate(token).ok()
                });
                match user {
                    // The session ends when the presented token would have.
                    Some(user) => (user.id.to_string(), user.roles, user.expires_at),
                    None => return empty(StatusCode::UNAUTHORIZED),
                }
            }
            "/auth/dev-login" if self.dev_login => {
                let query = request.uri().query().unwrap_or("");
                let name = hubcast_protocol::negotiate::query_param(query, "user")
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty() && v.len() <= 128);
                let Some(name) = name else {
                    return response_bytes(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        Bytes::from_static(b"user required"),
                    );
                };
                let roles = hubcast_protocol::negotiate::query_param(query, "role")
                    .map(|r| vec![r.into_owned()])
                    .unwrap_or_default();
                (name, roles, None)
            }
            _ => return empty(StatusCode::NOT_FOUND),
        };
        let Some((token, exp)) = self.issue(&name, &roles, not_after) else {
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let body = serde_json::json!({ "accessToken": token, "user": name }).to_string();
        let mut response = response_bytes(StatusCode::OK, "application/json", Bytes::from(body));
        let max_age = exp.saturating_sub(jsonwebtoken::get_current_timestamp());
        if let Some(cookie) = Self::set_cookie(&token, max_age, secure) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        response
    }
}

impl SessionAuth for SessionCookies {
    fn validate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<User>> {
        Box::pin(SessionCookies::validate(self, token))
    }

    fn user<'a>(&'a self, headers: &'a http::HeaderMap) -> BoxFuture<'a, Option<User>> {
        Box::pin(SessionCookies::user(self, headers))
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::EncodingKey;
    use serde_json::json;

    use super::*;

    fn sign(claims: serde_json::Value, key: &[u8]) -> String {
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(key)).unwrap()
    }

    #[tokio::test]
    async fn only_session_tokens_are_sessions() {
        let sessions = SessionCookies::new(b"shared secret", Duration::from_secs(3600));
        let (token, _) = sessions.issue("ann", &[], None).unwrap();
        assert_eq!(sessions.validate(&token).await.unwrap().id.as_str(), "ann");
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        // Signed with the secret itself, even with the session claims: not a session.
        let forged = json!({"sub": "ann", "exp": exp, "iss": SESSION_ISSUER, "aud": SESSION_AUDIENCE,
            "typ": SESSION_TYPE, "sid": "x"});
        assert!(
            sessions
                .validate(&sign(forged, b"shared secret"))
                .await
                .is_none()
        );
        // The derived key without the session claims: not a session either.
        let key = session_key(b"shared secret");
        let bare = json!({"sub": "ann", "exp": exp});
        assert!(sessions.validate(&sign(bare, &key)).await.is_none());
        // And a session token is no bearer token of the configured validator.
        assert!(JwtAuth::hmac(b"shared secret").validate(&token).is_err());
    }

    #[tokio::test]
    async fn sessions_end_at_the_presented_exp_and_when_revoked() {
        let sessions = SessionCookies::new(b"s", Duration::from_secs(24 * 3600));
        let soon = jsonwebtoken::get_current_timestamp() + 2;
        let (token, exp) = sessions.issue("ann", &[], Some(soon)).unwrap();
        assert_eq!(exp, soon);
        let user = sessions.validate(&token).await.unwrap();
        assert_eq!(user.expires_at, Some(soon));
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE_NAME}={token}")).unwrap(),
        );
        assert!(sessions.user(&headers).await.is_some());
        sessions.revoke(&headers).await;
        assert!(sessions.user(&headers).await.is_none());
        assert!(sessions.validate(&token).await.is_none());
    }
}
