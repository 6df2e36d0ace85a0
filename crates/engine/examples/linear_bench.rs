//! Times the engine's f32 linear layer at SD 1.5's UNet shapes (a
//! developer's tool for issue 14; no asserts).
//!
//! ```sh
//! cargo run --release -p easel-engine --example linear_bench -- [THREADS] [REPEATS]
//! ```

use std::time::Instant;

use candle_core::{Device, Module, Tensor};
use easel_engine::ops::bf16::Compute;
use easel_engine::ops::linear::Linear;

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let repeats: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .ok();
    // (label, rows, in, out)
    let shapes: &[(&str, usize, usize, usize)] = &[
        ("q 64² 320→320", 4096, 320, 320),
        ("ff in 64² 320→2560", 4096, 320, 2560),
        ("ff out 64² 1280→320", 4096, 1280, 320),
        ("q 32² 640→640", 1024, 640, 640),
        ("ff in 32² 640→5120", 1024, 640, 5120),
        ("ff in 16² 1280→10240", 256, 1280, 10240),
        ("k ctx 768→320", 77, 768, 320),
    ];
    for &(label, rows, din, dout) in shapes {
        let x = Tensor::randn(0f32, 1.0, (1, rows, din), &Device::Cpu)?;
        let w = Tensor::randn(0f32, 0.05, (dout, din), &Device::Cpu)?;
        let b = Tensor::randn(0f32, 1.0, dout, &Device::Cpu)?;
        let layer = Linear::new(w, Some(b), Compute::F32)?;
        layer.forward(&x)?;
        let mut times = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            drop(layer.forward(&x)?);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let s = times[0];
        let flops = 2.0 * (rows * din * dout) as f64;
        println!(
            "{label:24} {:8.2} ms {:6.1} GFLOP/s",
            s * 1e3,
            flops / s / 1e9
        );
    }
    Ok(())
}
