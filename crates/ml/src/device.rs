//! Choosing where tensors live: `cpu` always; `cuda` and `metal` when built
//! with the features of the same names; `auto` picks the best available.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{MlError, Result};

/// A device as a person names it on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The best available: CUDA, then Metal, then the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The first NVIDIA GPU (needs the `cuda` feature).
    Cuda,
    /// The Apple GPU (needs the `metal` feature).
    Metal,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            "metal" => Ok(DeviceChoice::Metal),
            other => Err(format!(
                "unknown device {other:?} (expected auto, cpu, cuda or metal)"
            )),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Metal => "metal",
        })
    }
}

impl DeviceChoice {
    /// Opens the device.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda => cuda(),
            DeviceChoice::Metal => metal(),
            DeviceChoice::Auto => Ok(cuda().or_else(|_| metal()).unwrap_or(Device::Cpu)),
        }
    }
}

fn cuda() -> Result<Device> {
    if !cfg!(feature = "cuda") {
        return Err(MlError::DeviceUnavailable(
            "cuda".into(),
            "this build has no CUDA support (build with --features cuda)".into(),
        ));
    }
    Device::new_cuda(0).map_err(|e| MlError::DeviceUnavailable("cuda".into(), e.to_string()))
}

fn metal() -> Result<Device> {
    if !cfg!(feature = "metal") {
        return Err(MlError::DeviceUnavailable(
            "metal".into(),
            "this build has no Metal support (build with --features metal)".into(),
        ));
    }
    Device::new_metal(0).map_err(|e| MlError::DeviceUnavailable("metal".into(), e.to_string()))
}

/// A short name for a device, for logs and run records.
pub fn device_name(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_cpu_always_opens() {
        for choice in [
            DeviceChoice::Auto,
            DeviceChoice::Cpu,
            DeviceChoice::Cuda,
            DeviceChoice::Metal,
        ] {
            assert_eq!(choice.to_string().parse::<DeviceChoice>(), Ok(choice));
        }
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert!(DeviceChoice::Cpu.open().expect("cpu").is_cpu());
        DeviceChoice::Auto
            .open()
            .expect("auto always finds a device");
    }
}
