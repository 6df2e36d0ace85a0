//! Times the engine's f32 convolution layer at SD 1.5's UNet and VAE
//! shapes and prints the best time and GFLOP/s per shape (a developer's
//! tool for issue 14; no asserts). `tools/bench/torch_kernels.py conv`
//! times PyTorch on the same shapes.
//!
//! ```sh
//! cargo run --release -p easel-engine --example conv_bench -- [THREADS] [REPEATS] [FILTER]
//! ```

use std::time::Instant;

use candle_core::Module;
use candle_core::{Device, Tensor};
use easel_engine::ops::conv::{Conv2d, ConvParams, Padding};

/// Label, batch, input and output channels, height, width, kernel size,
/// stride, padding.
type Shape = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    Padding,
);

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let repeats: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .ok();
    let same = Padding::uniform(1);
    #[rustfmt::skip]
    let shapes: &[Shape] = &[
        ("unet 320 64²", 1, 320, 320, 64, 64, 3, 1, same),
        ("unet 320 64² b2", 2, 320, 320, 64, 64, 3, 1, same),
        ("unet 640 32²", 1, 640, 640, 32, 32, 3, 1, same),
        ("unet 1280 16²", 1, 1280, 1280, 16, 16, 3, 1, same),
        ("unet 1280 8²", 1, 1280, 1280, 8, 8, 3, 1, same),
        ("unet 2560→1280 16²", 1, 2560, 1280, 16, 16, 3, 1, same),
        ("unet 1×1 320 64²", 1, 320, 320, 64, 64, 1, 1, Padding::default()),
        ("unet down 320 64²", 1, 320, 320, 64, 64, 3, 2, same),
        ("vae 512 64²", 1, 512, 512, 64, 64, 3, 1, same),
        ("vae 512 128²", 1, 512, 512, 128, 128, 3, 1, same),
        ("vae 256 256²", 1, 256, 256, 256, 256, 3, 1, same),
        ("vae 128 512²", 1, 128, 128, 512, 512, 3, 1, same),
    ];
    let filter = args.get(3).cloned().unwrap_or_default();
    for &(label, b, ci, co, h, w, k, s, pad) in shapes {
        if !label.contains(filter.as_str()) {
            continue;
        }
        let x = Tensor::randn(0f32, 1.0, (b, ci, h, w), &Device::Cpu)?;
        let wt = Tensor::randn(0f32, 0.05, (co, ci, k, k), &Device::Cpu)?;
        let bias = Tensor::randn(0f32, 1.0, co, &Device::Cpu)?;
        let params = ConvParams {
            stride: s,
            padding: pad,
        };
        let layer = Conv2d::from_tensors(wt, Some(bias), params)?;
        let out = layer.forward(&x)?;
        let (_, _, ho, wo) = out.dims4()?;
        let flops = 2.0 * (b * co * ho * wo * ci * k * k) as f64;
        let mut times = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            drop(layer.forward(&x)?);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let s = times[0];
        println!(
            "{label:22} {:8.2} ms {:6.1} GFLOP/s",
            s * 1e3,
            flops / s / 1e9
        );
    }
    Ok(())
}
