//! Who may call the control API, as Azure SignalR's data-plane REST API decides it: a bearer JWT signed
//! HS256 with an access key, whose `aud` is the request URL without its query string and which carries
//! `exp`; or an API key (`X-API-Key`) whose SHA-256 is configured. Nothing is anonymous unless enabled.
//! Keys and tokens are never logged.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HOST};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};

/// The accepted credentials.
#[derive(Clone, Default)]
pub struct ControlAuth {
    access_keys: Vec<DecodingKey>,
    api_key_hashes: Vec<[u8; 32]>,
    anonymous: bool,
}

impl std::fmt::Debug for ControlAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlAuth")
            .field("access_keys", &self.access_keys.len())
            .field("api_keys", &self.api_key_hashes.len())
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

/// Why a credential was refused (for the 401's message; never echoes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Missing,
    Invalid,
    Expired,
    WrongAudience,
}

impl Refused {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Missing => {
                "An access token (Authorization: Bearer) or an API key (X-API-Key) is required."
            }
            Self::Invalid => "The credential is not valid.",
            Self::Expired => "The access token has expired.",
            Self::WrongAudience => "The access token's audience is not this request's URL.",
        }
    }
}

/// Why an API key hash could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHash(pub String);

impl std::fmt::Display for InvalidHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}' is not a SHA-256 in hex (64 hex digits)", self.0)
    }
}

impl std::error::Error for InvalidHash {}

impl ControlAuth {
    /// Accepts tokens signed with `key` (several keys: rotation).
    pub fn with_access_key(mut self, key: &[u8]) -> Self {
        self.access_keys.push(DecodingKey::from_secret(key));
        self
    }

    /// Accepts the API key whose SHA-256 is `hex` (64 hex digits).
    pub fn with_api_key_sha256(mut self, hex: &str) -> Result<Self, InvalidHash> {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .filter_map(|i| hex.get(i..i + 2))
            .filter_map(|pair| u8::from_str_radix(pair, 16).ok())
            .collect();
        let hash: [u8; 32] = bytes
            .try_into()
            .ok()
            .filter(|_| hex.len() == 64)
            .ok_or_else(|| InvalidHash(hex.chars().take(8).collect::<String>() + "…"))?;
        self.api_key_hashes.push(hash);
        Ok(self)
    }

    /// Lets requests without credentials in (only for trusted networks).
    pub fn allow_anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    /// Whether any credential is configured (or anonymous access is on).
    pub fn is_configured(&self) -> bool {
        self.anonymous || !self.access_keys.is_empty() || !self.api_key_hashes.is_empty()
    }

    /// Checks a request's credential; `path` is the request path without its query string.
    ///
    /// Every credential presented must be valid (a bad token is refused even next to a good API key).
    pub(crate) fn check(&self, headers: &HeaderMap, path: &str) -> Result<(), Refused> {
        let api_key = headers.get("x-api-key");
        if let Some(key) = api_key {
            let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            if !self.api_key_hashes.contains(&hash) {
                return Err(Refused::Invalid);
            }
        }
        let Some(authorization) = headers.get(AUTHORIZATION) else {
            return if api_key.is_some() || self.anonymous {
                Ok(())
            } else {
                Err(Refused::Missing)
            };
        };
        let token = authorization
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or(Refused::Invalid)?;
        let host = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let path = path.strip_suffix('/').unwrap_or(path);
        // Behind a TLS-terminating proxy the client signs the https URL it called.
        let audiences = [
            format!("http://{host}{path}"),
            format!("https://{host}{path}"),
        ];
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.set_audience(&audiences);
        validation.leeway = 5;
        let mut refused = Refused::Invalid;
        for key in &self.access_keys {
            match jsonwebtoken::decode::<serde_json::Value>(token, key, &validation) {
                Ok(_) => return Ok(()),
                Err(error) => {
                    refused = match error.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => Refused::Expired,
                        jsonwebtoken::errors::ErrorKind::InvalidAudience => Refused::WrongAudience,
                        _ if refused != Refused::Invalid => refused,
                        _ => Refused::Invalid,
                    }
                }
            }
        }
        Err(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use jsonwebtoken::{EncodingKey, Header};

    fn token(key: &[u8], aud: &str, exp_in: i64) -> String {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let claims = serde_json::json!({"aud": aud, "exp": now + exp_in});
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(key)).unwrap()
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn bearer_tokens_need_the_key_the_url_and_a_future_exp() {
        let auth = ControlAuth::default().with_access_key(b"key-one");
        let url = "http://h:1/api/v1/hubs/chat";
        let path = "/api/v1/hubs/chat";
        let with = |t: String| {
            headers(&[
                ("host", "h:1".into()),
                ("authorization", format!("Bearer {t}")),
            ])
        };
        assert_eq!(auth.check(&with(token(b"key-one", url, 60)), path), Ok(()));
        let https = "https://h:1/api/v1/hubs/chat";
        assert_eq!(
            auth.check(&with(token(b"key-one", https, 60)), path),
            Ok(())
        );
        assert_eq!(
            auth.check(&with(token(b"other", url, 60)), path),
            Err(Refused::Invalid)
        );
        assert_eq!(
            auth.check(&with(token(b"key-one", url, -60)), path),
            Err(Refused::Expired)
        );
        assert_eq!(
            auth.check(
                &with(token(b"key-one", "http://h:1/api/v1/hubs/other", 60)),
                path
            ),
            Err(Refused::WrongAudience)
        );
        assert_eq!(auth.check(&headers(&[]), path), Err(Refused::Missing));
        assert_eq!(
            auth.check(&with("not.a.jwt".into()), path),
            Err(Refused::Invalid)
        );
    }

    #[test]
    fn api_keys_are_compared_by_hash() {
        let hash: String = Sha256::digest(b"secret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let auth = ControlAuth::default().with_api_key_sha256(&hash).unwrap();
        assert_eq!(
            auth.check(&headers(&[("x-api-key", "secret".into())]), "/"),
            Ok(())
        );
        assert_eq!(
            auth.check(&headers(&[("x-api-key", "nope".into())]), "/"),
            Err(Refused::Invalid)
        );
        let with_bad_token = headers(&[
            ("x-api-key", "secret".into()),
            ("authorization", "Bearer nope".into()),
        ]);
        assert_eq!(auth.check(&with_bad_token, "/"), Err(Refused::Invalid));
        assert!(ControlAuth::default().with_api_key_sha256("abc").is_err());
        assert!(!ControlAuth::default().is_configured());
        let open = ControlAuth::default().allow_anonymous();
        assert_eq!(open.check(&headers(&[]), "/"), Ok(()));
    }
}
