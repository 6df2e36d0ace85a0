//! The watermark's 32-bit image tag: a hash of a canonical byte encoding
//! of the record's typed fields, so the mark depends on what made the
//! pixels and never on how some JSON happened to be written.
//!
//! # Encoding (version 1)
//! The bytes hashed are, in this order:
//!
//! | field            | encoding                                          |
//! |------------------|---------------------------------------------------|
//! | domain           | the ASCII bytes `easel.image-tag.v1`, then `0x00` |
//! | `model_hash`     | string                                            |
//! | `prompt`         | string                                            |
//! | `negative_prompt`| string                                            |
//! | `seed`           | u64                                               |
//! | `steps`          | u32                                               |
//! | `guidance_scale` | f32                                               |
//! | `sampler`        | string: its API name (`euler`, `dpmpp_2m`, …)     |
//! | `schedule`       | string: its API name (`default`, `karras`, …)     |
//! | `strength`       | `0x00` when `None`; `0x01` then f32 when `Some`   |
//! | `width`          | u32                                               |
//! | `height`         | u32                                               |
//! | `loras`          | only when the image has LoRAs: per LoRA, in name  |
//! |                  | order, its hash (string; its name when it has no  |
//! |                  | hash) then its weight (f32)                       |
//!
//! A *string* is its UTF-8 byte length as a big-endian u32, then the bytes;
//! a *u32*/*u64* is big-endian; an *f32* is its IEEE-754 bits as a
//! big-endian u32. The tag is the first four bytes of the BLAKE3 hash of
//! the whole, read as a big-endian u32.
//!
//! These are the fields that determine the pixels: the same model weights,
//! parameters and seed give the same tag (and, on servers with the same
//! server tag, the same marked pixels). The image id, the watermark id,
//! the Easel version, the model's name and its architecture are left out:
//! they name or describe the image but do not change it. Any change to
//! this layout must change the domain string. (The `loras` trailer came
//! later without one: it is absent from every image made without LoRAs,
//! so their bytes, and every tag made before it, are unchanged.)

use super::GenerationRecord;

/// The domain string that starts the encoding; names its version.
pub const TAG_ENCODING_VERSION: &str = "easel.image-tag.v1";

impl GenerationRecord {
    /// The canonical bytes the image tag hashes (see the module
    /// documentation of `record::tag` for the layout).
    pub fn tag_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.prompt.len() + self.negative_prompt.len());
        out.extend_from_slice(TAG_ENCODING_VERSION.as_bytes());
        out.push(0);
        put_str(&mut out, &self.model_hash);
        put_str(&mut out, &self.prompt);
        put_str(&mut out, &self.negative_prompt);
        out.extend_from_slice(&self.seed.to_be_bytes());
        out.extend_from_slice(&self.steps.to_be_bytes());
        out.extend_from_slice(&self.guidance_scale.to_bits().to_be_bytes());
        put_str(&mut out, self.sampler.as_str());
        put_str(&mut out, self.schedule.as_str());
        match self.strength {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                out.extend_from_slice(&s.to_bits().to_be_bytes());
            }
        }
        out.extend_from_slice(&self.width.to_be_bytes());
        out.extend_from_slice(&self.height.to_be_bytes());
        for lora in &self.loras {
            put_str(&mut out, lora.hash.as_deref().unwrap_or(&lora.name));
            out.extend_from_slice(&lora.weight.to_bits().to_be_bytes());
        }
        out
    }

    /// The image's 32-bit watermark tag: the first four bytes of the
    /// BLAKE3 hash of [`GenerationRecord::tag_bytes`], big-endian.
    pub fn image_tag(&self) -> u32 {
        let hash = blake3::hash(&self.tag_bytes());
        let b = hash.as_bytes();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// A string: its byte length as a big-endian u32, then its UTF-8 bytes.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).expect("a record string is under 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}
