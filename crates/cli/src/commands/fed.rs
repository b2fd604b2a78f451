//! `hearth fed ...` and `hearth audit`: opting in to a federation, taking
//! part in rounds when the device is eligible, and seeing (and checking)
//! everything that was shared.
//!
//! The workflows are `hearth_personalize::federation`'s (the app calls the
//! same ones); this module turns flags into requests and results into
//! lines. Federation is off until the person joins one. What a round sends
//! is only a clipped, noised, quantized and masked change to the shared
//! adapter; every upload is recorded with its size, the privacy it spent
//! and the hash of the exact bytes sent, which the server's transparency
//! log must then contain (checked after every round).

use std::process::ExitCode;

use anyhow::Result;
use hearth_personalize::eligibility::{ParticipationPolicy, platform_device_state};
use hearth_personalize::federation::{self, FederatedRoundRequest, JoinFederationRequest};
use hearth_progress::{CancelToken, Progress};
use hearth_store::Library;

use crate::args::{FedCommand, FedJoinArgs, FedRunArgs};
use crate::output;
use crate::progress_bar::Bar;

pub fn fed(mut library: Library, command: FedCommand) -> Result<ExitCode> {
    match command {
        FedCommand::Join(args) => join(&mut library, args),
        FedCommand::Status { json } => status(&library, json),
        FedCommand::Leave { id } => {
            let membership = federation::leave(&mut library, id)?;
            println!(
                "left federation {} at {}: this device takes part in no more rounds; its upload history stays (hearth fed history)",
                membership.federation_id, membership.server_url
            );
            Ok(ExitCode::SUCCESS)
        }
        FedCommand::History { json } => history(&library, json),
        FedCommand::Run(args) => run(&mut library, args),
    }
}

fn join(library: &mut Library, args: FedJoinArgs) -> Result<ExitCode> {
    let request = JoinFederationRequest {
        server_url: args.url,
        invite: args.invite,
        certificate_path: args.cert,
        epsilon_budget: args.epsilon_budget,
        policy: ParticipationPolicy {
            require_power: !args.any_power,
            require_idle: !args.any_load,
            hours: args.hours,
        },
    };
    let membership = federation::join(library, &request.join_request()?)?;
    println!(
        "joined federation {} at {} as device {} (membership {})",
        membership.federation_id, membership.server_url, membership.device_id, membership.id
    );
    println!(
        "what is shared, only during `hearth fed run` and only when eligible: a change to the \
shared adapter, clipped, noised for differential privacy (budget epsilon {} at delta {:e}), \
quantized and masked so the server can only add it to the others; never your texts, photos or \
adapters. Every upload is listed by `hearth fed history` and checked against the server's \
public log.",
        membership.epsilon_budget, membership.delta
    );
    Ok(ExitCode::SUCCESS)
}

