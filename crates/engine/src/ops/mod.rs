//! Kernels of our own where candle's composition of generic operations costs
//! too much on the CPU (issue 14). Each has a plain-candle fallback for the
//! devices and dtypes it does not cover, and a golden test against that
//! fallback and a float64 reference (`crates/engine/tests/kernels.rs`,
//! `crates/engine/tests/conv.rs`, `crates/engine/tests/group_norm.rs`).
//!
//! # Layout
//! - [`bf16`]: bf16 products with f32 accumulation (AVX512-BF16 or AMX
//!   tiles, detected at run time) and the packed layouts they read; what
//!   the layers run on when a model is loaded in bf16.
//! - [`attention`]: fused, tiled scaled-dot-product attention that never
//!   builds the full score matrix.
//! - [`conv`]: 2-D convolution as shifted GEMMs over a padded block of input
//!   rows, without im2col, and the [`conv::Conv2d`] layer built on it.
//! - `conv_bf16` (private): the convolution's bf16 variant.
//! - [`linear`]: the linear layer, candle's in f32 or on [`bf16`].
//! - [`geglu`]: the feed-forward's gate `a · gelu(b)` with the exact GELU,
//!   in one pass.
//! - [`group_norm`]: group norm with its affine transform and an optional
//!   SiLU in one kernel, and the [`group_norm::GroupNorm`] layer.
//! - `amx` (private): the AMX tile kernel, in inline assembly.
//! - `simd` and `view` (private): the instruction-set detection and the
//!   checked 4-D view of candle's storage that the kernels share.
//! - `tasks` (private): the loop that shares a kernel's numbered tasks
//!   among the engine's threads.

mod amx;
pub mod attention;
pub mod bf16;
pub mod conv;
mod conv_bf16;
pub mod geglu;
pub mod group_norm;
pub mod linear;
mod simd;
mod tasks;
mod view;
