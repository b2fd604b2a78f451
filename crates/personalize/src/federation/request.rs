//! Joining a federation and taking part in rounds as a person asks for it
//! (the app's forms, `hearth fed join|run`'s flags), with the defaults
//! both start from and their checked mapping onto the workflows'
//! [`JoinRequest`] and [`Participation`].

use std::io::Read;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{DEFAULT_EPSILON_BUDGET, JoinRequest, Participation};
use crate::eligibility::ParticipationPolicy;
use crate::error::{PersonalizeError, Result};
use crate::text::{non_blank, parse_device};
use hearth_store::MembershipId;

/// Largest certificate file read: a chain of a few certificates is a few
/// kilobytes; anything much larger is not one.
const CERTIFICATE_LIMIT: u64 = 256 * 1024;

/// Joining a federation, as the person fills it in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct JoinFederationRequest {
    /// `https://host:port`.
    pub server_url: String,
    /// The one-time invite token from the operator.
    pub invite: String,
    /// The server's certificate file (PEM) from the operator.
    pub certificate_path: PathBuf,
    /// Total privacy budget, epsilon at delta 1e-5.
    #[serde(default = "default_budget")]
    pub epsilon_budget: f64,
    /// When the device may take part (default: on power, when idle).
    #[serde(default)]
    pub policy: ParticipationPolicy,
}

fn default_budget() -> f64 {
    DEFAULT_EPSILON_BUDGET
}

/// The form before the person fills it in: no server, the default budget
/// and policy.
impl Default for JoinFederationRequest {
    fn default() -> Self {
        JoinFederationRequest {
            server_url: String::new(),
            invite: String::new(),
            certificate_path: PathBuf::new(),
            epsilon_budget: DEFAULT_EPSILON_BUDGET,
            policy: ParticipationPolicy::default(),
        }
    }
}

impl JoinFederationRequest {
    /// The workflow's request: the certificate read (at most 256 KiB, PEM)
    /// and the text fields trimmed. An unreadable or foreign file and a
    /// blank URL or invite are [`PersonalizeError::Invalid`].
    pub fn join_request(&self) -> Result<JoinRequest> {
        let server_url = self.server_url.trim();
        let invite = self.invite.trim();
        if server_url.is_empty() || invite.is_empty() {
            return Err(PersonalizeError::Invalid(
                "give the server's address and the invite from its operator".into(),
            ));
        }
        Ok(JoinRequest {
            server_url: server_url.to_owned(),
            certificate_pem: read_certificate(&self.certificate_path)?,
            invite: invite.to_owned(),
            epsilon_budget: self.epsilon_budget,
            policy: self.policy.clone(),
        })
    }
}

