//! Where samplers get their random numbers: always from an argument, never
//! from a global generator, so that a batch gives each image exactly what it
//! would get alone.

use std::collections::VecDeque;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{EngineError, Result};

/// A source of standard-normal noise for a batch.
pub trait NoiseSource {
    /// One draw for every image of the batch: a `[B, shape_per_image...]` f32 tensor.
    fn sample(&mut self, shape_per_image: &[usize]) -> Result<Tensor>;
}

/// One generator per image: `ChaCha8Rng::seed_from_u64(seed)` (rand_chacha
/// 0.9), drawing f32 standard normals with rand_distr's `StandardNormal`
/// (ziggurat in f64, rounded to f32), in row-major order.
///
/// The batch tensor is the concatenation of per-image draws, so image i's
/// noise depends on its seed and on the sequence of shapes asked for, never
/// on the other images. ChaCha8 is portable and fast, and its stream for a
/// seed is fixed by the crate's semver, so a stored seed reproduces its
/// image across machines and releases of Easel that keep rand_chacha 0.9.
#[derive(Debug, Clone)]
pub struct SeededNoise {
    rngs: Vec<ChaCha8Rng>,
    device: Device,
}

impl SeededNoise {
    /// One generator per seed, in batch order.
    pub fn new(seeds: &[u64], device: &Device) -> Self {
        Self {
            rngs: seeds
                .iter()
                .map(|&s| ChaCha8Rng::seed_from_u64(s))
                .collect(),
            device: device.clone(),
        }
    }

    /// The batch size B.
    pub fn batch_size(&self) -> usize {
        self.rngs.len()
    }
}

impl NoiseSource for SeededNoise {
    fn sample(&mut self, shape_per_image: &[usize]) -> Result<Tensor> {
        let per: usize = shape_per_image.iter().product();
        let mut data = Vec::with_capacity(per * self.rngs.len());
        for rng in &mut self.rngs {
            data.extend((0..per).map(|_| -> f32 { StandardNormal.sample(rng) }));
        }
        let mut shape = vec![self.rngs.len()];
        shape.extend_from_slice(shape_per_image);
        Ok(Tensor::from_vec(data, shape, &self.device)?)
    }
}

/// Hands out recorded tensors in order: for replaying a reference
/// implementation's draws in golden tests.
#[derive(Debug, Clone, Default)]
pub struct ReplayNoise {
    draws: VecDeque<Tensor>,
}

impl ReplayNoise {
    /// The draws, in the order they will be handed out.
    pub fn new(draws: impl IntoIterator<Item = Tensor>) -> Self {
        Self {
            draws: draws.into_iter().collect(),
        }
    }

    /// Draws not yet handed out.
    pub fn remaining(&self) -> usize {
        self.draws.len()
    }
}

impl NoiseSource for ReplayNoise {
    fn sample(&mut self, shape_per_image: &[usize]) -> Result<Tensor> {
        let t = self
            .draws
            .pop_front()
            .ok_or_else(|| EngineError::Compute("replayed noise exhausted".into()))?;
        if t.dims().get(1..) != Some(shape_per_image) {
            return Err(EngineError::Compute(format!(
                "replayed noise has shape {:?}, asked for [B, {:?}]",
                t.dims(),
                shape_per_image
            )));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_images_noise_does_not_depend_on_its_batch() {
        let dev = Device::Cpu;
        let batch = SeededNoise::new(&[7, 8, 9], &dev).sample(&[2, 3]).unwrap();
        let alone = SeededNoise::new(&[8], &dev).sample(&[2, 3]).unwrap();
        let b: Vec<f32> = batch
            .get(1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let a: Vec<f32> = alone
            .get(0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(batch.dims(), &[3, 2, 3]);
    }

    #[test]
    fn seeded_noise_is_roughly_standard_normal() {
        let v: Vec<f32> = SeededNoise::new(&[1], &Device::Cpu)
            .sample(&[10_000])
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
