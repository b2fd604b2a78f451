//! `hearth bench ...`: honest measurements of Hearth's own speed and memory.
//! Benchmarks print figures; they never pass or fail.

pub mod embed;
pub mod generate;
pub mod import;
pub mod log;
mod reference;
pub mod secagg;
pub mod train;

/// Peak resident memory of this process so far, in MiB.
pub fn peak_rss_self_mib() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map(|usage| usage.max_rss() as f64 / 1024.0)
        .unwrap_or(f64::NAN)
}

/// This process's own peak resident memory so far, in MiB: `VmHWM`, the
/// figure the PyTorch references report for themselves, so that both
/// sides' peaks and baselines are measured the same way (`ru_maxrss`
/// where `/proc` is absent).
pub fn vm_hwm_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or_else(peak_rss_self_mib, |kib| kib / 1024.0)
}

/// A side's memory: its peak, and the peak before its work began (for
/// PyTorch: right after its imports; for Hearth: before the model loads).
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Peak resident memory, MiB.
    pub peak: f64,
    /// Peak resident memory before the work, MiB.
    pub baseline: f64,
}

impl Memory {
    /// The peak less the baseline: what the work itself took.
    pub fn net(&self) -> f64 {
        self.peak - self.baseline
    }

    /// "peak P MiB (baseline B, net N)".
    pub fn describe(&self, baseline_is: &str) -> String {
        format!(
            "peak RSS {:.0} MiB ({baseline_is} {:.0}, net {:.0})",
            self.peak,
            self.baseline,
            self.net()
        )
    }
}
