//! The LoRA adapters a job asks for ([`LoraRef`]) and their limits.
//!
//! A request names LoRAs by the file stem of a `*.safetensors` file in the
//! server's LoRA folder, each with a weight; the edge checks the weight
//! ([`check_lora_weight`]) and the count ([`MAX_LORAS`]), resolves the name
//! to the file's content hash and stores the result in
//! [`crate::GenerationParams::loras`], sorted by name, so that one
//! combination has one form (one warm-pool entry, one batch key).

use serde::{Deserialize, Serialize};

use crate::ParamError;

/// Most LoRAs one request may combine.
pub const MAX_LORAS: usize = 8;

/// Largest weight, in absolute value, a LoRA may be applied with.
/// A1111 accepts any number; weights beyond ±4 only ever appear by mistake
/// (a typo such as `<lora:x:08>`), and they saturate the image.
pub const MAX_LORA_WEIGHT: f32 = 4.0;

/// One LoRA a job runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraRef {
    /// The file stem in the server's LoRA folder (`pixel-art` for
    /// `pixel-art.safetensors`).
    pub name: String,
    /// The multiplier of its update (1 applies it as trained). Written in
    /// JSON as its shortest decimal form (`0.8`, not `0.800000011920929`).
    #[serde(serialize_with = "shortest")]
    pub weight: f32,
    /// `sha256:<hex>` of the file when the job was accepted: the job runs
    /// only on that content, and its images record it. `None` only in
    /// parameters built outside a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl LoraRef {
    /// A1111's short form of the hash (its `Lora hashes` entry): the first
    /// ten hex digits of the SHA-256, or `""` when none is known.
    pub fn short_hash(&self) -> &str {
        let hex = self
            .hash
            .as_deref()
            .map(|h| h.strip_prefix("sha256:").unwrap_or(h))
            .unwrap_or("");
        hex.get(..10).unwrap_or(hex)
    }
}

/// An f32 as the f64 its shortest decimal form reads as, so that JSON shows
/// the number a client wrote.
fn shortest<S: serde::Serializer>(w: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(w.to_string().parse().unwrap_or(f64::from(*w)))
}

/// Checks a LoRA weight: a finite number within ±[`MAX_LORA_WEIGHT`];
/// anything else is `invalid_lora_weight` naming the LoRA.
pub fn check_lora_weight(name: &str, weight: f64) -> Result<f32, ParamError> {
    if weight.is_finite() && weight.abs() <= f64::from(MAX_LORA_WEIGHT) {
        return Ok(weight as f32);
    }
    Err(ParamError::new(
        "loras",
        "invalid_lora_weight",
        format!(
            "LoRA `{}` has weight {weight}: a weight must be a finite number from \
             -{MAX_LORA_WEIGHT} to {MAX_LORA_WEIGHT}",
            name.chars().take(80).collect::<String>()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_finite_and_within_four() {
        assert_eq!(check_lora_weight("a", 0.8), Ok(0.8));
        assert_eq!(check_lora_weight("a", -4.0), Ok(-4.0));
        for bad in [4.5, -7.0, f64::NAN, f64::INFINITY] {
            let e = check_lora_weight("a", bad).unwrap_err();
            assert_eq!((e.field, e.code), ("loras", "invalid_lora_weight"));
        }
    }

    #[test]
    fn a_weight_is_written_as_the_client_wrote_it() {
        let r = LoraRef {
            name: "a".into(),
            weight: 0.8,
            hash: None,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"name":"a","weight":0.8}"#);
        assert_eq!(serde_json::from_str::<LoraRef>(&json).unwrap(), r);
    }

    #[test]
    fn the_short_hash_is_ten_hex_digits() {
        let r = LoraRef {
            name: "a".into(),
            weight: 1.0,
            hash: Some("sha256:0123456789abcdef".into()),
        };
        assert_eq!(r.short_hash(), "0123456789");
        assert_eq!(LoraRef { hash: None, ..r }.short_hash(), "");
    }
}
