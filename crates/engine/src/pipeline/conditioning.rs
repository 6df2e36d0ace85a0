//! The pipeline's text conditioning: prompts in AUTOMATIC1111's syntax
//! ([`easel_core::prompt`]) encoded with weights, in 75-token chunks, with
//! A1111's clip skip (see [`crate::text::weighted`] for the encoding).
//!
//! Every prompt of a batch (the negative prompts and the prompts, all
//! images) is padded to the batch's largest chunk count, over both
//! encoders for SDXL, so the UNet gets one `[rows, 77·k, D]` context.
//!
//! Clip skip follows A1111: it applies to SD 1.x only (`hidden_states[-n]`
//! and the final layer norm). A1111 ignores it for SD 2.x (the OpenCLIP
//! encoder is always read at its penultimate layer, which a diffusers SD 2
//! folder already ends at) and for SDXL (both encoders read at the
//! penultimate layer unless its `sdxl_clip_l_skip` option, off by default,
//! is set); the engine does the same and says so in a warning. BERT
//! (the bundled model) has no clip skip either.

use candle_core::Tensor;
use easel_core::{MAX_CLIP_SKIP, validate_prompt};

use crate::error::{EngineError, Result};
use crate::model::{Architecture, Model};
use crate::text::weighted::Layer;

/// A request's clip skip resolved for `model`: the value the encoder uses
/// (1 where the model ignores it) and the warning when it is ignored.
pub(crate) fn resolve_clip_skip(
    model: &Model,
    clip_skip: Option<u32>,
) -> Result<(usize, Option<String>)> {
    let Some(value) = clip_skip else {
        return Ok((1, None));
    };
    let arch = model.info().architecture;
    let layers = model.text.clip_layers();
    let max = match (arch, layers) {
        (Architecture::Sd1, Some(n)) => (n as u32).min(MAX_CLIP_SKIP),
        _ => MAX_CLIP_SKIP,
    };
    if value == 0 || value > max {
        let why = match (arch, layers) {
            (Architecture::Sd1, Some(n)) if (n as u32) < MAX_CLIP_SKIP => {
                format!(" (this model's text encoder has {n} layers)")
            }
            _ => String::new(),
        };
        return Err(EngineError::InvalidClipSkip {
            value,
            max,
            detail: why,
        });
    }
    match arch {
        Architecture::Sd1 => Ok((value as usize, None)),
        _ if value == 1 => Ok((1, None)),
        other => Ok((
            1,
            Some(format!(
                "clip_skip {value} is ignored: it applies to SD 1.x models only, \
                 as in AUTOMATIC1111 (this model is {other:?})"
            )),
        )),
    }
}

/// Text conditioning of `prompts` in A1111's syntax: the UNet's context
/// `[B, 77·k, D]`, SDXL's pooled embeddings `[B, P]` (from each prompt's
/// first chunk), and a truncation warning per prompt. Rows flagged in
/// `zero` (SDXL's empty negative prompt) have their own chunk zeroed; the
/// chunks padding them to `k` are the empty prompt's, as in A1111.
/// `clip_skip` comes from [`resolve_clip_skip`].
pub(crate) fn weighted_condition(
    model: &Model,
    prompts: &[&str],
    zero: &[bool],
    clip_skip: usize,
) -> Result<(Tensor, Option<Tensor>, Vec<Option<String>>)> {
    let parsed = prompts
        .iter()
        .map(|p| validate_prompt(p))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let first = parsed
        .iter()
        .map(|p| model.text.tokenize_parts(p))
        .collect::<Result<Vec<_>>>()?;
    let second = match &model.text2 {
        Some(t) => Some(
            parsed
                .iter()
                .map(|p| t.tokenize_parts(p))
                .collect::<Result<Vec<_>>>()?,
        ),
        None => None,
    };
    let count = first
        .iter()
        .chain(second.iter().flatten())
        .map(|t| t.chunks.len())
        .max()
        .unwrap_or(1);
    let (context, pooled) = match (&model.text2, &second) {
        (Some(text2), Some(second)) => {
            let a = model
                .text
                .encode_tokenized(&first, count, Layer::Penultimate)?;
            let b = text2.encode_tokenized(second, count, Layer::Penultimate)?;
            (Tensor::cat(&[&a.hidden, &b.hidden], 2)?, b.pooled)
        }
        _ => {
            let a = model
                .text
                .encode_tokenized(&first, count, Layer::Last { clip_skip })?;
            (a.hidden, None)
        }
    };
    let warnings = first
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.warning.clone().or_else(|| {
                second
                    .as_ref()
                    .and_then(|s| s.get(i))
                    .and_then(|s| s.warning.clone())
            })
        })
        .collect();
    if !zero.iter().any(|&z| z) {
        return Ok((context, pooled, warnings));
    }
    let (rows, len, _) = context.dims3()?;
    let chunk = len / count;
    let keep: Vec<f32> = zero
        .iter()
        .flat_map(|&z| (0..len).map(move |i| if z && i < chunk { 0.0 } else { 1.0 }))
        .collect();
    let keep = Tensor::from_vec(keep, (rows, len, 1), context.device())?;
    let context = context.broadcast_mul(&keep)?;
    let pooled = match pooled {
        Some(p) => {
            let keep: Vec<f32> = zero.iter().map(|&z| if z { 0.0 } else { 1.0 }).collect();
            Some(p.broadcast_mul(&Tensor::from_vec(keep, (rows, 1), p.device())?)?)
        }
        None => None,
    };
    Ok((context, pooled, warnings))
}
