//! GPU utilisation from NVML, sampled at scrape time.
//!
//! NVML (`libnvidia-ml.so`, part of the NVIDIA driver) is opened at run time
//! on the first sample and kept for the life of the process. Where it is
//! missing, as on every machine without an NVIDIA driver, there is no
//! series and one debug line says why. The ratio is NVML's device-wide
//! "percent of time a kernel ran" over its last sample period, ÷ 100: it
//! counts every process on the GPU, not only Easel.

use std::sync::OnceLock;

use nvml_wrapper::Nvml;

/// The process's NVML handle, or `None` where the library did not load.
static NVML: OnceLock<Option<Nvml>> = OnceLock::new();

fn nvml() -> Option<&'static Nvml> {
    NVML.get_or_init(|| match Nvml::init() {
        Ok(nvml) => Some(nvml),
        Err(e) => {
            tracing::debug!(error = %e, "NVML is not available: no GPU utilisation series");
            None
        }
    })
    .as_ref()
}

/// `(device index, utilisation in [0, 1])` for every GPU NVML can read;
/// empty without NVML. A device that fails to answer is skipped.
pub(super) fn utilization() -> Vec<(u32, f64)> {
    let Some(nvml) = nvml() else {
        return Vec::new();
    };
    let count = nvml.device_count().unwrap_or(0);
    (0..count)
        .filter_map(|i| {
            let rates = nvml.device_by_index(i).ok()?.utilization_rates().ok()?;
            Some((i, f64::from(rates.gpu.min(100)) / 100.0))
        })
        .collect()
}
