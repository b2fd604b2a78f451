//! The server's Ed25519 publication key: it signs every global adapter
//! version the server publishes (see
//! [`hearth_fed::global::GlobalStatement`]), so a device
//! that pinned the public half when it joined can tell a published adapter
//! from anything else, whoever serves it.
//!
//! Generated once (`hearth-server init`, or the first start), kept in the
//! data folder as the hex secret seed in an owner-only (0600) file that is
//! created exclusively and never overwritten: losing it means devices must
//! re-pin, so a half-written or foreign file is an error, not a reason to
//! make a new key.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use hearth_fed::global::GlobalStatement;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

/// The key file inside the data folder.
pub const IDENTITY_FILE: &str = "server-identity.key";

/// Why the key could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file does not hold a 32-byte hex seed.
    #[error("{0}: not a server identity key (expected 64 hex digits)")]
    Malformed(PathBuf),
}

/// The server's signing key. Not `Clone`; `Debug` shows the public key
/// only; the secret is zeroized on drop (ed25519-dalek's `SigningKey`).
pub struct ServerIdentity {
    signing: SigningKey,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// A fresh key (tests, in-memory servers).
    pub fn generate() -> Self {
        Self {
            signing: SigningKey::generate(&mut OsRng),
        }
    }

    /// Where the key lives in `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(IDENTITY_FILE)
    }

    /// Creates the key file unless it exists; returns whether it did.
    pub fn ensure(data_dir: &Path) -> Result<bool, IdentityError> {
        let path = Self::path(data_dir);
        if path.exists() {
            return Ok(false);
        }
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(|source| IdentityError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let key = Self::generate();
        let text = Zeroizing::new(format!("{}\n", hex::encode(key.signing.to_bytes())));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(true)
    }

    /// Reads the key file in `data_dir`.
    pub fn load(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = Self::path(data_dir);
        let text =
            Zeroizing::new(
                std::fs::read_to_string(&path).map_err(|source| IdentityError::Io {
                    path: path.clone(),
                    source,
                })?,
            );
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut())
            .map_err(|_| IdentityError::Malformed(path))?;
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// [`ServerIdentity::ensure`] then [`ServerIdentity::load`].
    pub fn ensure_and_load(data_dir: &Path) -> Result<Self, IdentityError> {
        Self::ensure(data_dir)?;
        Self::load(data_dir)
    }

    /// The public key devices pin.
    pub fn public_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as base64url (how it is served and shown).
    pub fn public_key_base64(&self) -> String {
        crate::auth::encode(self.public_key().as_bytes())
    }

    /// Signs a publication statement.
    pub fn sign(&self, statement: &GlobalStatement) -> Signature {
        statement.sign(&self.signing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_owner_only_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(ServerIdentity::ensure(dir.path()).expect("create"));
        assert!(!ServerIdentity::ensure(dir.path()).expect("kept"));
        let a = ServerIdentity::load(dir.path()).expect("load");
        let b = ServerIdentity::load(dir.path()).expect("load again");
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ServerIdentity::path(dir.path()))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{a:?}").contains(&hex::encode(a.signing.to_bytes())));
        std::fs::write(ServerIdentity::path(dir.path()), "garbage").expect("write");
        assert!(matches!(
            ServerIdentity::load(dir.path()),
            Err(IdentityError::Malformed(_))
        ));
    }
}
