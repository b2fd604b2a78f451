//! `hearth sim`: federated learning end to end on one machine (a real
//! server on loopback, simulated devices as threads). The simulation is
//! [`hearth_sim::simulate`]; this maps the flags onto its request and
//! prints the report.

use std::process::ExitCode;

use anyhow::Result;
use hearth_progress::{NoProgress, Progress};

use crate::args::SimArgs;
use crate::commands::text::ctrl_c_token;
use crate::progress_bar::Bar;

pub fn sim(args: SimArgs) -> Result<ExitCode> {
    let request = args.request();
    let cancel = ctrl_c_token()?;
    // With --json, standard output carries the report only.
    let bar = Bar::new(false);
    let progress: &dyn Progress = if args.json { &NoProgress } else { &bar };
    let report = hearth_sim::simulate(&request, progress, &cancel)?;
    if args.json {
        crate::output::json(&report)?;
    } else if report.ok {
        println!(
            "all rounds aggregated; every contributor verified its round in the transparency log"
        );
    } else {
        println!("some rounds failed or did not verify (see above)");
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
