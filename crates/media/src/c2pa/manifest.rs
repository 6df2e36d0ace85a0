//! The manifest Easel signs: one `c2pa.created` action whose digital source
//! type says "trained algorithmic media", a small `org.easel.generation`
//! assertion naming the model and its content hash, and, for a watermarked
//! image, a `c2pa.soft-binding` assertion carrying the watermark's id, so a
//! copy stripped of its manifest is linked back to it by detection.

use serde_json::{Value, json};

/// IPTC's digital source type for media made by a generative model.
pub(crate) const DIGITAL_SOURCE_TYPE: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";

/// Label of Easel's own assertion: `{"model": {"name", "hash"}}`.
pub(crate) const GENERATION_LABEL: &str = "org.easel.generation";

/// The soft-binding algorithm name of Easel's watermark (`docs/watermark.md`).
pub const SOFT_BINDING_ALG: &str = "org.easel.easelmark.1";

/// What a signed manifest says about an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimInfo {
    /// The generator's name: the claim generator and the action's software
    /// agent (the server passes `"Easel"`).
    pub generator: String,
    /// The generator's version (the server passes its crate version).
    pub version: String,
    /// The model's name, e.g. `easel-emoji`.
    pub model_name: String,
    /// The model's content hash, as recorded in the image's metadata.
    pub model_hash: String,
    /// The manifest's title, e.g. the image id; none by default.
    pub title: Option<String>,
    /// The id of the invisible watermark in the image's pixels (12 hex
    /// digits), recorded as a soft binding; `None`: not watermarked.
    pub watermark_id: Option<String>,
}

/// The manifest definition (the c2pa SDK's JSON form) for `claim`.
pub(crate) fn definition(claim: &ClaimInfo, mime: &str) -> Value {
    let agent = json!({ "name": claim.generator, "version": claim.version });
    let model = json!({ "name": claim.model_name, "hash": claim.model_hash });
    let mut definition = json!({
        "claim_generator_info": [agent],
        "format": mime,
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [{
                        "action": "c2pa.created",
                        "digitalSourceType": DIGITAL_SOURCE_TYPE,
                        "softwareAgent": agent,
                        "parameters": { "org.easel.model": model },
                    }],
                },
            },
            { "label": GENERATION_LABEL, "data": { "model": model } },
        ],
    });
    if let Some(title) = &claim.title {
        definition["title"] = json!(title);
    }
    if let (Some(id), Some(assertions)) =
        (&claim.watermark_id, definition["assertions"].as_array_mut())
    {
        // The whole image is the scope (an empty scope map).
        assertions.push(json!({
            "label": "c2pa.soft-binding",
            "data": {
                "alg": SOFT_BINDING_ALG,
                "blocks": [{ "scope": {}, "value": id }],
            },
        }));
    }
    definition
}
