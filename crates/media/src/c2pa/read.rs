//! [`read_c2pa`]: the manifest embedded in an image, validated, in a few
//! fields (for tests, `easel verify` and the verification endpoint).

use std::io::Cursor;

use c2pa::{Context, Reader, Settings};
use easel_core::OutputFormat;
use serde::Serialize;
use serde_json::Value;

use super::manifest::{GENERATION_LABEL, SOFT_BINDING_ALG};
use crate::error::MediaError;

/// What an image's active C2PA manifest says, and whether it validates.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct C2paSummary {
    /// The SDK's verdict: `Trusted` (valid and chaining to a trust anchor),
    /// `Valid` (intact and well signed, signer not trusted) or `Invalid`
    /// (for instance a changed byte: `assertion.dataHash.mismatch`).
    pub validation_state: String,
    /// The first claim generator, `"name version"`.
    pub claim_generator: Option<String>,
    /// The actions, e.g. `["c2pa.created"]`.
    pub actions: Vec<String>,
    /// The first action's digital source type (an IPTC URI).
    pub digital_source_type: Option<String>,
    /// The model hash from Easel's `org.easel.generation` assertion.
    pub model_hash: Option<String>,
    /// The watermark id of the `c2pa.soft-binding` assertion of Easel's
    /// watermark (`org.easel.easelmark.1`), if any.
    pub soft_binding: Option<String>,
    /// The validation failure codes of the active manifest; a `Valid` but
    /// untrusted manifest lists `signingCredential.untrusted` here.
    pub errors: Vec<String>,
}

/// Reads and validates the C2PA manifest in `bytes`, an image in `format`.
/// `trust_anchor_pem` (e.g. the generated `ca.pem`) is trusted in addition
/// to nothing: without it the best verdict is `Valid`. `Ok(None)`: the
/// image carries no manifest. A manifest that fails validation is a
/// summary with state `Invalid`; only one the SDK cannot parse at all is an
/// error.
pub fn read_c2pa(
    bytes: &[u8],
    format: OutputFormat,
    trust_anchor_pem: Option<&str>,
) -> Result<Option<C2paSummary>, MediaError> {
    let failed = |e: c2pa::Error| MediaError::C2paRead {
        reason: e.to_string(),
    };
    let mut settings = Settings::default();
    settings.trust.user_anchors = trust_anchor_pem.map(str::to_string);
    let context = Context::new().with_settings(settings).map_err(failed)?;
    let reader =
        match Reader::from_context(context).with_stream(format.mime_type(), Cursor::new(bytes)) {
            Ok(reader) => reader,
            Err(c2pa::Error::JumbfNotFound | c2pa::Error::ProvenanceMissing) => return Ok(None),
            Err(e) => return Err(failed(e)),
        };
    let store: Value = serde_json::from_str(&reader.json()).map_err(|e| MediaError::C2paRead {
        reason: format!("the SDK's JSON does not parse: {e}"),
    })?;
    Ok(Some(summarize(
        format!("{:?}", reader.validation_state()),
        &store,
    )))
}

/// The summary of a manifest store in the SDK's JSON form.
fn summarize(validation_state: String, store: &Value) -> C2paSummary {
    let active = store["active_manifest"]
        .as_str()
        .map(|label| &store["manifests"][label])
        .unwrap_or(&Value::Null);
    let claim_generator =
        active["claim_generator_info"][0]["name"]
            .as_str()
            .map(
                |name| match active["claim_generator_info"][0]["version"].as_str() {
                    Some(version) => format!("{name} {version}"),
                    None => name.to_string(),
                },
            );
    let assertions = active["assertions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let actions: Vec<&Value> = assertions
        .iter()
        .filter(|a| {
            a["label"]
                .as_str()
                .is_some_and(|l| l.starts_with("c2pa.actions"))
        })
        .flat_map(|a| a["data"]["actions"].as_array().into_iter().flatten())
        .collect();
    let model_hash = assertions
        .iter()
        .find(|a| a["label"] == GENERATION_LABEL)
        .and_then(|a| a["data"]["model"]["hash"].as_str())
        .map(str::to_string);
    let soft_binding = assertions
        .iter()
        .filter(|a| {
            a["label"]
                .as_str()
                .is_some_and(|l| l.starts_with("c2pa.soft-binding"))
        })
        .find(|a| a["data"]["alg"] == SOFT_BINDING_ALG)
        .and_then(|a| a["data"]["blocks"][0]["value"].as_str())
        .map(str::to_string);
    C2paSummary {
        validation_state,
        claim_generator,
        actions: actions
            .iter()
            .filter_map(|a| a["action"].as_str().map(str::to_string))
            .collect(),
        digital_source_type: actions
            .first()
            .and_then(|a| a["digitalSourceType"].as_str())
            .map(str::to_string),
        model_hash,
        soft_binding,
        errors: failure_codes(store),
    }
}

/// Failure codes of the active manifest, from `validation_results` (C2PA
/// 2.x) or, failing that, the flat `validation_status` list.
fn failure_codes(store: &Value) -> Vec<String> {
    let from_results = store["validation_results"]["activeManifest"]["failure"].as_array();
    let statuses = from_results.or_else(|| store["validation_status"].as_array());
    statuses
        .into_iter()
        .flatten()
        .filter_map(|s| s["code"].as_str().map(str::to_string))
        .collect()
}
