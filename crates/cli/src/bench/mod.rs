//! `hearth bench ...`: honest measurements of Hearth's own speed and memory.
//! Benchmarks print figures; they never pass or fail.

pub mod embed;
pub mod generate;
pub mod import;
pub mod log;
pub mod secagg;
pub mod train;

/// Peak resident memory of this process so far, in MiB.
pub fn peak_rss_self_mib() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map(|usage| usage.max_rss() as f64 / 1024.0)
        .unwrap_or(f64::NAN)
}
