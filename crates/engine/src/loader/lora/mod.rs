//! LoRA adapters: low-rank weight updates merged into a model's weights as
//! they are read.
//!
//! A [`LoraAdapter`] is a LoRA safetensors file opened and checked:
//! every key parsed (`keys`: kohya/A1111 or diffusers/PEFT names, for the
//! UNet and the text encoders), each module's `down`, `up` and optional
//! `alpha` paired and their shapes checked (a PEFT file without `.alpha`
//! keys takes its alphas from the `lora_adapter_metadata` diffusers saves,
//! PEFT's `lora_alpha` and `alpha_pattern` per component; with neither,
//! alpha = rank), and the file named by the
//! SHA-256 of its bytes (`sha256:<hex>`, the hash LoRA sites publish).
//! Its tensors stay in the file until a model is loaded with it.
//!
//! A [`LoraSet`] is a combination of adapters with a weight each, passed in
//! [`crate::LoadOptions::loras`]. Loading plans the set against the
//! model's own weight names before reading any weight (`LoraPlan::new`: a
//! key that matches no layer, or an update of the wrong shape, fails the
//! load with the key named, so a LoRA for another architecture is never
//! half-applied), then adds to each patched weight, as it is read,
//!
//! `W' = W + Σᵢ weightᵢ · (alphaᵢ / rankᵢ) · upᵢ @ downᵢ`
//!
//! in f32 (`merge::apply`; convolutions flatten to `[out, in·kh·kw]`).
//! The result is an ordinary [`crate::Model`] holding the same bytes of
//! weights as the base model ([`crate::ModelInfo::weight_bytes`]).
//!
//! - `keys`: the two key layouts and matching a module to a weight name.
//! - `sgm`: kohya's SDXL UNet names (LDM layout) as diffusers names.
//! - `merge`: the per-component plan (an `Overlay`) and the merge.

pub(crate) mod keys;
pub(crate) mod merge;
pub(crate) mod sgm;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::safetensors::WeightStore;
use crate::error::{EngineError, Result};
use keys::Part;
pub(crate) use merge::{LoraPlan, Overlay};

/// The key layout of a LoRA file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraLayout {
    /// kohya-ss / AUTOMATIC1111: `lora_unet_…​.lora_down.weight`.
    Kohya,
    /// diffusers / PEFT: `unet.….lora_A.weight` (and older diffusers forms).
    Peft,
}

/// A model component a LoRA patches.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LoraComponent {
    /// The UNet (`unet/`).
    Unet,
    /// The (first) text encoder (`text_encoder/`).
    TextEncoder,
    /// SDXL's second text encoder (`text_encoder_2/`).
    TextEncoder2,
}

impl LoraComponent {
    /// The model folder's subfolder for this component.
    pub fn folder(self) -> &'static str {
        match self {
            LoraComponent::Unet => "unet",
            LoraComponent::TextEncoder => "text_encoder",
            LoraComponent::TextEncoder2 => "text_encoder_2",
        }
    }

    fn is_text(self) -> bool {
        self != LoraComponent::Unet
    }
}

/// One low-rank update: the tensors that make it and where it applies.
#[derive(Debug, Clone)]
pub(crate) struct LoraModule {
    pub component: LoraComponent,
    /// As parsed (see [`keys::ParsedKey::module`]).
    pub module: String,
    /// Key of the `down` tensor (named in errors).
    pub down: String,
    /// Key of the `up` tensor.
    pub up: String,
    pub rank: usize,
    /// `alpha / rank`, or 1 without an alpha.
    pub scale: f64,
    /// `[out, in, kh, kw]` of the update (`kh = kw = 1` for a linear layer).
    pub update_shape: [usize; 4],
}

/// A LoRA file, opened and checked (see the module docs).
pub struct LoraAdapter {
    name: String,
    path: PathBuf,
    hash: String,
    layout: LoraLayout,
    store: Arc<WeightStore>,
    modules: Vec<LoraModule>,
}

impl fmt::Debug for LoraAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoraAdapter")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("hash", &self.hash)
            .field("layout", &self.layout)
            .field("modules", &self.modules.len())
            .finish()
    }
}

