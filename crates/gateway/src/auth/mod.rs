//! Authentication of transport and negotiate requests with JWT bearer tokens.
//!
//! The token comes from `Authorization: Bearer …`, or, on hub paths only, from the `access_token` query
//! parameter (browsers cannot set headers on WebSockets and EventSource; protocol notes §1.7). Keys are
//! an HMAC secret (HS256/384/512), an RSA or EC public key in PEM (RS*/PS*, ES256/384), or a JWKS file;
//! each accepts only its own algorithm family, so `alg: none` and algorithm confusion (an RSA public
//! key used as an HMAC secret) are refused. `exp` is required and `nbf` checked, with a small leeway;
//! issuer and audience are checked when configured.
//!
//! The user id is the first present claim of a configurable list (default `sub`, then the .NET
//! `nameidentifier` claim, then `name`); roles come from `role`, `roles` or the .NET role claim.

mod identity;

use std::borrow::Cow;

pub use identity::User;

/// Credentials the deployment issues itself (session cookies, say), tried after the bearer validator:
/// the gateway asks it for the user of a bearer token the validator refused, and of the request's
/// cookies. hubcast-sessions implements it.
pub trait SessionAuth: Send + Sync + 'static {
    /// The user of a session token presented as a bearer token, unless it is invalid or revoked.
    fn validate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<User>>;
    /// The user of the request's session cookie, if it carries a valid one.
    fn user<'a>(&'a self, headers: &'a http::HeaderMap) -> BoxFuture<'a, Option<User>>;
}

use hubcast_backplane::{BoxFuture, UserId};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// The RSA algorithms (PKCS#1 v1.5 and PSS).
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The elliptic-curve algorithms.
const EC: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];

const NAME_IDENTIFIER: &str =
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier";
const DOTNET_ROLE: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role";

/// Why a request's credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token failed validation (signature, algorithm, expiry, issuer, audience, shape).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The token is valid but names no user.
    #[error("the token has no user id claim")]
    NoUserId,
    /// A key file could not be read.
    #[error("invalid key: {0}")]
    InvalidKey(String),
}

enum Keys {
    Single(DecodingKey),
    Set(JwkSet),
    Shared(std::sync::Arc<SharedJwks>),
}

/// A JWKS that is replaced while tokens are validated (one fetched from an identity provider's URL,
/// which rotates its keys), and that says when a token names a key it does not have, so whoever keeps
/// it fresh can fetch it again.
#[derive(Debug, Default)]
pub struct SharedJwks {
    set: std::sync::RwLock<JwkSet>,
    unknown_kid: tokio::sync::Notify,
}

impl SharedJwks {
    /// Replaces the keys with those of a JWKS document; the old ones stay on error.
    pub fn replace(&self, json: &[u8]) -> Result<usize, AuthError> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| AuthError::InvalidKey(e.to_string()))?;
        let count = set.keys.len();
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = set;
        Ok(count)
    }

    /// Resolves when a token named a key the set does not have (since the last call).
    pub async fn unknown_kid(&self) {
        self.unknown_kid.notified().await;
    }

    fn key(&self, kid: &str) -> Option<jsonwebtoken::jwk::Jwk> {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let key = set.find(kid).cloned();
        if key.is_none() {
            self.unknown_kid.notify_one();
        }
        key
    }
}

