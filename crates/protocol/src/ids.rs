//! Connection ids and tokens: 16 bytes from the operating system's CSPRNG, base64url without padding
//! (22 characters), as ASP.NET Core generates them. The token must stay secret: whoever holds it can
//! read and write the connection.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The OS random source failed (it does not, in practice, on any supported platform).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomError;

/// A new 22-character random id.
pub fn random_id() -> Result<String, RandomError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| RandomError)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `id` has the shape [`random_id`] gives (22 URL-safe base64 characters): anything else was
/// never issued, and can be refused before any lookup.
pub fn is_random_id(id: &str) -> bool {
    id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_22_url_safe_chars_and_distinct() {
        let a = random_id().unwrap();
        let b = random_id().unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn issued_ids_have_the_shape_lookups_accept() {
        assert!(is_random_id(&random_id().unwrap()));
        assert!(!is_random_id("short"));
        assert!(!is_random_id("abcdefghijklmnopqrstu/"));
        assert!(!is_random_id("abcdefghijklmnopqrstuvw"));
    }
}
