//! Which device computes, and its one text form.
//!
//! `cpu`, `cuda` (the first GPU, `cuda:0`) or `cuda:N` is what the server's
//! `pool.device` key and `easel generate --device` accept, and what the
//! `device` label of the metrics prints; both go through [`FromStr`] and
//! [`fmt::Display`] here so the forms cannot drift apart.

use std::fmt;
use std::str::FromStr;

use crate::error::{EngineError, Result};

/// Whether this build has candle's CUDA backend (the `cuda` cargo feature).
/// Without it, [`DeviceChoice::Cuda`] fails at [`DeviceChoice::usable`] and
/// at model load.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The accepted text forms, for error messages.
pub const DEVICE_FORMS: &str = "`cpu`, `cuda` (the first GPU, same as `cuda:0`) or `cuda:N` \
                                (N the GPU's ordinal: 0, 1, ...)";

/// Which device computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// The CPU (default).
    #[default]
    Cpu,
    /// CUDA device with this ordinal (needs the `cuda` feature).
    Cuda(usize),
}

impl DeviceChoice {
    /// This choice, if this build can compute on it: CUDA needs the `cuda`
    /// feature ([`CUDA_BUILT`]). Whether the GPU exists is only known when
    /// a model loads on it.
    pub fn usable(self) -> Result<Self> {
        match self {
            DeviceChoice::Cuda(_) if !CUDA_BUILT => Err(no_gpu_support(self)),
            _ => Ok(self),
        }
    }
}

/// The error for a CUDA device asked of a build without the `cuda` feature.
pub(crate) fn no_gpu_support(choice: DeviceChoice) -> EngineError {
    EngineError::UnsupportedDevice {
        detail: format!(
            "`{choice}` requested, but this build of Easel has no GPU support: rebuild with \
             `--features easel-engine/cuda` (docs/deployment.md), or use `cpu`"
        ),
    }
}

impl fmt::Display for DeviceChoice {
    /// `cpu` or `cuda:N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// A device string that is none of [`DEVICE_FORMS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a device: use {DEVICE_FORMS}")]
pub struct ParseDeviceError {
    /// The text as given.
    pub given: String,
}

impl FromStr for DeviceChoice {
    type Err = ParseDeviceError;

    /// `cpu`, `cuda` or `cuda:N`, lower case. The ordinal is plain decimal
    /// digits (`usize`'s parser alone would also take `+1`).
    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let err = || ParseDeviceError {
            given: text.to_string(),
        };
        match text {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => {
                let ordinal = text.strip_prefix("cuda:").ok_or_else(err)?;
                if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                ordinal.parse().map(DeviceChoice::Cuda).map_err(|_| err())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_cuda_and_cuda_with_an_ordinal_parse() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:0".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        assert_eq!("cuda:12".parse(), Ok(DeviceChoice::Cuda(12)));
    }

    #[test]
    fn anything_else_is_refused_with_the_value_and_the_forms() {
        for bad in [
            "",
            "tpu",
            "gpu",
            "CPU",
            " cpu",
            "cuda:",
            "cuda:x",
            "cuda:-1",
            "cuda:+1",
            "cuda:1.5",
            "cuda0",
            "cuda:0:1",
            "cuda: 1",
            "cuda:99999999999999999999999",
        ] {
            let err = bad.parse::<DeviceChoice>().expect_err(bad);
            assert_eq!(err.given, bad);
            let text = err.to_string();
            assert!(text.contains(&format!("`{bad}`")), "{text}");
            assert!(
                text.contains("`cpu`") && text.contains("`cuda:N`"),
                "{text}"
            );
        }
    }

    #[test]
    fn the_printed_form_parses_back() {
        for choice in [
            DeviceChoice::Cpu,
            DeviceChoice::Cuda(0),
            DeviceChoice::Cuda(7),
        ] {
            assert_eq!(choice.to_string().parse(), Ok(choice));
        }
        assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn the_cpu_is_always_usable_and_cuda_only_in_a_cuda_build() {
        assert_eq!(DeviceChoice::Cpu.usable().unwrap(), DeviceChoice::Cpu);
        let cuda = DeviceChoice::Cuda(1).usable();
        if CUDA_BUILT {
            assert_eq!(cuda.unwrap(), DeviceChoice::Cuda(1));
        } else {
            let err = cuda.unwrap_err();
            assert_eq!(err.code(), "unsupported_device");
            let text = err.to_string();
            assert!(text.contains("`cuda:1`"), "{text}");
            assert!(text.contains("no GPU support"), "{text}");
            assert!(text.contains("--features easel-engine/cuda"), "{text}");
        }
    }
}
