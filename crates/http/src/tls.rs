//! TLS on a listener (rustls): a certificate chain and its key from PEM files, read again when the files
//! change (cert-manager and the like rotate them in place), so a rotated certificate is served without
//! a restart. A rotation that cannot be read (half-written files, a key that does not match) is logged
//! and the current certificate kept.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS certificate {path}: {reason}")]
pub struct TlsError {
    path: String,
    reason: String,
}

/// A listener's TLS: the current certificate, which a task may replace.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
    current: Arc<Current>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.current.cert)
            .finish_non_exhaustive()
    }
}

/// The certificate in use and where it comes from.
struct Current {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    key_in_use: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when they were last read.
    read_at: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Current")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.key_in_use
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads a chain and its key.
fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let fail = |path: &Path, reason: String| TlsError {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| fail(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(fail(cert, "no certificate in it".into()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| fail(key, e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| fail(key, e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| fail(key, format!("does not match the certificate: {e}")))?;
    Ok(certified)
}

impl Current {
    /// Reads the files again when either changed since the last read.
    fn reload_if_changed(&self) {
        let now = (modified(&self.cert), modified(&self.key));
        if *self.read_at.read().unwrap_or_else(|p| p.into_inner()) == now {
            return;
        }
        match read(&self.cert, &self.key, &self.provider) {
            Ok(key) => {
                *self.key_in_use.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
                *self.read_at.write().unwrap_or_else(|p| p.into_inner()) = now;
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::warn!(%error, "the TLS certificate changed but cannot be used: keeping the current one");
            }
        }
    }
}

impl Tls {
    /// TLS with the chain in `cert` and the key in `key` (PEM), both read now.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let read_at = (modified(cert), modified(key));
        let current = Arc::new(Current {
            key_in_use: RwLock::new(Arc::new(read(cert, key, &provider)?)),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider: provider.clone(),
            read_at: RwLock::new(read_at),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError {
                path: cert.display().to_string(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            current,
        })
    }

    /// Checks the files every `period` until `stop`, and serves a changed certificate from then on.
    pub fn reload_every(&self, period: Duration, stop: CancellationToken) {
        let current = self.current.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(period) => current.reload_if_changed(),
                }
            }
        });
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}
