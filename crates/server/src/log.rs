//! The transparency log's signing key.
//!
//! Devices pin the log's Ed25519 public key when they join and from then
//! on accept only tree heads it signed, so the key is the log's identity:
//! it is generated once (`hearth-server init`, or the first start), kept
//! owner-only in the data folder beside the database, and never rotated
//! silently. Losing it means every device stops trusting the log (they
//! report a bad signature), which is the point: a server that forgets its
//! history must not be able to start a new one under the same name.
//!
//! The file holds the 32-byte secret seed as 64 hex digits. The log
//! itself (entries, proofs, signed heads) lives in storage
//! ([`crate::storage`], migration `02-log.sql`); the HTTP endpoints in
//! [`crate::routes`] (`/v1/log/...`).

use std::io::Write;
use std::path::{Path, PathBuf};

use hearth_ledger::{SignedTreeHead, SigningKey, TreeHead, VerifyingKey};
use zeroize::Zeroizing;

/// The key file inside the data folder.
pub const LOG_KEY_FILE: &str = "log-signing-key";

/// Why the log key could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogKeyError {
    /// Reading or writing the file failed.
    #[error("log key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not 64 hex digits.
    #[error("log key {path} is not 64 hex digits")]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
    /// Others than the owner may read the file.
    #[error(
        "log key {path} is readable by others (mode {mode:o}); anyone who can read it can sign tree heads in this log's name: chmod 600 it"
    )]
    Exposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// The log's Ed25519 signing key. Not `Clone`, and `Debug` shows only the
/// public half; the secret is wiped when dropped.
pub struct LogKey {
    key: SigningKey,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey")
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

impl LogKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// A key from its 32-byte seed (tests, simulations).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Loads the key from `dir`, generating and saving one (owner-only)
    /// if there is none; says whether it generated one.
    pub fn ensure(dir: &Path) -> Result<(Self, bool), LogKeyError> {
        let path = dir.join(LOG_KEY_FILE);
        if path.exists() {
            return Ok((Self::load(&path)?, false));
        }
        let key = Self::generate();
        key.save_new(&path)?;
        Ok((key, true))
    }

    /// Loads the key file at `path`.
    pub fn load(path: &Path) -> Result<Self, LogKeyError> {
        let io = |source| LogKeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(LogKeyError::Exposed {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut *seed).map_err(|_| LogKeyError::Malformed {
            path: path.to_path_buf(),
        })?;
        Ok(Self::from_seed(&seed))
    }

    /// Writes the key to a new file at `path`, owner-only; never
    /// overwrites (an existing key is the log's identity).
    pub fn save_new(&self, path: &Path) -> Result<(), LogKeyError> {
        let io = |source| LogKeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(self.key.to_bytes())));
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The public key devices pin.
    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as 64 hex digits, as printed and served.
    pub fn public_hex(&self) -> String {
        hex::encode(self.public().as_bytes())
    }

    /// Signs a tree head.
    pub fn sign(&self, head: &TreeHead) -> SignedTreeHead {
        head.sign(&self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_owner_only_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, generated) = LogKey::ensure(dir.path()).expect("ensure");
        assert!(generated);
        let (again, generated) = LogKey::ensure(dir.path()).expect("ensure");
        assert!(!generated);
        assert_eq!(key.public(), again.public());
        assert!(!format!("{key:?}").contains(&hex::encode(key.key.to_bytes())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(LOG_KEY_FILE);
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(
                LogKey::load(&path),
                Err(LogKeyError::Exposed { mode: 0o644, .. })
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        assert!(key.save_new(&dir.path().join(LOG_KEY_FILE)).is_err());
        let junk = dir.path().join("junk");
        LogKey::from_seed(&[1; 32]).save_new(&junk).expect("save");
        std::fs::write(&junk, "not hex").expect("overwrite");
        assert!(matches!(
            LogKey::load(&junk),
            Err(LogKeyError::Malformed { .. })
        ));
    }

    #[test]
    fn signed_heads_verify_under_the_public_key() {
        let key = LogKey::from_seed(&[3; 32]);
        let head = TreeHead {
            size: 1,
            root: hearth_ledger::Hash::sha256(b"r"),
            timestamp_ms: 5,
        };
        assert!(key.sign(&head).verify(&key.public()).is_ok());
        assert_eq!(key.public_hex().len(), 64);
    }
}
