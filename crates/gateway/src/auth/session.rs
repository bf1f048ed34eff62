//! Cookie sign-in for browser pages (the seed's cookie option): a session cookie carrying a signed token,
//! HttpOnly and SameSite=Lax (and Secure when the page is served over https), accepted by negotiate and
//! the transports like a bearer token. Also the embedded dev login, for trying hubcast without an
//! identity provider.
//!
//! Routes (mounted by [`SessionCookies::routes`]):
//! - `POST /auth/login` with a valid bearer token: sets the session cookie for that user;
//! - `POST /auth/logout`: clears it (204);
//! - `POST /auth/dev-login?user=NAME[&role=ROLE]` (dev mode only): signs NAME in without credentials,
//!   sets the cookie.
//!
//! Sign-ins answer `{"accessToken": …, "user": …}`, the session token also usable as a bearer token.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use jsonwebtoken::{EncodingKey, Header};

use super::JwtAuth;
use crate::http::{Body, RouteHandler, bytes as response_bytes, empty};
use crate::hub::User;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "hubcast_session";

/// Issues and reads session cookies.
pub struct SessionCookies {
    signer: EncodingKey,
    validator: JwtAuth,
    lifetime: Duration,
    dev_login: bool,
}

impl std::fmt::Debug for SessionCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCookies")
            .field("lifetime", &self.lifetime)
            .field("dev_login", &self.dev_login)
            .finish_non_exhaustive()
    }
}

impl SessionCookies {
    /// Cookies signed (HS256) with `secret`, valid for `lifetime`. Every node of a cluster needs the same
    /// secret.
    pub fn new(secret: &[u8], lifetime: Duration) -> Self {
        Self {
            signer: EncodingKey::from_secret(secret),
            validator: JwtAuth::hmac(secret),
            lifetime,
            dev_login: false,
        }
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

    /// Signs a token for `user` with `roles`.
    pub fn issue(&self, user: &str, roles: &[String]) -> Option<String> {
        let exp = jsonwebtoken::get_current_timestamp() + self.lifetime.as_secs();
        let claims = serde_json::json!({ "sub": user, "role": roles, "exp": exp });
        jsonwebtoken::encode(&Header::default(), &claims, &self.signer).ok()
    }

    /// The user of a session token presented as a bearer token.
    pub(crate) fn validate(&self, token: &str) -> Option<User> {
        self.validator.validate(token).ok()
    }

    /// The user of the request's session cookie, if it carries a valid one.
    pub(crate) fn user(&self, headers: &http::HeaderMap) -> Option<User> {
        let token = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == COOKIE_NAME)
            .map(|c| c.value().to_owned())?;
        self.validator
            .validate(&token)
            .inspect_err(|error| tracing::debug!(%error, "refused a session cookie"))
            .ok()
    }

    fn set_cookie(&self, token: &str, secure: bool) -> Option<HeaderValue> {
        let mut cookie = cookie::Cookie::build((COOKIE_NAME, token.to_owned()))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(
                i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX),
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
            let response = self.handle(&request, bearer.as_deref());
            Box::pin(async move { response })
        })
    }

    fn handle(&self, request: &Request<Incoming>, bearer: Option<&JwtAuth>) -> Response<Body> {
        if request.method() != Method::POST {
            return empty(StatusCode::METHOD_NOT_ALLOWED);
        }
        // Behind a TLS-terminating proxy the page is https: mark the cookie Secure.
        let secure = request
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
            || request.uri().scheme_str() == Some("https");
        let path = request.uri().path().to_ascii_lowercase();
        let signed_in = match path.trim_end_matches('/') {
            "/auth/logout" => {
                let mut response = empty(StatusCode::NO_CONTENT);
                response
                    .headers_mut()
                    .insert(header::SET_COOKIE, Self::clear_cookie(secure));
                return response;
            }
            "/auth/login" => {
                // The header only: tokens in URLs are for hub paths, where browsers have no choice.
                let user = bearer.and_then(|auth| {
                    let token = super::authorization_header(request.headers())?;
                    auth.validate(token).ok()
                });
                match user {
                    Some(user) => (user.id.to_string(), user.roles),
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
                (name, roles)
            }
            _ => return empty(StatusCode::NOT_FOUND),
        };
        let (name, roles) = signed_in;
        let Some(token) = self.issue(&name, &roles) else {
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let body = serde_json::json!({ "accessToken": token, "user": name }).to_string();
        let mut response = response_bytes(StatusCode::OK, "application/json", Bytes::from(body));
        if let Some(cookie) = self.set_cookie(&token, secure) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        response
    }
}
