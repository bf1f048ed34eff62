//! TLS to PostgreSQL as libpq's `sslmode` means it, with rustls (tokio-postgres itself knows only
//! disable, prefer and require, and leaves verification to the connector):
//!
//! | mode | encrypts | verifies the certificate chain | verifies the host name |
//! |---|---|---|---|
//! | `disable` | no | | |
//! | `prefer` | if the server offers it | no | no |
//! | `require` | yes | only against a given CA file | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! The chain is verified against the CA file (`sslrootcert` in the URL, or the setting), else the Mozilla
//! roots. `sslmode` and `sslrootcert` are taken out of the URL here, since tokio-postgres refuses the
//! modes it does not know.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified.
    Prefer,
    /// TLS, the chain verified only against a given CA file.
    Require,
    /// TLS, the chain verified, not the host name.
    VerifyCa,
    /// TLS, the chain and the host name verified.
    VerifyFull,
}

impl std::str::FromStr for TlsMode {
    type Err = StoreError;

    fn from_str(mode: &str) -> Result<Self, StoreError> {
        Ok(match mode {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(StoreError(format!(
                    "sslmode '{other}' is none of disable, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }
}

impl TlsMode {
    /// What tokio-postgres negotiates for this mode.
    pub(crate) fn wire(self) -> SslMode {
        match self {
            Self::Disable => SslMode::Disable,
            Self::Prefer => SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => SslMode::Require,
        }
    }
}

/// The TLS settings a URL carried.
#[derive(Debug, Default)]
pub(crate) struct FromUrl {
    pub(crate) mode: Option<TlsMode>,
    pub(crate) ca_file: Option<PathBuf>,
}

/// `url` without its `sslmode` and `sslrootcert`, and what they said. Works on `postgres://` URLs and
/// on libpq key-value strings.
pub(crate) fn split_url(url: &str) -> Result<(String, FromUrl), StoreError> {
    let mut found = FromUrl::default();
    let mut take = |key: &str, value: &str| -> Result<bool, StoreError> {
        match key {
            "sslmode" => found.mode = Some(value.parse()?),
            "sslrootcert" => found.ca_file = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), found));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            if !take(key, &value)? {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        return Ok((format!("{base}{rest}"), found));
    }
    let mut kept = Vec::new();
    for token in url.split_whitespace() {
        let (key, value) = token.split_once('=').unwrap_or((token, ""));
        if !take(key.trim(), value.trim())? {
            kept.push(token);
        }
    }
    Ok((kept.join(" "), found))
}

/// The rustls connector for `mode`; `None` for `disable`.
pub(crate) fn connector(
    mode: TlsMode,
    ca_file: Option<&Path>,
) -> Result<Option<MakeRustlsConnect>, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError(format!("TLS setup: {e}")))?;
    let roots = || roots(ca_file);
    let config = match mode {
        TlsMode::Disable => return Ok(None),
        TlsMode::Prefer | TlsMode::Require if ca_file.is_none() => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
        TlsMode::Prefer | TlsMode::Require | TlsMode::VerifyCa => {
            let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots()?),
                provider,
            )
            .build()
            .map_err(|e| StoreError(format!("TLS setup: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(chain)))
                .with_no_client_auth()
        }
        TlsMode::VerifyFull => builder
            .with_root_certificates(roots()?)
            .with_no_client_auth(),
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The CA file's certificates, else the Mozilla roots.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    let Some(path) = ca_file else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let unreadable = |e: &dyn std::fmt::Display| {
        StoreError(format!(
            "the CA file {} cannot be read: {e}",
            path.display()
        ))
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(unreadable(&"no certificate in it"));
    }
    Ok(roots)
}

/// Accepts any certificate (libpq's `prefer` and `require` without a CA file); the handshake's
/// signatures are still checked, so the session is encrypted with whoever holds the key.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies the chain but not the host name (libpq's `verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_up_their_tls_settings() {
        let (url, found) = split_url(
            "postgres://u@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fca.pem",
        )
        .unwrap();
        assert_eq!(url, "postgres://u@h:5432/db?application_name=x");
        assert_eq!(found.mode, Some(TlsMode::VerifyFull));
        assert_eq!(found.ca_file, Some(PathBuf::from("/ca.pem")));
        let (url, found) = split_url("host=h dbname=db sslmode=verify-ca").unwrap();
        assert_eq!(url, "host=h dbname=db");
        assert_eq!(found.mode, Some(TlsMode::VerifyCa));
        let (url, found) = split_url("postgres://h/db").unwrap();
        assert_eq!((url.as_str(), found.mode), ("postgres://h/db", None));
        assert!(split_url("postgres://h/db?sslmode=sometimes").is_err());
    }
}
