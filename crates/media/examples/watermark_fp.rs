//! The watermark's false positives on a large unmarked pool, without a
//! server: the natural fixtures at 256 and 512 pixels, then synthetic
//! noise, flat and gradient pictures (`attacks::synthetic`, the generator
//! and seed `easel bench watermark` uses) up to N, each read as is and
//! after JPEG 80, on every core:
//!
//! ```sh
//! cargo run --release -p easel-media --example watermark_fp -- 10000
//! ```
//!
//! It prints every read that finds a mark (there should be none), the
//! count per kind, and the mean read time. `easel bench watermark
//! --attacks none --unmarked N` reads the same pool plus the server's
//! unmarked outputs; this runs where building the whole server is too
//! slow.

use std::time::Instant;

use easel_core::RgbImage;
use easel_media::attacks::{jpeg, synthetic};
use easel_media::{DecodeLimits, decode_untrusted, detect_watermark, resize};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/natural");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("the natural fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    names.sort();
    let mut pool: Vec<(RgbImage, &'static str)> = Vec::new();
    for side in [256u32, 512] {
        for path in &names {
            let bytes = std::fs::read(path).expect("a fixture");
            let picture = decode_untrusted(&bytes, &DecodeLimits::default()).expect("decodes");
            pool.push((resize(&picture, side, side).expect("resizes"), "natural"));
        }
    }
    let mut rng = seed ^ 0x5eed;
    let mut k = 0usize;
    while pool.len() < n {
        pool.push(synthetic(&mut rng, k));
        k += 1;
    }
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let chunk = pool.len().div_ceil(threads).max(1);
    let start = Instant::now();
    let found: Vec<String> = std::thread::scope(|scope| {
        let shares: Vec<_> = pool
            .chunks(chunk)
            .enumerate()
            .map(|(part, share)| {
                scope.spawn(move || {
                    let mut found = Vec::new();
                    for (i, (image, kind)) in share.iter().enumerate() {
                        for (jpeg80, candidate) in [(false, image.clone()), (true, jpeg(image, 80))]
                        {
                            if let Some(r) = detect_watermark(&candidate) {
                                found.push(format!(
                                    "pool index {} ({kind}, jpeg80 {jpeg80}): {} {} confidence {:.3}",
                                    part * chunk + i,
                                    r.method.as_str(),
                                    r.payload.id(),
                                    r.confidence
                                ));
                            }
                        }
                    }
                    found
                })
            })
            .collect();
        shares
            .into_iter()
            .flat_map(|h| h.join().expect("a reader thread"))
            .collect()
    });
    let reads = pool.len() * 2;
    let seconds = start.elapsed().as_secs_f64();
    for line in &found {
        println!("{line}");
    }
    let count = |kind: &str| pool.iter().filter(|(_, k)| *k == kind).count();
    println!(
        "{} false positives in {reads} reads of {} unmarked pictures ({} natural, {} noise, {} flat, \
         {} gradient), each as is and after JPEG 80; {:.1} ms per read on {threads} threads, {:.0} s",
        found.len(),
        pool.len(),
        count("natural"),
        count("noise"),
        count("flat"),
        count("gradient"),
        seconds * 1e3 * threads as f64 / reads as f64,
        seconds
    );
}