fn status(library: &Library, json: bool) -> Result<ExitCode> {
    let rows = federation::status(library, &*platform_device_state())?;
    if json {
        output::json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "federation is off: this device is a member of no federation, and nothing leaves it"
        );
        return Ok(ExitCode::SUCCESS);
    }
    for row in rows {
        println!(
            "membership {}: federation {} at {} (device {})",
            row.id, row.federation_id, row.server_url, row.device_id
        );
        println!(
            "  {} uploads ({} sent); privacy spent: epsilon {:.3} of {} (delta {:e})",
            row.rounds.len(),
            output::bytes(row.bytes_sent),
            row.epsilon_spent,
            row.epsilon_budget,
            row.delta
        );
        let policy = &row.policy;
        println!(
            "  takes part {}{}{}",
            if policy.require_power {
                "on mains power, "
            } else {
                ""
            },
            if policy.require_idle {
                "when idle, "
            } else {
                ""
            },
            policy
                .hours
                .map_or("at any hour".to_owned(), |(start, end)| format!(
                    "from {start}:00 to {end}:00"
                ))
        );
        if row.eligible_now.eligible {
            println!("  eligible to take part now");
        } else {
            println!(
                "  not eligible now: {}",
                row.eligible_now.reasons.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn history(library: &Library, json: bool) -> Result<ExitCode> {
    let all = federation::history(library)?;
    if json {
        output::json(&all)?;
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("nothing has been uploaded");
    }
    for record in &all {
        let u = &record.upload;
        println!(
            "{}  federation {} round {:>4}: sent {} bytes, received {} bytes, epsilon {:.3}, upload sha256 {}",
            u.uploaded_at,
            record.federation_id,
            u.round,
            u.bytes_sent,
            u.bytes_received,
            u.epsilon,
            u.upload_sha256.get(..16).unwrap_or(&u.upload_sha256)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The bar for the round's steps and the local training; the workflow's
/// sentences go to standard output, as results.
struct RunProgress(Bar);

impl Progress for RunProgress {
    fn begin(&self, task: &str, total: Option<u64>) {
        self.0.begin(task, total);
    }

    fn advance(&self, done: u64) {
        self.0.advance(done);
    }

    fn note(&self, message: &str) {
        println!("{message}");
    }

    fn metric(&self, name: &str, step: u64, value: f64) {
        self.0.metric(name, step, value);
    }

    fn end(&self) {
        self.0.end();
    }
}

/// The library's request for `hearth fed run`'s flags (whose defaults are
/// [`FederatedRoundRequest::default`]'s, except that the command takes
/// part until Ctrl-C unless given `--rounds`).
fn request(args: FedRunArgs) -> FederatedRoundRequest {
    FederatedRoundRequest {
        membership: None,
        model: args.model,
        label: args.label,
        steps: args.steps,
        batch_size: args.batch,
        seq_len: args.seq,
        learning_rate: args.learning_rate,
        device: args.device.to_string(),
        rounds: args.rounds,
        once: args.once,
    }
}

fn run(library: &mut Library, args: FedRunArgs) -> Result<ExitCode> {
    let cancel = CancelToken::new();
    let on_interrupt = cancel.clone();
    let _ = ctrlc::set_handler(move || on_interrupt.cancel());
    let participation = request(args).participation()?;
    let summary = federation::participate(
        library,
        &participation,
        &*platform_device_state(),
        &RunProgress(Bar::new(false)),
        &cancel,
    )?;
    if !summary.rounds.is_empty() {
        println!(
            "{} rounds; privacy spent in this federation: epsilon {:.3} of {} (delta {:e})",
            summary.rounds.len(),
            summary.epsilon_spent,
            summary.epsilon_budget,
            summary.delta
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `hearth audit`: re-verifies everything stored about every federation
/// log this device watches.
pub fn audit(mut library: Library) -> Result<ExitCode> {
    let outcomes = federation::audit(&mut library)?;
    if outcomes.is_empty() {
        println!("no federation memberships: nothing to audit");
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for outcome in outcomes {
        match &outcome.error {
            None => {
                println!(
                    "federation {} at {}: verified {} signed heads, {} rounds ({} of this device's uploads, {} published adapters, {} round parameters); log size {}",
                    outcome.federation_id,
                    outcome.server_url,
                    outcome.checkpoints,
                    outcome.rounds,
                    outcome.commitments,
                    outcome.adapters,
                    outcome.parameters,
                    outcome
                        .log_size
                        .map_or("unknown (no round yet)".to_owned(), |s| s.to_string())
                );
                match (outcome.gossip_heads, &outcome.gossip_note) {
                    (Some(heads), _) => {
                        println!("  log heads compared with other devices': {heads}, no split view")
                    }
                    (None, Some(note)) => {
                        println!("  log heads not compared with other devices': {note}")
                    }
                    (None, None) => {}
                }
                if let Some((participations, backed)) = outcome.uploads_backed {
                    println!(
                        "  uploads in the log backed by their device's signed commitment: {backed} of {participations}, none contradicted"
                    );
                }
            }
            Some(error) => {
                failed = true;
                println!(
                    "federation {} at {}: FAILED: {error}",
                    outcome.federation_id, outcome.server_url
                );
                for upload in &outcome.contradicted_uploads {
                    println!("  the log dropped or swapped the upload of {upload}");
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use hearth_personalize::federation::Participation;

    use super::*;
    use crate::args::{Cli, Command};

    #[test]
    fn fed_run_without_flags_is_the_libraries_default_participation() {
        let cli = Cli::try_parse_from(["hearth", "fed", "run"]).expect("parses");
        let Command::Fed(FedCommand::Run(args)) = cli.command else {
            panic!("not fed run");
        };
        let parsed = request(args).participation().expect("valid");
        let default = Participation::default();
        assert_eq!(
            (parsed.steps, parsed.batch_size, parsed.seq_len),
            (default.steps, default.batch_size, default.seq_len)
        );
        assert_eq!(parsed.learning_rate, default.learning_rate);
        assert_eq!(parsed.device, default.device);
        assert_eq!((parsed.rounds, parsed.once), (default.rounds, default.once));
    }
}
