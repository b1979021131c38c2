//! Where the engine computes: the CPU always; CUDA and Metal when this build has them.

use candle_core::Device;

use super::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Cuda,
    Metal,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 3] = [DeviceKind::Cpu, DeviceKind::Cuda, DeviceKind::Metal];

    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "CPU",
            DeviceKind::Cuda => "CUDA",
            DeviceKind::Metal => "Metal",
        }
    }

    /// Whether this build can use it at all (`--features cuda` / `--features metal`).
    pub fn compiled(self) -> bool {
        match self {
            DeviceKind::Cpu => true,
            DeviceKind::Cuda => cfg!(feature = "cuda"),
            DeviceKind::Metal => cfg!(feature = "metal"),
        }
    }

    pub fn of(device: &Device) -> Self {
        match device {
            Device::Cpu => DeviceKind::Cpu,
            Device::Cuda(_) => DeviceKind::Cuda,
            Device::Metal(_) => DeviceKind::Metal,
        }
    }

    /// The first device of this kind.
    pub fn open(self) -> Result<Device> {
        let unavailable = |why: String| EngineError::InvalidParams(why);
        match self {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda if !self.compiled() => Err(unavailable(
                "this build has no CUDA support: build with `--features cuda`".into(),
            )),
            DeviceKind::Metal if !self.compiled() => Err(unavailable(
                "this build has no Metal support: build with `--features metal` on macOS".into(),
            )),
            DeviceKind::Cuda => Device::new_cuda(0)
                .map_err(|e| unavailable(format!("no usable CUDA device (NVIDIA driver?): {e}"))),
            DeviceKind::Metal => Device::new_metal(0)
                .map_err(|e| unavailable(format!("no usable Metal device: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_always_opens_and_missing_backends_say_how_to_get_them() {
        assert!(DeviceKind::Cpu.open().is_ok());
        for kind in [DeviceKind::Cuda, DeviceKind::Metal] {
            if !kind.compiled() {
                let err = kind.open().unwrap_err().to_string();
                assert!(err.contains("--features"), "{err}");
            }
        }
    }
}