/// The PEM text of a certificate file.
fn read_certificate(path: &std::path::Path) -> Result<String> {
    let unreadable = |e: std::io::Error| {
        PersonalizeError::Invalid(format!(
            "cannot read the certificate {}: {e}",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    // Read one byte past the limit rather than trusting the file's size,
    // which a named pipe or a growing file does not have.
    let mut bytes = Vec::new();
    file.take(CERTIFICATE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > CERTIFICATE_LIMIT {
        return Err(PersonalizeError::Invalid(format!(
            "{} is larger than {} KiB, too large for a certificate",
            path.display(),
            CERTIFICATE_LIMIT / 1024
        )));
    }
    let text = String::from_utf8(bytes)
        .ok()
        .filter(|text| text.contains("-----BEGIN CERTIFICATE-----"))
        .ok_or_else(|| {
            PersonalizeError::Invalid(format!("{} is not a PEM certificate", path.display()))
        })?;
    Ok(text)
}

/// Taking part in rounds. Defaults are [`Participation::default`]'s, for
/// one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default)]
pub struct FederatedRoundRequest {
    /// The membership (the only one when absent).
    pub membership: Option<MembershipId>,
    /// Base model: registry name or path (default: the federation's).
    pub model: Option<String>,
    /// Train on texts with this label only.
    pub label: Option<String>,
    /// Local training steps.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Local learning rate.
    pub learning_rate: f64,
    /// `auto`, `cpu`, `cuda` or `metal`.
    pub device: String,
    /// Rounds to take part in before stopping (`None`: until cancelled).
    pub rounds: Option<usize>,
    /// Check in once; stop when there is no round for this device now.
    pub once: bool,
}

impl Default for FederatedRoundRequest {
    fn default() -> Self {
        let participation = Participation::default();
        FederatedRoundRequest {
            membership: participation.membership,
            model: participation.model,
            label: participation.label,
            steps: participation.steps,
            batch_size: participation.batch_size,
            seq_len: participation.seq_len,
            learning_rate: participation.learning_rate,
            device: participation.device.to_string(),
            rounds: Some(1),
            once: participation.once,
        }
    }
}

impl FederatedRoundRequest {
    /// The workflow's request, checked: no rounds, no steps, an empty
    /// batch or sequence, a learning rate outside (0, 1) or an unknown
    /// device are [`PersonalizeError::Invalid`].
    pub fn participation(&self) -> Result<Participation> {
        let invalid = |what: &str| Err(PersonalizeError::Invalid(what.into()));
        if self.rounds == Some(0) {
            return invalid("take part in at least one round");
        }
        if self.steps == 0 || self.batch_size == 0 || self.seq_len < 2 {
            return invalid(
                "train for at least one step, on at least one sequence of at least two tokens",
            );
        }
        if !(self.learning_rate > 0.0 && self.learning_rate < 1.0) {
            return invalid("the learning rate must be in (0, 1)");
        }
        Ok(Participation {
            membership: self.membership,
            model: non_blank(&self.model),
            label: non_blank(&self.label),
            steps: self.steps,
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            learning_rate: self.learning_rate,
            device: parse_device(&self.device)?,
            rounds: self.rounds,
            once: self.once,
            ..Participation::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_round_request_is_the_library_participation_for_one_round() {
        let participation = FederatedRoundRequest::default()
            .participation()
            .expect("valid request");
        let default = Participation::default();
        assert_eq!(participation.rounds, Some(1));
        assert_eq!(
            (
                participation.steps,
                participation.batch_size,
                participation.seq_len
            ),
            (default.steps, default.batch_size, default.seq_len)
        );
        assert_eq!(participation.learning_rate, default.learning_rate);
        assert_eq!(participation.device, default.device);
    }

    #[test]
    fn bad_round_requests_are_invalid() {
        for bad in [
            r#"{"rounds": 0}"#,
            r#"{"steps": 0}"#,
            r#"{"seq_len": 1}"#,
            r#"{"learning_rate": 0}"#,
            r#"{"learning_rate": 1e9}"#,
            r#"{"device": "abacus"}"#,
        ] {
            let request: FederatedRoundRequest =
                serde_json::from_str(bad).expect("well-formed JSON");
            assert!(
                matches!(request.participation(), Err(PersonalizeError::Invalid(_))),
                "{bad} was accepted"
            );
        }
    }

    fn join_with(certificate: &std::path::Path) -> JoinFederationRequest {
        JoinFederationRequest {
            server_url: " https://127.0.0.1:1 ".into(),
            invite: " token ".into(),
            certificate_path: certificate.to_owned(),
            epsilon_budget: DEFAULT_EPSILON_BUDGET,
            policy: ParticipationPolicy::default(),
        }
    }

    #[test]
    fn a_join_reads_a_pem_certificate_and_trims_the_fields() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("server.pem");
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        std::fs::write(&path, pem).expect("test setup");
        let join = join_with(&path).join_request().expect("test setup");
        assert_eq!(join.certificate_pem, pem);
        assert_eq!(join.server_url, "https://127.0.0.1:1");
        assert_eq!(join.invite, "token");
    }

    #[test]
    fn a_join_refuses_missing_foreign_huge_or_binary_certificates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.pem");
        let foreign = dir.path().join("photo.jpg");
        std::fs::write(&foreign, b"\xff\xd8\xff\xe0 not a certificate").expect("test setup");
        let huge = dir.path().join("huge.pem");
        let mut text = "-----BEGIN CERTIFICATE-----\n".to_owned();
        text.push_str(&"A".repeat(CERTIFICATE_LIMIT as usize));
        std::fs::write(&huge, text).expect("test setup");
        for path in [missing, foreign, huge, dir.path().to_owned()] {
            assert!(
                matches!(
                    join_with(&path).join_request(),
                    Err(PersonalizeError::Invalid(_))
                ),
                "{} was accepted",
                path.display()
            );
        }
        let mut blank = join_with(dir.path());
        blank.invite = "  ".into();
        assert!(matches!(
            blank.join_request(),
            Err(PersonalizeError::Invalid(_))
        ));
    }
}
