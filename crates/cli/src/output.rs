//! Small helpers for printing to people and to scripts.

use std::io::Write;

use serde::Serialize;

/// Human-readable size in decimal units ("4.2 MB").
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Pretty JSON on standard output, followed by a newline.
pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(4_200_000), "4.2 MB");
        assert_eq!(bytes(1_000), "1.0 kB");
    }
}
