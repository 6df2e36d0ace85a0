//! Times the engine's fused attention at SD 1.5's UNet shapes (a developer's
//! tool for issue 14; no asserts).
//!
//! ```sh
//! cargo run --release -p easel-engine --example attn_bench -- [THREADS] [REPEATS]
//! ```

use std::time::Instant;

use candle_core::{Device, Tensor};
use easel_engine::ops::attention::{Mask, attention};

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let repeats: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .ok();
    // (label, batch·heads, lq, lk, d)
    let shapes: &[(&str, usize, usize, usize, usize)] = &[
        ("self 64² (8×40)", 8, 4096, 4096, 40),
        ("cross 64² (8×40, 77)", 8, 4096, 77, 40),
        ("self 32² (8×80)", 8, 1024, 1024, 80),
        ("self 16² (8×160)", 8, 256, 256, 160),
        ("vae mid 64² (1×512)", 1, 4096, 4096, 512),
    ];
    let filter = args.get(3).cloned().unwrap_or_default();
    for &(label, bh, lq, lk, d) in shapes {
        if !label.contains(filter.as_str()) {
            continue;
        }
        let q = Tensor::randn(0f32, 1.0, (1, bh, lq, d), &Device::Cpu)?;
        let k = Tensor::randn(0f32, 1.0, (1, bh, lk, d), &Device::Cpu)?;
        let v = Tensor::randn(0f32, 1.0, (1, bh, lk, d), &Device::Cpu)?;
        let scale = 1.0 / (d as f64).sqrt();
        attention(&q, &k, &v, scale, Mask::None)?;
        let mut times = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            drop(attention(&q, &k, &v, scale, Mask::None)?);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let s = times[0];
        let flops = 4.0 * (bh * lq * lk * d) as f64;
        println!(
            "{label:24} {:8.2} ms {:6.1} GFLOP/s",
            s * 1e3,
            flops / s / 1e9
        );
    }
    Ok(())
}
