//! Planning a [`LoraSet`] against a model's weights, and merging it in.
//!
//! [`LoraPlan::new`] runs before any weight is read: for each component a
//! LoRA touches it lists the component's weight names and shapes (from the
//! safetensors headers), finds the weight every module patches
//! ([`super::keys::NameTable`]; kohya's SDXL names through
//! [`super::sgm`]) and checks the update's shape, so a LoRA
//! that does not fit fails the load at once, with the key named. What it
//! produces is one [`Overlay`] per component: weight name → the updates to
//! add. The weight store adds them as each weight is read ([`apply`]).
//!
//! An adapter at weight 0 is planned (so it is checked) but contributes no
//! update, so its model is bit for bit the base model.

use std::collections::HashMap;
use std::sync::Arc;

use super::keys::NameTable;
use super::sgm::UnetLayout;
use super::{LoraAdapter, LoraComponent, LoraLayout, LoraSet};
use crate::error::{EngineError, Result};
use crate::loader::{ModelFolder, WeightStore};

/// One update to add to a weight.
#[derive(Debug, Clone)]
pub(crate) struct Patch {
    adapter: Arc<LoraAdapter>,
    /// Index into the adapter's modules.
    module: usize,
    /// `weight · alpha / rank` (applied in f32).
    multiplier: f64,
}

/// The updates for one component's weights, by weight name. The default
/// is empty: weights are read unchanged.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overlay {
    patches: HashMap<String, Vec<Patch>>,
}

impl Overlay {
    /// The updates for weight `name`, if any.
    pub(crate) fn patches(&self, name: &str) -> Option<&[Patch]> {
        self.patches.get(name).map(Vec::as_slice)
    }
}

/// The overlays of every component a LoRA set patches.
#[derive(Debug, Default)]
pub(crate) struct LoraPlan {
    overlays: HashMap<LoraComponent, Overlay>,
}

impl LoraPlan {
    /// Plans `set` against the model in `folder`, whose components are
    /// `present`. Reads headers only. Fails with
    /// [`EngineError::LoraInvalidWeight`], [`EngineError::LoraUnmatchedKey`]
    /// (a module for a component the model lacks, or naming no weight of
    /// it) or [`EngineError::LoraShapeMismatch`].
    pub(crate) fn new(
        set: &LoraSet,
        folder: &ModelFolder,
        present: &[LoraComponent],
    ) -> Result<Self> {
        let mut plan = Self::default();
        for (adapter, weight) in set.entries() {
            if !weight.is_finite() {
                return Err(EngineError::LoraInvalidWeight {
                    path: adapter.path().to_path_buf(),
                    weight: *weight,
                });
            }
            if let Some(m) = adapter
                .modules()
                .iter()
                .find(|m| !present.contains(&m.component))
            {
                return Err(EngineError::LoraUnmatchedKey {
                    path: adapter.path().to_path_buf(),
                    key: m.down.clone(),
                    detail: format!("this model has no `{}`", m.component.folder()),
                });
            }
        }
        for &component in present {
            if set
                .entries()
                .iter()
                .any(|(a, _)| a.components().contains(&component))
            {
                let store = WeightStore::open(&folder.weight_files(component.folder())?)?;
                plan.overlays
                    .insert(component, plan_component(set, component, &store)?);
            }
        }
        Ok(plan)
    }

    /// The overlay for `component` (empty when no LoRA patches it).
    pub(crate) fn overlay(&self, component: LoraComponent) -> Overlay {
        self.overlays.get(&component).cloned().unwrap_or_default()
    }
}

/// The overlay of one component, whose weights `store` holds.
fn plan_component(set: &LoraSet, component: LoraComponent, store: &WeightStore) -> Result<Overlay> {
    let table = NameTable::new(store.tensor_names(), component.is_text());
    // kohya's SDXL LoRAs name the UNet's layers in the LDM layout.
    let sgm = (component == LoraComponent::Unet)
        .then(|| UnetLayout::new(&store.tensor_names().collect::<Vec<_>>()))
        .flatten();
    let mut overlay = Overlay::default();
    for (adapter, weight) in set.entries() {
        for (index, m) in adapter.modules().iter().enumerate() {
            if m.component != component {
                continue;
            }
            let path = adapter.path().to_path_buf();
            let tensor = table.lookup(&m.module, adapter.layout()).or_else(|| {
                let translated = sgm.as_ref()?.to_diffusers(&m.module)?;
                (adapter.layout() == LoraLayout::Kohya)
                    .then(|| table.lookup(&translated, LoraLayout::Kohya))
                    .flatten()
            });
            let Some(tensor) = tensor else {
                return Err(EngineError::LoraUnmatchedKey {
                    path,
                    key: m.down.clone(),
                    detail: format!("no weight of `{}` has this name", component.folder()),
                });
            };
            let expected = store.shape(tensor).unwrap_or_default().to_vec();
            let as4 = match expected.as_slice() {
                [o, i] => Some([*o, *i, 1, 1]),
                [o, i, kh, kw] => Some([*o, *i, *kh, *kw]),
                _ => None,
            };
            if as4 != Some(m.update_shape) {
                return Err(EngineError::LoraShapeMismatch {
                    path,
                    key: m.down.clone(),
                    tensor: tensor.to_string(),
                    expected,
                    found: m.update_shape.to_vec(),
                });
            }
            if *weight != 0.0 {
                overlay
                    .patches
                    .entry(tensor.to_string())
                    .or_default()
                    .push(Patch {
                        adapter: adapter.clone(),
                        module: index,
                        multiplier: f64::from(*weight) * m.scale,
                    });
            }
        }
    }
    Ok(overlay)
}

/// Adds `Σ multiplier · up @ down` to a weight's f32 values, in place, in
/// the order the updates were given, each as PEFT merges one: the product
/// in f32, scaled, then added. A convolution's weight is `[out,
/// in·kh·kw]` in memory and its `down` flattens to `[rank, in·kh·kw]` (its
/// `up` is 1×1), which is the convolution composed of the two.
pub(crate) fn apply(weight: &mut [f32], patches: &[Patch]) -> Result<()> {
    for p in patches {
        let m = &p.adapter.modules()[p.module];
        let up = p
            .adapter
            .tensor(&m.up)?
            .reshape((m.update_shape[0], m.rank))?;
        let down = p.adapter.tensor(&m.down)?.reshape((m.rank, ()))?;
        let update = up.matmul(&down)?.flatten_all()?.to_vec1::<f32>()?;
        if update.len() != weight.len() {
            // The plan checked the shapes; this is a bug if it happens.
            return Err(EngineError::Compute(format!(
                "LoRA update `{}` has {} values for a weight of {}",
                m.down,
                update.len(),
                weight.len()
            )));
        }
        let s = p.multiplier as f32;
        for (w, u) in weight.iter_mut().zip(&update) {
            *w += u * s;
        }
    }
    Ok(())
}
