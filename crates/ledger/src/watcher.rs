//! The client's memory of a log: the pinned key and the last tree head it
//! verified, advanced only along consistency proofs.
//!
//! One verified head proves little; what makes a transparency log useful
//! is that a client never accepts a head that does not extend the last one
//! it accepted. A log that rewrites history (changes, drops or reorders an
//! entry) or shows this client a fork is then caught at the next update,
//! with the two signed heads as evidence. The state serializes so a device
//! keeps it across restarts; reading it back re-checks the signature, so a
//! tampered state file cannot smuggle in an unsigned head.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::merkle::{
    Hash, ProofError, empty_root, leaf_hash, verify_consistency, verify_inclusion,
};
use crate::sth::{SignedTreeHead, SthError, VerifiedTreeHead};

/// Why the watcher refused a tree head or an inclusion claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The head is not signed by the pinned log key.
    #[error(transparent)]
    Signature(#[from] SthError),
    /// The head is smaller than one already verified: the log went back.
    #[error("the log went back from {current} entries to {offered}")]
    Rollback {
        /// The size already verified.
        current: u64,
        /// The size offered.
        offered: u64,
    },
    /// The head has the size of the verified one but another root: the log
    /// signed two different histories.
    #[error("the log signed two different trees of {size} entries")]
    Fork {
        /// The size both heads claim.
        size: u64,
        /// The root already verified.
        known_root: Hash,
        /// The conflicting root offered.
        offered_root: Hash,
    },
    /// The consistency proof does not show the new head extending the
    /// verified one.
    #[error("tree of {to} entries is not an extension of the verified {from}")]
    Inconsistent {
        /// The size already verified.
        from: u64,
        /// The size offered.
        to: u64,
        /// What failed in the proof.
        #[source]
        proof: ProofError,
    },
    /// A larger head carries an earlier timestamp than the verified one.
    #[error("the log's clock went back from {current} ms to {offered} ms")]
    TimestampRegressed {
        /// The verified head's timestamp.
        current: u64,
        /// The offered head's timestamp.
        offered: u64,
    },
    /// An entry is not at the claimed index of the verified tree.
    #[error("entry is not in the verified log")]
    NotIncluded(#[source] ProofError),
}

/// What an accepted [`LogWatcher::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Advance {
    /// The same tree as before (possibly re-signed later); nothing new.
    Unchanged,
    /// The log grew; the watcher now trusts the larger tree.
    Grew {
        /// The size verified before.
        from: u64,
        /// The size verified now.
        to: u64,
    },
}

/// A client's pinned log key and the latest tree head it has verified.
///
/// It starts at the empty tree, which every log extends, so the first
/// head is accepted on its signature alone (trust on first use, as for
/// any log whose history a client joins late).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WatcherState", into = "WatcherState")]
pub struct LogWatcher {
    log_key: VerifyingKey,
    latest: Option<Latest>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Latest {
    signed: SignedTreeHead,
    verified: VerifiedTreeHead,
}

/// The persisted form; [`LogWatcher`] is rebuilt from it by re-verifying.
#[derive(Serialize, Deserialize)]
struct WatcherState {
    #[serde(with = "crate::serde_hex::verifying_key")]
    log_key: VerifyingKey,
    latest: Option<SignedTreeHead>,
}

impl TryFrom<WatcherState> for LogWatcher {
    type Error = WatchError;

    fn try_from(state: WatcherState) -> Result<Self, WatchError> {
        let latest = match state.latest {
            None => None,
            Some(signed) => {
                let verified = signed.verify(&state.log_key)?;
                Some(Latest { signed, verified })
            }
        };
        Ok(Self {
            log_key: state.log_key,
            latest,
        })
    }
}

impl From<LogWatcher> for WatcherState {
    fn from(watcher: LogWatcher) -> Self {
        Self {
            log_key: watcher.log_key,
            latest: watcher.latest.map(|l| l.signed),
        }
    }
}

impl LogWatcher {
    /// A watcher for the log whose key is `log_key`, knowing nothing yet.
    pub fn new(log_key: VerifyingKey) -> Self {
        Self {
            log_key,
            latest: None,
        }
    }

    /// The pinned log key.
    pub fn log_key(&self) -> &VerifyingKey {
        &self.log_key
    }

    /// The latest verified head, if any.
    pub fn head(&self) -> Option<&VerifiedTreeHead> {
        self.latest.as_ref().map(|l| &l.verified)
    }

    /// The latest verified head as signed by the log, to show other
    /// clients or an auditor (gossip) as evidence.
    pub fn signed_head(&self) -> Option<&SignedTreeHead> {
        self.latest.as_ref().map(|l| &l.signed)
    }

    /// The verified size (0 before any head).
    pub fn size(&self) -> u64 {
        self.head().map_or(0, VerifiedTreeHead::size)
    }

    /// The verified root (the empty tree's before any head).
    pub fn root(&self) -> Hash {
        self.head().map_or_else(empty_root, VerifiedTreeHead::root)
    }

    /// Offers a newer head with the consistency proof from the verified
    /// size to its size (`MerkleLog::consistency_proof(self.size(),
    /// sth.head.size)`, empty for the first head or an unchanged size).
    /// The watcher advances only if the signature, the size, the timestamp
    /// and the proof all check out; otherwise it keeps its state.
    pub fn update(
        &mut self,
        sth: &SignedTreeHead,
        consistency_proof: &[Hash],
    ) -> Result<Advance, WatchError> {
        let verified = sth.verify(&self.log_key)?;
        let (from, known_root) = (self.size(), self.root());
        let to = verified.size();
        if to < from {
            return Err(WatchError::Rollback {
                current: from,
                offered: to,
            });
        }
        if let Some(current) = self.head() {
            if to == from && verified.root() != known_root {
                return Err(WatchError::Fork {
                    size: to,
                    known_root,
                    offered_root: verified.root(),
                });
            }
            if to > from && verified.timestamp_ms() < current.timestamp_ms() {
                return Err(WatchError::TimestampRegressed {
                    current: current.timestamp_ms(),
                    offered: verified.timestamp_ms(),
                });
            }
            if to == from {
                // A re-signed head of the same tree: keep the newer one.
                if verified.timestamp_ms() > current.timestamp_ms() {
                    self.latest = Some(Latest {
                        signed: sth.clone(),
                        verified,
                    });
                }
                return Ok(Advance::Unchanged);
            }
        }
        verify_consistency(from, to, &known_root, &verified.root(), consistency_proof)
            .map_err(|proof| WatchError::Inconsistent { from, to, proof })?;
        self.latest = Some(Latest {
            signed: sth.clone(),
            verified,
        });
        Ok(if to == from {
            Advance::Unchanged
        } else {
            Advance::Grew { from, to }
        })
    }

    /// Checks that `leaf_data` is entry `index` of the verified tree.
    pub fn check_included(
        &self,
        leaf_data: &[u8],
        index: u64,
        proof: &[Hash],
    ) -> Result<(), WatchError> {
        self.check_included_hash(&leaf_hash(leaf_data), index, proof)
    }

    /// Checks that the leaf with hash `leaf` is entry `index` of the
    /// verified tree.
    pub fn check_included_hash(
        &self,
        leaf: &Hash,
        index: u64,
        proof: &[Hash],
    ) -> Result<(), WatchError> {
        verify_inclusion(leaf, index, self.size(), proof, &self.root())
            .map_err(WatchError::NotIncluded)
    }
}
