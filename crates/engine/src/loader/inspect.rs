//! Describing a model folder without loading it: its configs, the
//! architecture they describe, and its weight files checked from their
//! safetensors headers alone (8 bytes of little-endian length, then JSON
//! naming each tensor's dtype, shape and byte range). No tensor data is
//! read, so this costs milliseconds even for SDXL (`easel models list`).

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};
use crate::loader::ModelFolder;
use crate::loader::hash::{HashCache, cached_content_hash};
use crate::model::Architecture;
use crate::sampling::SchedulerConfig;
use crate::text::{TextEncoder, TextFamily};
use crate::unet::UNetConfig;
use crate::vae::VaeConfig;

/// The largest safetensors header read (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 * 1024 * 1024;

/// A folder's configs, read and checked before any weight is mapped.
pub(crate) struct Configs {
    pub unet: UNetConfig,
    pub vae: Option<VaeConfig>,
    pub scheduler: SchedulerConfig,
    /// Two text encoders and size conditioning.
    pub sdxl: bool,
    pub architecture: Architecture,
}

/// Reads the configs of an opened folder and names its architecture;
/// fails on what the engine cannot run.
pub(crate) fn read_configs(folder: &ModelFolder) -> Result<Configs> {
    let unet_cfg = UNetConfig::load(&folder.file("unet", "config.json"))?;
    let family = TextEncoder::family(folder, "text_encoder")?;
    let sdxl = folder.has_component("text_encoder_2") || unet_cfg.text_time().is_some();
    if sdxl {
        let family2 = TextEncoder::family(folder, "text_encoder_2")?;
        let clip = |f| matches!(f, TextFamily::Clip { .. });
        if !clip(family) || !clip(family2) || unet_cfg.text_time().is_none() {
            return Err(EngineError::UnknownArchitecture {
                detail: "an SDXL-style folder needs two CLIP text encoders and a UNet with \
                         addition_embed_type text_time"
                    .into(),
            });
        }
    }
    let vae_cfg = if folder.has_component("vae") {
        Some(VaeConfig::load(&folder.file("vae", "config.json"))?)
    } else {
        None
    };
    let scheduler_path = folder.file("scheduler", "scheduler_config.json");
    if !scheduler_path.is_file() {
        return Err(EngineError::MissingFile {
            path: scheduler_path,
        });
    }
    let scheduler = SchedulerConfig::from_file(&scheduler_path)?;
    let architecture = match (&vae_cfg, family) {
        (Some(vae), _) if sdxl => {
            check_latent_channels(folder, &unet_cfg, vae)?;
            Architecture::Sdxl
        }
        (Some(vae), TextFamily::Clip { exact_gelu, .. }) => {
            check_latent_channels(folder, &unet_cfg, vae)?;
            if exact_gelu {
                Architecture::Sd2
            } else {
                Architecture::Sd1
            }
        }
        (Some(_), TextFamily::Bert) => {
            return Err(EngineError::UnknownArchitecture {
                detail: "a latent (VAE) model conditioned on a BERT encoder".into(),
            });
        }
        (None, _) if unet_cfg.in_channels == 3 && unet_cfg.out_channels == 3 => Architecture::Pixel,
        (None, _) => {
            return Err(EngineError::UnknownArchitecture {
                detail: format!(
                    "no vae/ folder, and the UNet has {} input channels (a pixel-space \
                     model needs 3)",
                    unet_cfg.in_channels
                ),
            });
        }
    };
    Ok(Configs {
        unet: unet_cfg,
        vae: vae_cfg,
        scheduler,
        sdxl,
        architecture,
    })
}

/// A latent UNet makes the VAE's latents and takes them, or (an
/// inpainting UNet) takes them with a mask and a masked image's latents.
fn check_latent_channels(folder: &ModelFolder, unet: &UNetConfig, vae: &VaeConfig) -> Result<()> {
    let latent = vae.latent_channels;
    if unet.out_channels == latent && (unet.in_channels == latent || unet.inpainting()) {
        return Ok(());
    }
    Err(EngineError::InvalidConfig {
        path: folder.file("unet", "config.json"),
        detail: format!(
            "UNet takes {} channels and makes {}, but the VAE makes {latent}-channel latents \
             (a UNet takes {latent}, or {} for inpainting, and makes {latent})",
            unet.in_channels,
            unet.out_channels,
            2 * latent + 1
        ),
    })
}

