//! The training metadata of a LoRA file, as the AUTOMATIC1111 web UI lists
//! it (`GET /sdapi/v1/loras`' `metadata`): the `__metadata__` map of the
//! safetensors header (kohya's `ss_*` keys: base model, network rank and
//! alpha, training resolution, tag frequencies, …), with values that hold
//! JSON (`ss_tag_frequency`, `ss_dataset_dirs`) parsed. Only the header is
//! read, not the tensors.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

/// Largest header read, in bytes: kohya's headers are a few hundred KB at
/// most (tag frequencies); the safetensors format allows 100 MB.
pub const MAX_HEADER_BYTES: u64 = 16 * 1024 * 1024;

/// Why a file's metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// Reading the file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not a safetensors file (or its header is too large).
    #[error("{path} is not a safetensors file: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The `__metadata__` of the safetensors file at `path` (empty when it has
/// none).
pub fn training_metadata(path: &Path) -> Result<Map<String, Value>, MetadataError> {
    let shown = path.display().to_string();
    let io = |source| MetadataError::Io {
        path: shown.clone(),
        source,
    };
    let invalid = |reason: String| MetadataError::Invalid {
        path: shown.clone(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER_BYTES {
        return Err(invalid(format!(
            "a {len}-byte header (at most {MAX_HEADER_BYTES} are read)"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: Value =
        serde_json::from_slice(&header).map_err(|e| invalid(format!("its header: {e}")))?;
    let Some(Value::Object(meta)) = header.get("__metadata__") else {
        return Ok(Map::new());
    };
    Ok(meta
        .iter()
        .map(|(key, value)| {
            let parsed = match value {
                Value::String(text) if text.starts_with('{') || text.starts_with('[') => {
                    serde_json::from_str(text).unwrap_or_else(|_| value.clone())
                }
                _ => value.clone(),
            };
            (key.clone(), parsed)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safetensors(header: &Value) -> tempfile::NamedTempFile {
        let text = serde_json::to_vec(header).unwrap();
        let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&text);
        bytes.extend_from_slice(&[0; 16]);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        file
    }

    #[test]
    fn reads_kohyas_keys_and_parses_the_json_ones() {
        let file = safetensors(&serde_json::json!({
            "__metadata__": {
                "ss_network_dim": "16",
                "ss_base_model_version": "sd_v1",
                "ss_tag_frequency": "{\"img\": {\"cat\": 3}}",
                "ss_note": "{not json",
            },
            "lora_unet_x.lora_down.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        }));
        let meta = training_metadata(file.path()).unwrap();
        assert_eq!(meta["ss_network_dim"], "16");
        assert_eq!(meta["ss_tag_frequency"]["img"]["cat"], 3);
        assert_eq!(meta["ss_note"], "{not json");
        assert_eq!(meta.len(), 4);
    }

    #[test]
    fn no_metadata_is_empty_and_a_bad_header_is_an_error() {
        let none = safetensors(&serde_json::json!({}));
        assert!(training_metadata(none.path()).unwrap().is_empty());
        let bad = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(bad.path(), u64::MAX.to_le_bytes()).unwrap();
        assert!(matches!(
            training_metadata(bad.path()),
            Err(MetadataError::Invalid { .. })
        ));
    }
}