/// Validates JWT bearer tokens.
pub struct JwtAuth {
    keys: Keys,
    validation: Validation,
    user_claims: Vec<String>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl JwtAuth {
    fn new(keys: Keys, algorithms: Vec<Algorithm>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = algorithms;
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Self {
            keys,
            validation,
            user_claims: vec![
                "sub".into(),
                NAME_IDENTIFIER.into(),
                "nameid".into(),
                "name".into(),
            ],
        }
    }

    /// HS256/384/512 with a shared secret.
    pub fn hmac(secret: &[u8]) -> Self {
        Self::new(
            Keys::Single(DecodingKey::from_secret(secret)),
            vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
        )
    }

    /// RS256/384/512 and PS256/384/512 with an RSA public key, or ES256/384 with an EC public key, in PEM.
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, AuthError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::new(Keys::Single(key), RSA.to_vec()));
        }
        let key =
            DecodingKey::from_ec_pem(pem).map_err(|e| AuthError::InvalidKey(e.to_string()))?;
        Ok(Self::new(Keys::Single(key), EC.to_vec()))
    }

    /// The keys of a JWKS document; tokens pick theirs by `kid`, with asymmetric algorithms only.
    pub fn jwks(json: &[u8]) -> Result<Self, AuthError> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| AuthError::InvalidKey(e.to_string()))?;
        Ok(Self::new(Keys::Set(set), Self::jwks_algorithms()))
    }

    /// The keys of `shared`, as they are at each validation (see [`SharedJwks`]).
    pub fn shared_jwks(shared: std::sync::Arc<SharedJwks>) -> Self {
        Self::new(Keys::Shared(shared), Self::jwks_algorithms())
    }

    fn jwks_algorithms() -> Vec<Algorithm> {
        RSA.into_iter()
            .chain(EC)
            .chain([Algorithm::EdDSA])
            .collect()
    }

    /// Requires the `iss` claim to be `issuer`.
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        // Without this a token lacking `iss` altogether would pass.
        self.validation
            .required_spec_claims
            .insert("iss".to_owned());
        self
    }

    /// Requires the `aud` claim to contain `audience`.
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self.validation
            .required_spec_claims
            .insert("aud".to_owned());
        self
    }

    /// The claims tried, in order, for the user id.
    pub fn with_user_claims(mut self, claims: Vec<String>) -> Self {
        self.user_claims = claims;
        self
    }

    /// Validates a token and returns its user.
    pub fn validate(&self, token: &str) -> Result<User, AuthError> {
        let invalid = |e: jsonwebtoken::errors::Error| AuthError::InvalidToken(e.to_string());
        let data = match &self.keys {
            Keys::Single(key) => {
                jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation)
            }
            Keys::Set(set) => {
                let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
                let jwk = header
                    .kid
                    .as_deref()
                    .and_then(|kid| set.find(kid))
                    .ok_or_else(|| AuthError::InvalidToken("no key with the token's kid".into()))?;
                self.decode_with_jwk(token, jwk)
            }
            Keys::Shared(shared) => {
                let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
                let jwk = header
                    .kid
                    .as_deref()
                    .and_then(|kid| shared.key(kid))
                    .ok_or_else(|| AuthError::InvalidToken("no key with the token's kid".into()))?;
                self.decode_with_jwk(token, &jwk)
            }
        }
        .map_err(invalid)?;
        user_from_claims(data.claims, &self.user_claims)
    }
}

impl JwtAuth {
    /// Decodes with a key of a JWKS: the algorithms allowed are those of the key's family only
    /// (jsonwebtoken refuses a validation that lists another family's).
    fn decode_with_jwk(
        &self,
        token: &str,
        jwk: &jsonwebtoken::jwk::Jwk,
    ) -> jsonwebtoken::errors::Result<jsonwebtoken::TokenData<Map<String, Value>>> {
        use jsonwebtoken::jwk::AlgorithmParameters;
        let key = DecodingKey::from_jwk(jwk)?;
        let family: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA.to_vec(),
            AlgorithmParameters::EllipticCurve(_) => EC.to_vec(),
            AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
            // Symmetric keys (and kinds this version does not know) are never taken from a JWKS.
            _ => Vec::new(),
        };
        let mut validation = self.validation.clone();
        validation.algorithms = family;
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
    }
}