/// The weight files a model with these configs loads, in component order.
pub(crate) fn weight_files(folder: &ModelFolder, configs: &Configs) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for component in ["text_encoder", "text_encoder_2", "unet", "vae"] {
        let present = match component {
            "vae" => configs.vae.is_some(),
            "text_encoder_2" => configs.sdxl,
            _ => true,
        };
        if present {
            files.extend(folder.weight_files(component)?);
        }
    }
    Ok(files)
}

/// What the headers say about the weight files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsCheck {
    /// Every header parses and every file holds the bytes its header names.
    Complete,
    /// A file whose header is unreadable, or which is shorter than its
    /// header says (a partial download).
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

/// A model folder as `easel models list` shows it.
#[derive(Debug, Clone)]
pub struct FolderSummary {
    /// The architecture its configs describe.
    pub architecture: Architecture,
    /// The weight files the engine would load.
    pub weight_files: Vec<PathBuf>,
    /// Their total size on disk, in bytes.
    pub disk_bytes: u64,
    /// The content hash, when the hash cache holds a fresh entry for every
    /// weight file; `None` when some file would have to be hashed.
    pub cached_hash: Option<String>,
    /// The weight files checked against their headers.
    pub weights: WeightsCheck,
}

/// Describes the folder `dir` from its configs and safetensors headers;
/// reads no tensor data and hashes nothing. Fails on what
/// [`crate::Model::load`] would reject before mapping weights (a missing or
/// malformed config, an unknown architecture, a missing weight file).
pub fn inspect(dir: &Path, cache: &HashCache) -> Result<FolderSummary> {
    let folder = ModelFolder::open(dir)?;
    let configs = read_configs(&folder)?;
    let files = weight_files(&folder, &configs)?;
    let mut disk_bytes = 0;
    let mut weights = WeightsCheck::Complete;
    for path in &files {
        let len = std::fs::metadata(path)
            .map_err(|source| EngineError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        disk_bytes += len;
        if weights == WeightsCheck::Complete
            && let Err(detail) = check_header(path, len)
        {
            weights = WeightsCheck::Damaged {
                path: path.clone(),
                detail,
            };
        }
    }
    Ok(FolderSummary {
        architecture: configs.architecture,
        cached_hash: cached_content_hash(dir, &files, cache),
        weight_files: files,
        disk_bytes,
        weights,
    })
}

/// Checks that a safetensors file of `len` bytes holds the data its header
/// names, reading only the header.
fn check_header(path: &Path, len: u64) -> std::result::Result<(), String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let mut prefix = [0u8; 8];
    f.read_exact(&mut prefix)
        .map_err(|_| format!("{len} bytes: too short for a safetensors header"))?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > MAX_HEADER || 8 + header_len > len {
        return Err(format!(
            "header length {header_len} does not fit the {len}-byte file"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(|e| e.to_string())?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| format!("header is not JSON: {e}"))?;
    let mut end = 0u64;
    for (name, tensor) in &header {
        if name == "__metadata__" {
            continue;
        }
        let offsets = tensor
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .and_then(|o| o.get(1))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("tensor `{name}` has no data_offsets"))?;
        end = end.max(offsets);
    }
    let expected = 8 + header_len + end;
    if expected != len {
        return Err(format!(
            "the header names {expected} bytes but the file has {len} (truncated or padded)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safetensors(data_len: u64, written: u64) -> Vec<u8> {
        let header = serde_json::json!({
            "w": {"dtype": "F32", "shape": [data_len / 4], "data_offsets": [0, data_len]}
        });
        let header = serde_json::to_vec(&header).unwrap();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&header);
        out.resize(out.len() + written as usize, 0);
        out
    }

    #[test]
    fn a_complete_file_passes_and_a_truncated_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        std::fs::write(&p, safetensors(64, 64)).unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        assert_eq!(check_header(&p, len), Ok(()));
        std::fs::write(&p, safetensors(64, 10)).unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(check_header(&p, len).unwrap_err().contains("truncated"));
        std::fs::write(&p, b"12").unwrap();
        assert!(check_header(&p, 2).unwrap_err().contains("too short"));
    }
}