impl LoraAdapter {
    /// Opens a LoRA safetensors file: reads its header, parses and pairs
    /// every key, reads the alphas and hashes the file. Fails with
    /// [`EngineError::LoraNotFound`], [`EngineError::LoraInvalid`] (not
    /// safetensors, truncated, unpaired or misshapen tensors, no LoRA
    /// tensors at all) or [`EngineError::LoraUnknownKey`] (a key in
    /// neither layout). Whether it fits a model is checked when a model is
    /// loaded with it.
    pub fn open(path: &Path) -> Result<LoraAdapter> {
        let store = WeightStore::open(&[path.to_path_buf()]).map_err(|e| lora_error(path, e))?;
        let mut groups: BTreeMap<(LoraComponent, String), Group> = BTreeMap::new();
        let mut layouts = Vec::new();
        let mut names: Vec<&str> = store.tensor_names().collect();
        names.sort_unstable();
        for name in names {
            let key = keys::parse(name).ok_or_else(|| EngineError::LoraUnknownKey {
                path: path.to_path_buf(),
                key: name.to_string(),
                detail: "expected `lora_unet_…`/`lora_te…` with `.lora_down.weight`, \
                         `.lora_up.weight` or `.alpha`, or `unet.…`/`text_encoder….` with \
                         `.lora_A.weight`, `.lora_B.weight` or `.alpha`"
                    .into(),
            })?;
            if !layouts.contains(&key.layout) {
                layouts.push(key.layout);
            }
            let group = groups.entry((key.component, key.module)).or_default();
            let slot = match key.part {
                Part::Down => &mut group.down,
                Part::Up => &mut group.up,
                Part::Alpha => &mut group.alpha,
            };
            if let Some(first) = slot.replace(name.to_string()) {
                return Err(invalid(
                    path,
                    format!("keys `{first}` and `{name}` name the same tensor"),
                ));
            }
        }
        let layout = match layouts.as_slice() {
            [one] => *one,
            [] => return Err(invalid(path, "the file holds no tensors".into())),
            _ => return Err(invalid(path, "the file mixes kohya and PEFT keys".into())),
        };
        let peft_meta = match store.metadata(PEFT_METADATA_KEY) {
            Some(text) if layout == LoraLayout::Peft => serde_json::from_str(text)
                .map_err(|e| invalid(path, format!("metadata `{PEFT_METADATA_KEY}`: {e}")))?,
            _ => serde_json::Value::Null,
        };
        let modules = groups
            .into_iter()
            .map(|((component, module), group)| {
                let alpha = peft_alpha(&peft_meta, component, &module);
                group.check(path, &store, component, module, alpha)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LoraAdapter {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            hash: sha256_file(path)?,
            layout,
            store,
            modules,
        })
    }

    /// The file's name without its extension.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `sha256:<hex>` of the file's bytes.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Its key layout.
    pub fn layout(&self) -> LoraLayout {
        self.layout
    }

    /// The components it patches, in order (UNet, text encoder, second
    /// text encoder).
    pub fn components(&self) -> Vec<LoraComponent> {
        let mut c: Vec<_> = self.modules.iter().map(|m| m.component).collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// The distinct ranks of its modules, ascending.
    pub fn ranks(&self) -> Vec<usize> {
        let mut r: Vec<_> = self.modules.iter().map(|m| m.rank).collect();
        r.sort_unstable();
        r.dedup();
        r
    }

    /// How many weights it patches.
    pub fn module_count(&self) -> usize {
        self.modules.len()
    }

    pub(crate) fn modules(&self) -> &[LoraModule] {
        &self.modules
    }

    /// Reads one of its tensors as f32.
    pub(crate) fn tensor(&self, key: &str) -> Result<candle_core::Tensor> {
        self.store
            .tensor(key)
            .map_err(|e| lora_error(&self.path, e))
    }
}

/// The safetensors metadata entry where diffusers saves each component's
/// PEFT `LoraConfig` (keys `unet.lora_alpha`, `unet.alpha_pattern`, ...).
const PEFT_METADATA_KEY: &str = "lora_adapter_metadata";

/// A PEFT module's alpha from diffusers' metadata: the `alpha_pattern`
/// entry naming it (PEFT matches a pattern against the end of the module
/// path, on a `.`), else the component's `lora_alpha`.
fn peft_alpha(meta: &serde_json::Value, component: LoraComponent, module: &str) -> Option<f64> {
    let prefix = component.folder();
    let by_pattern = meta
        .get(format!("{prefix}.alpha_pattern"))
        .and_then(serde_json::Value::as_object)
        .and_then(|patterns| {
            patterns.iter().find_map(|(pattern, alpha)| {
                let hit = module == pattern
                    || module
                        .strip_suffix(pattern.as_str())
                        .is_some_and(|head| head.ends_with('.'));
                hit.then(|| alpha.as_f64()).flatten()
            })
        });
    by_pattern.or_else(|| meta.get(format!("{prefix}.lora_alpha"))?.as_f64())
}

/// The keys of one module, as they are collected.
#[derive(Default)]
struct Group {
    down: Option<String>,
    up: Option<String>,
    alpha: Option<String>,
}

impl Group {
    /// Pairs `down` with `up`, checks their shapes and reads the alpha
    /// (its key, else `default_alpha`, else the rank).
    fn check(
        self,
        path: &Path,
        store: &WeightStore,
        component: LoraComponent,
        module: String,
        default_alpha: Option<f64>,
    ) -> Result<LoraModule> {
        let any = self
            .down
            .as_ref()
            .or(self.up.as_ref())
            .or(self.alpha.as_ref())
            .cloned()
            .unwrap_or_default();
        let (Some(down), Some(up)) = (self.down, self.up) else {
            return Err(invalid(
                path,
                format!("`{any}` has no matching up/down tensor"),
            ));
        };
        let shape = |k: &str| store.shape(k).unwrap_or_default().to_vec();
        let (d, u) = (shape(&down), shape(&up));
        let rank = match (d.as_slice(), u.as_slice()) {
            ([r, _], [_, ur]) | ([r, _, _, _], [_, ur, 1, 1]) | ([r, _, _, _], [_, ur])
                if r == ur && *r > 0 =>
            {
                *r
            }
            _ => {
                return Err(invalid(
                    path,
                    format!(
                        "`{down}` is {d:?} and `{up}` is {u:?}: expected [rank, in] or \
                         [rank, in, kh, kw], and [out, rank] or [out, rank, 1, 1]"
                    ),
                ));
            }
        };
        let (kh, kw) = match d.as_slice() {
            [_, _, kh, kw] => (*kh, *kw),
            _ => (1, 1),
        };
        let scale = match &self.alpha {
            None => {
                default_alpha
                    .filter(|a| a.is_finite())
                    .unwrap_or(rank as f64)
                    / rank as f64
            }
            Some(key) => {
                let t = store.tensor(key).map_err(|e| lora_error(path, e))?;
                let values = t
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(|e| invalid(path, e.to_string()))?;
                match values.as_slice() {
                    [alpha] if alpha.is_finite() => f64::from(*alpha) / rank as f64,
                    _ => {
                        return Err(invalid(
                            path,
                            format!("alpha `{key}` is not one finite number"),
                        ));
                    }
                }
            }
        };
        Ok(LoraModule {
            component,
            module,
            update_shape: [u[0], d[1], kh, kw],
            down,
            up,
            rank,
            scale,
        })
    }
}

/// A combination of LoRA adapters, each with its weight (`0` leaves the
/// model as it is; `1` applies the LoRA as trained). The default is empty:
/// the base model.
#[derive(Debug, Clone, Default)]
pub struct LoraSet {
    entries: Vec<(Arc<LoraAdapter>, f32)>,
}

impl LoraSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// This set with `adapter` added at `weight`.
    pub fn with(mut self, adapter: Arc<LoraAdapter>, weight: f32) -> Self {
        self.push(adapter, weight);
        self
    }

    /// Adds `adapter` at `weight` (weights must be finite: checked at load).
    pub fn push(&mut self, adapter: Arc<LoraAdapter>, weight: f32) {
        self.entries.push((adapter, weight));
    }

    /// The adapters and their weights, in the order given.
    pub fn entries(&self) -> &[(Arc<LoraAdapter>, f32)] {
        &self.entries
    }

    /// Whether no adapter is in the set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A stable text naming the combination, for keying loaded models:
    /// `sha256:<hex>*<weight>` per adapter, joined with `+`, in the order
    /// given (empty for the base model). The order matters only to the
    /// last bit of the sum, so callers that want one key per combination
    /// should sort their entries first.
    pub fn fingerprint(&self) -> String {
        self.entries
            .iter()
            .map(|(a, w)| format!("{}*{w}", a.hash))
            .collect::<Vec<_>>()
            .join("+")
    }
}

fn invalid(path: &Path, detail: String) -> EngineError {
    EngineError::LoraInvalid {
        path: path.to_path_buf(),
        detail,
    }
}

/// A weight-store error on a LoRA file, as a LoRA error.
fn lora_error(path: &Path, e: EngineError) -> EngineError {
    match e {
        EngineError::MissingFile { .. } => EngineError::LoraNotFound {
            path: path.to_path_buf(),
        },
        EngineError::CorruptWeights { detail, .. } => invalid(path, detail),
        other => invalid(path, other.to_string()),
    }
}

/// `sha256:<hex>` of a file, read in 1 MiB pieces.
fn sha256_file(path: &Path) -> Result<String> {
    let io = |e: std::io::Error| invalid(path, e.to_string());
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_alphas_come_from_the_pattern_naming_the_module_else_the_component() {
        let meta = serde_json::json!({
            "unet.lora_alpha": 8.0,
            "unet.alpha_pattern": {"mid_block.attentions.0.proj_in": 2.0},
            "text_encoder.lora_alpha": 4,
        });
        let unet = LoraComponent::Unet;
        assert_eq!(
            peft_alpha(&meta, unet, "mid_block.attentions.0.proj_in"),
            Some(2.0)
        );
        // A pattern matches whole trailing path segments only.
        assert_eq!(
            peft_alpha(&meta, unet, "mid_block.attentions.0.xproj_in"),
            Some(8.0)
        );
        assert_eq!(
            peft_alpha(
                &meta,
                LoraComponent::TextEncoder,
                "encoder.layers.0.mlp.fc1"
            ),
            Some(4.0)
        );
        assert_eq!(peft_alpha(&meta, LoraComponent::TextEncoder2, "x"), None);
        assert_eq!(peft_alpha(&serde_json::Value::Null, unet, "x"), None);
    }
}
