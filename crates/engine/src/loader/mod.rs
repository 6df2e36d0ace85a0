//! Loading a diffusers model folder.
//!
//! - [`folder`]: `model_index.json`, configs, and which files hold weights.
//! - [`safetensors`]: validated weights read tensor by tensor into f32
//!   ([`WeightStore`]), behind a candle `VarBuilder`.
//! - [`hash`]: the content hash that names a model version, with its cache.
//! - [`lora`]: LoRA adapters (kohya and PEFT layouts), planned against a
//!   model's weight names and merged into them as they are read.
//! - [`inspect`]: a folder's configs, architecture and weight headers,
//!   without loading it (`easel models list`).

pub(crate) mod folder;
pub mod hash;
pub mod inspect;
pub mod lora;
pub(crate) mod safetensors;

pub(crate) use folder::{ModelFolder, read_json};
pub use safetensors::WeightStore;

use candle_core::Device;

#[cfg(feature = "cuda")]
use crate::error::EngineError;
use crate::error::Result;
use crate::model::DeviceChoice;

/// The candle device for a choice. CUDA needs the `cuda` cargo feature.
pub(crate) fn select_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda(ordinal) => {
            Device::new_cuda(ordinal).map_err(|e| EngineError::UnsupportedDevice {
                detail: format!("CUDA device {ordinal} is not usable: {e}"),
            })
        }
        #[cfg(not(feature = "cuda"))]
        DeviceChoice::Cuda(_) => Err(crate::device::no_gpu_support(choice)),
    }
}
