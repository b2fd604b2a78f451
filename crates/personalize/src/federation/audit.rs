//! `hearth audit`: re-verifying every stored transparency-log checkpoint,
//! and comparing tree heads with other devices through the gossip endpoint.

use hearth_fed::client::{FedClient, FedClientError};
use hearth_store::Library;

use crate::error::Result;

use super::{AuditOutcome, Record, keep, key_path, load_identity, record_of};

/// Re-verifies, from what this device stored, every federation log it
/// watches (`hearth audit`): each signed head, their consistency, every
/// round's parameters, commitment and adapter evidence, and any split view
/// found before; then, for active memberships, compares this device's
/// latest head with the heads the federation's other devices posted
/// (gossip; a short network budget, and a server that cannot be reached
/// is only noted): two heads of one size with different roots, or a head
/// the log cannot prove consistent with this device's, is a SPLIT VIEW;
/// and replays the whole log to hold its participation entries to the
/// devices' gossiped signed upload commitments (a dropped or swapped
/// upload is UPLOAD CONTRADICTED). Evidence found live is stored with the
/// membership, so every later audit reports it.
pub fn audit(library: &mut Library) -> Result<Vec<AuditOutcome>> {
    let mut outcomes = Vec::new();
    for m in library.memberships()? {
        let mut outcome = AuditOutcome {
            membership: m.id,
            federation_id: m.federation_id.clone(),
            server_url: m.server_url.clone(),
            active: m.left_at.is_none(),
            verified: false,
            checkpoints: 0,
            rounds: 0,
            commitments: 0,
            adapters: 0,
            log_size: None,
            log_root: None,
            parameters: 0,
            gossip_heads: None,
            gossip_note: None,
            uploads_backed: None,
            contradicted_uploads: Vec::new(),
            error: None,
        };
        let record = record_of(&m);
        match record
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|record| {
                hearth_fed::audit::audit_all(&record.audit).map_err(|e| e.to_string())
            }) {
            Ok(report) => {
                outcome.verified = true;
                outcome.checkpoints = report.checkpoints;
                outcome.rounds = report.rounds;
                outcome.commitments = report.commitments;
                outcome.adapters = report.adapters;
                outcome.parameters = report.parameters;
                outcome.log_size = report.head.as_ref().map(|h| h.size);
                outcome.log_root = report.head.as_ref().map(|h| h.root.to_string());
            }
            Err(error) => outcome.error = Some(error),
        }
        if let (true, true, Ok(record)) = (outcome.active, outcome.verified, record) {
            gossip_for_audit(library, &m, record, &mut outcome);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The live part of [`audit`]: gossip with the federation's other devices
/// through its server, within a short network budget.
fn gossip_for_audit(
    library: &mut Library,
    m: &hearth_store::Membership,
    mut record: Record,
    outcome: &mut AuditOutcome,
) {
    let options = hearth_fed::client::ClientOptions {
        connect_timeout: std::time::Duration::from_secs(5),
        request_timeout: std::time::Duration::from_secs(20),
        retry_for: std::time::Duration::from_secs(5),
        ..hearth_fed::client::ClientOptions::default()
    };
    let client = load_identity(&key_path(library.root(), &m.federation_id)).and_then(|identity| {
        Ok(FedClient::with_options(
            record.membership.clone(),
            identity,
            options,
        )?)
    });
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            outcome.gossip_note = Some(e.to_string());
            return;
        }
    };
    match client.gossip(&mut record.audit) {
        Ok(report) => outcome.gossip_heads = Some(report.heads),
        Err(FedClientError::Audit(e)) => {
            outcome.verified = false;
            outcome.error = Some(e.to_string());
            keep(library, m, &record);
            return;
        }
        Err(e) => {
            outcome.gossip_note = Some(e.to_string());
            return;
        }
    }
    // The devices' signed word against the log's participation entries.
    match client.audit_uploads(&mut record.audit) {
        Ok(report) => outcome.uploads_backed = Some((report.participations, report.backed)),
        Err(FedClientError::Audit(e)) => {
            outcome.verified = false;
            outcome.error = Some(e.to_string());
            outcome.contradicted_uploads = record
                .audit
                .upload_contradictions()
                .iter()
                .map(|evidence| {
                    let c = &evidence.commitment.commitment;
                    format!("device {} in round {}", c.device, c.round)
                })
                .collect();
            keep(library, m, &record);
        }
        Err(e) => outcome.gossip_note = Some(e.to_string()),
    }
}
