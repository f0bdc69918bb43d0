//! TLS for `ssl` and `wss` listeners (rustls, ring provider): the server
//! configuration built from the listener's PEM files, client certificate
//! verification against `cafile` (`require_certificate`), the verified
//! client's identity (its certificate's subject CN), and certificate reload
//! without a restart: [`TlsSource::acceptor`] re-reads the files when one's
//! modification time changed (looked at most once a second), and
//! [`TlsSource::reload`] re-reads them at once (`listener reload`, SIGHUP).
//! A reload that fails keeps the configuration in use and is logged once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::config::listeners::ListenerConfig;

/// How often [`TlsSource::acceptor`] looks at the files' times.
const MTIME_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// The files a TLS listener reads.
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
    require_certificate: bool,
}

impl Files {
    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [Some(&self.cert), Some(&self.key), self.ca.as_ref()]
            .into_iter()
            .flatten()
    }

    /// Each file's modification time (None where it cannot be read).
    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.paths()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| file_error(&self.cert, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_error(&self.cert, e))?;
        if certs.is_empty() {
            return Err(file_error(&self.cert, "no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_error(&self.key, e))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).map_err(|e| file_error(ca, e))? {
                    let c = c.map_err(|e| file_error(ca, e))?;
                    roots.add(c).map_err(|e| file_error(ca, e))?;
                }
                if roots.is_empty() {
                    return Err(file_error(ca, "no CA certificate in the file"));
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.require_certificate {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(format!("certificate and key: {e}")))
    }
}

/// The configuration in use and what it was built from.
struct Current {
    acceptor: TlsAcceptor,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
    /// The last reload error, logged once until it changes.
    failing: Option<String>,
}

/// A TLS listener's server configuration, reloaded when its files change.
pub struct TlsSource {
    listener: String,
    files: Files,
    current: Mutex<Current>,
}

impl TlsSource {
    /// Reads the listener's files; an error names the file.
    pub fn load(l: &ListenerConfig) -> Result<TlsSource, TlsError> {
        let missing = || TlsError::Config("certfile and keyfile are needed".into());
        let files = Files {
            cert: l.certfile.clone().ok_or_else(missing)?,
            key: l.keyfile.clone().ok_or_else(missing)?,
            ca: l.cafile.clone(),
            require_certificate: l.require_certificate,
        };
        let stamps = files.stamps();
        let config = files.server_config()?;
        Ok(TlsSource {
            listener: l.id(),
            files,
            current: Mutex::new(Current {
                acceptor: TlsAcceptor::from(Arc::new(config)),
                stamps,
                checked: Instant::now(),
                failing: None,
            }),
        })
    }

    /// The acceptor for a new connection: re-reads the files first if one
    /// changed since they were read.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut cur = self.current.lock();
        if cur.checked.elapsed() >= MTIME_CHECK {
            cur.checked = Instant::now();
            let stamps = self.files.stamps();
            if stamps != cur.stamps {
                self.rebuild(&mut cur, stamps);
            }
        }
        cur.acceptor.clone()
    }

    /// Re-reads the files now. New connections use what they hold; on an
    /// error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let mut cur = self.current.lock();
        let stamps = self.files.stamps();
        let r = self.files.server_config();
        match r {
            Ok(config) => {
                self.install(&mut cur, config, stamps);
                Ok(())
            }
            Err(e) => {
                cur.stamps = stamps;
                Err(e)
            }
        }
    }

    fn rebuild(&self, cur: &mut Current, stamps: Vec<Option<SystemTime>>) {
        match self.files.server_config() {
            Ok(config) => self.install(cur, config, stamps),
            Err(e) => {
                // Files being rewritten may be half written: try again at
                // the next look, log the failure once.
                let e = e.to_string();
                if cur.failing.as_ref() != Some(&e) {
                    warn!(listener = %self.listener, error = %e, "TLS files changed but cannot be loaded; the previous certificate stays in use");
                    cur.failing = Some(e);
                }
            }
        }
    }

    fn install(&self, cur: &mut Current, config: ServerConfig, stamps: Vec<Option<SystemTime>>) {
        cur.acceptor = TlsAcceptor::from(Arc::new(config));
        cur.stamps = stamps;
        cur.failing = None;
        info!(listener = %self.listener, "TLS certificate (re)loaded");
    }
}

/// The subject CN of the client's certificate, if it sent one (the
/// verifier has checked it against `cafile`).
pub fn identity(conn: &rustls::ServerConnection) -> Option<String> {
    let der = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