/// Builds the user from validated claims.
fn user_from_claims(claims: Map<String, Value>, user_claims: &[String]) -> Result<User, AuthError> {
    let id = user_claims
        .iter()
        .find_map(|claim| claims.get(claim).and_then(Value::as_str))
        .filter(|id| !id.is_empty())
        .ok_or(AuthError::NoUserId)?;
    let roles = ["role", "roles", DOTNET_ROLE]
        .iter()
        .filter_map(|claim| claims.get(*claim))
        .flat_map(|value| match value {
            Value::String(role) => vec![role.clone()],
            Value::Array(roles) => roles
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let expires_at = claims.get("exp").and_then(Value::as_u64);
    Ok(User {
        id: UserId::from(id),
        roles,
        expires_at,
        claims,
    })
}

/// The bearer token of a hub request: the `Authorization` header, else the `access_token` query
/// parameter (hub paths only: browsers cannot send headers on WebSockets and EventSource).
pub(crate) fn bearer_token<'a>(
    headers: &'a http::HeaderMap,
    uri: &'a http::Uri,
) -> Option<Cow<'a, str>> {
    authorization_header(headers)
        .map(Cow::Borrowed)
        .or_else(|| {
            hubcast_protocol::negotiate::query_param(uri.query().unwrap_or(""), "access_token")
        })
}

/// The token of an `Authorization: Bearer …` header.
pub fn authorization_header(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn sign(claims: serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn accepts_valid_tokens_and_reads_identity() {
        let auth = JwtAuth::hmac(b"secret");
        let token = sign(
            json!({"sub": "ann", "role": ["admin", "mod"], "exp": now() + 60}),
            b"secret",
        );
        let user = auth.validate(&token).unwrap();
        assert_eq!(user.id.as_str(), "ann");
        assert_eq!(user.roles, vec!["admin", "mod"]);
        let dotnet = sign(
            json!({NAME_IDENTIFIER: "bob", DOTNET_ROLE: "admin", "exp": now() + 60}),
            b"secret",
        );
        let user = auth.validate(&dotnet).unwrap();
        assert_eq!(
            (user.id.as_str(), user.roles.clone()),
            ("bob", vec!["admin".to_owned()])
        );
    }

    #[test]
    fn refuses_bad_tokens() {
        let auth = JwtAuth::hmac(b"secret")
            .with_issuer("me")
            .with_audience("us");
        let good = json!({"sub": "ann", "iss": "me", "aud": "us", "exp": now() + 60});
        assert!(auth.validate(&sign(good.clone(), b"secret")).is_ok());
        let mut cases = vec![
            (
                "expired",
                json!({"sub": "ann", "iss": "me", "aud": "us", "exp": now() - 120}),
            ),
            (
                "not yet valid",
                json!({"sub": "ann", "iss": "me", "aud": "us", "exp": now() + 60, "nbf": now() + 120}),
            ),
            (
                "wrong issuer",
                json!({"sub": "ann", "iss": "them", "aud": "us", "exp": now() + 60}),
            ),
            (
                "wrong audience",
                json!({"sub": "ann", "iss": "me", "aud": "them", "exp": now() + 60}),
            ),
            ("no exp", json!({"sub": "ann", "iss": "me", "aud": "us"})),
            (
                "no issuer",
                json!({"sub": "ann", "aud": "us", "exp": now() + 60}),
            ),
            (
                "no audience",
                json!({"sub": "ann", "iss": "me", "exp": now() + 60}),
            ),
        ];
        for (what, claims) in cases.drain(..) {
            assert!(auth.validate(&sign(claims, b"secret")).is_err(), "{what}");
        }
        assert!(matches!(
            auth.validate(&sign(good.clone(), b"other")),
            Err(AuthError::InvalidToken(_))
        ));
        assert_eq!(
            auth.validate(&sign(
                json!({"iss": "me", "aud": "us", "exp": now() + 60}),
                b"secret"
            )),
            Err(AuthError::NoUserId)
        );
        // alg: none.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(good.to_string())
        );
        assert!(auth.validate(&none).is_err());
        assert!(auth.validate("garbage").is_err());
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        let request = http::Request::builder()
            .uri("/hub?access_token=from%20query")
            .body(())
            .unwrap();
        let (parts, _) = request.into_parts();
        assert_eq!(
            bearer_token(&parts.headers, &parts.uri).as_deref(),
            Some("from query")
        );
        let request = http::Request::builder()
            .uri("/hub?access_token=q")
            .header("authorization", "Bearer h")
            .body(())
            .unwrap();
        let (parts, _) = request.into_parts();
        assert_eq!(
            bearer_token(&parts.headers, &parts.uri).as_deref(),
            Some("h")
        );
    }
}
