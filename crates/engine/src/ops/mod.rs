//! Kernels of our own where candle's composition of generic operations costs
//! too much on the CPU (issue 14). Each has a plain-candle fallback for the
//! devices and dtypes it does not cover, and a golden test against that
//! fallback and a float64 reference (`crates/engine/tests/kernels.rs`,
//! `crates/engine/tests/conv.rs`, `crates/engine/tests/group_norm.rs`).
//!
//! # Layout
//! - [`attention`]: fused, tiled scaled-dot-product attention that never
//!   builds the full score matrix.
//! - [`conv`]: 2-D convolution as shifted GEMMs over a padded block of input
//!   rows, without im2col, and the [`conv::Conv2d`] layer built on it.
//! - [`group_norm`]: group norm with its affine transform and an optional
//!   SiLU in one kernel, and the [`group_norm::GroupNorm`] layer.
//! - `simd` and `view` (private): the instruction-set detection and the
//!   checked 4-D view of candle's storage that the kernels share.

pub mod attention;
pub mod conv;
pub mod group_norm;
mod simd;
mod view;
