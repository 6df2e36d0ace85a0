//! Times easelmark's embed and detect on the natural fixtures at 256 and
//! 512 pixels (best of N embeds per picture, one detect of the marked and
//! one of the unmarked picture: the decoder's worst case), and prints a
//! hash of the marked pixels so two builds can be checked to mark alike:
//!
//! ```sh
//! cargo run --release -p easel-media --example watermark_time -- 5
//! ```
//!
//! `easel bench watermark` measures the same on outputs as the server
//! delivers them, with detection rates; this is the quick loop for work
//! on the embedder's speed.

use std::time::Instant;

use easel_media::{
    DecodeLimits, WatermarkPayload, decode_untrusted, detect_watermark, embed_watermark, resize,
};

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/natural");
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("the natural fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    names.sort();
    let mut hash = 0u64;
    for side in [256u32, 512] {
        let (mut embed_s, mut detect_s, mut unmarked_s) = (0.0, 0.0, 0.0);
        for path in &names {
            let bytes = std::fs::read(path).expect("a fixture");
            let picture = decode_untrusted(&bytes, &DecodeLimits::default()).expect("decodes");
            let picture = resize(&picture, side, side).expect("resizes");
            let payload = WatermarkPayload {
                server: 0x1234,
                image: 0xdead_beef,
            };
            let mut best = f64::MAX;
            let mut marked = None;
            for _ in 0..repeats.max(1) {
                let start = Instant::now();
                marked = Some(embed_watermark(&picture, payload).expect("marks"));
                best = best.min(start.elapsed().as_secs_f64());
            }
            let marked = marked.expect("at least one embed");
            for (i, b) in marked.pixels.iter().enumerate() {
                hash = hash
                    .wrapping_mul(1_000_003)
                    .wrapping_add(u64::from(*b) ^ i as u64);
            }
            let start = Instant::now();
            std::hint::black_box(detect_watermark(&marked));
            detect_s += start.elapsed().as_secs_f64();
            let start = Instant::now();
            std::hint::black_box(detect_watermark(&picture));
            unmarked_s += start.elapsed().as_secs_f64();
            embed_s += best;
        }
        let n = names.len() as f64;
        println!(
            "{side}×{side}: embed {:.1} ms (mean of the best of {repeats}), detect {:.1} ms, \
             unmarked detect {:.1} ms, {} pictures",
            embed_s / n * 1e3,
            detect_s / n * 1e3,
            unmarked_s / n * 1e3,
            names.len()
        );
    }
    println!("hash of the marked pixels: {hash:016x}");
}
