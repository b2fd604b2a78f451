//! HTTPS material: a self-signed certificate for local and small
//! deployments, or the operator's own PEM files, loaded into a rustls
//! server configuration on the `ring` provider (pure Rust and assembly that
//! builds with only a C compiler; `aws-lc-rs` would need cmake).
//!
//! A self-signed certificate is trusted by pinning: the server prints the
//! SHA-256 fingerprint of its certificate on `init` and `run`, and a client
//! trusts exactly that certificate.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// Folder under the data folder holding the generated certificate.
pub const TLS_DIR: &str = "tls";
/// Generated certificate file name.
pub const CERT_FILE: &str = "cert.pem";
/// Generated key file name.
pub const KEY_FILE: &str = "key.pem";
/// Names every generated certificate covers.
pub const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why certificate material could not be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Generating the certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A PEM file did not parse.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A certificate file held no certificate.
    #[error("{0}: no certificate in the file")]
    NoCertificate(PathBuf),
    /// Only one of the generated pair exists; refusing to overwrite it.
    #[error(
        "{present} exists but {missing} does not; restore it or remove both to generate a new pair"
    )]
    HalfPair {
        /// The file found.
        present: PathBuf,
        /// The file missing.
        missing: PathBuf,
    },
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where a server's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
    /// Whether these are the generated self-signed pair.
    pub self_signed: bool,
}

impl TlsPaths {
    /// The operator's files if configured, else the generated pair's place.
    pub fn from_config(config: &Config) -> TlsPaths {
        match (&config.server.tls.cert, &config.server.tls.key) {
            (Some(cert), Some(key)) => TlsPaths {
                cert: cert.clone(),
                key: key.clone(),
                self_signed: false,
            },
            _ => {
                let dir = config.server.data_dir.join(TLS_DIR);
                TlsPaths {
                    cert: dir.join(CERT_FILE),
                    key: dir.join(KEY_FILE),
                    self_signed: true,
                }
            }
        }
    }
}

/// A self-signed certificate and its key, both PEM, covering
/// [`LOCAL_NAMES`] and `extra_names`.
pub fn generate_self_signed(extra_names: &[String]) -> Result<(String, String), TlsError> {
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
    for name in extra_names {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names)?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

/// Generates the self-signed pair at `paths` unless it exists; returns
/// whether it generated one. Operator-supplied paths are never written.
pub fn ensure_self_signed(paths: &TlsPaths, extra_names: &[String]) -> Result<bool, TlsError> {
    if !paths.self_signed {
        return Ok(false);
    }
    match (paths.cert.exists(), paths.key.exists()) {
        (true, true) => return Ok(false),
        (true, false) => {
            return Err(TlsError::HalfPair {
                present: paths.cert.clone(),
                missing: paths.key.clone(),
            });
        }
        (false, true) => {
            return Err(TlsError::HalfPair {
                present: paths.key.clone(),
                missing: paths.cert.clone(),
            });
        }
        (false, false) => {}
    }
    let (cert, key) = generate_self_signed(extra_names)?;
    if let Some(dir) = paths.key.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    // The key first and owner-only: a crash leaves at worst a key without a
    // certificate, which the next start reports instead of overwriting.
    write_new(&paths.key, key.as_bytes(), true)?;
    write_new(&paths.cert, cert.as_bytes(), false)?;
    Ok(true)
}

fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// A rustls server configuration with the fingerprint of its certificate.
#[derive(Debug, Clone)]
pub struct LoadedTls {
    /// Ready for the acceptor.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate, colon-separated upper-case hex.
    pub fingerprint: String,
}

/// Loads the certificate chain and key at `paths`.
pub fn load(paths: &TlsPaths) -> Result<LoadedTls, TlsError> {
    let pem_error = |path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls::pki_types::pem::Error| match e {
            rustls::pki_types::pem::Error::Io(source) => TlsError::Io { path, source },
            other => TlsError::Pem {
                path,
                message: other.to_string(),
            },
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&paths.cert)
        .map_err(pem_error(&paths.cert))?
        .collect::<Result<_, _>>()
        .map_err(pem_error(&paths.cert))?;
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::NoCertificate(paths.cert.clone()))?;
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(&paths.key).map_err(pem_error(&paths.key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // The server speaks HTTP/1.1 only (lean build); say so in ALPN.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(LoadedTls {
        config: Arc::new(config),
        fingerprint,
    })
}

/// SHA-256 of a DER certificate as `AB:CD:...`, the form browsers and
/// `openssl x509 -fingerprint -sha256` print.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex = hex::encode_upper(digest);
    hex.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> TlsPaths {
        TlsPaths {
            cert: dir.join("tls").join(CERT_FILE),
            key: dir.join("tls").join(KEY_FILE),
            self_signed: true,
        }
    }

    #[test]
    fn generates_once_loads_and_fingerprints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = paths(dir.path());
        assert!(ensure_self_signed(&p, &["hearth.test".into()]).expect("generate"));
        assert!(
            !ensure_self_signed(&p, &[]).expect("kept"),
            "never regenerates"
        );
        let loaded = load(&p).expect("load");
        assert_eq!(loaded.fingerprint.len(), 32 * 3 - 1);
        assert!(
            loaded
                .fingerprint
                .bytes()
                .all(|b| b == b':' || b.is_ascii_hexdigit())
        );
        // Loading again gives the same certificate.
        assert_eq!(load(&p).expect("again").fingerprint, loaded.fingerprint);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p.key)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key is owner-only");
        }
    }

    #[test]
    fn half_a_pair_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = paths(dir.path());
        ensure_self_signed(&p, &[]).expect("generate");
        std::fs::remove_file(&p.cert).expect("remove");
        assert!(matches!(
            ensure_self_signed(&p, &[]),
            Err(TlsError::HalfPair { .. })
        ));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = paths(dir.path());
        assert!(matches!(load(&p), Err(TlsError::Io { .. })));
        std::fs::create_dir_all(dir.path().join("tls")).expect("mkdir");
        std::fs::write(&p.cert, "not pem").expect("write");
        std::fs::write(&p.key, "not pem").expect("write");
        assert!(matches!(load(&p), Err(TlsError::NoCertificate(_))));
    }

    #[test]
    fn fingerprint_format() {
        assert_eq!(
            fingerprint(b""),
            "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
    }
}
