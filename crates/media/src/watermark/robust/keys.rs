//! The key-derived tables: SHA-256 in counter mode under the fixed key
//! `easelmark-v1`, so any decoder (the Python reference under
//! `tools/watermark/robust/` included) derives the same cell layout, sync
//! chips and whitening.

use sha2::{Digest, Sha256};

/// The key every table is derived from.
const KEY: &[u8] = b"easelmark-v1";

/// The first `n` bytes of SHA256(KEY ‖ "/" ‖ label ‖ "/" ‖ be32(i)) for
/// i = 0, 1, 2, … concatenated.
pub(crate) fn prng_bytes(label: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut i: u32 = 0;
    while out.len() < n {
        let mut h = Sha256::new();
        h.update(KEY);
        h.update(b"/");
        h.update(label.as_bytes());
        h.update(b"/");
        h.update(i.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(n);
    out
}

/// The first `n` bits of [`prng_bytes`], most significant bit first.
pub(crate) fn prng_bits(label: &str, n: usize) -> Vec<bool> {
    prng_bytes(label, n.div_ceil(8))
        .iter()
        .flat_map(|byte| (0..8).map(move |b| byte >> (7 - b) & 1 == 1))
        .take(n)
        .collect()
}

/// A permutation of 0..n by Fisher–Yates: for i = n−1 down to 1,
/// j = be32(next four bytes) mod (i + 1), swap a[i] and a[j].
pub(crate) fn permutation(label: &str, n: usize) -> Vec<usize> {
    let words = prng_bytes(label, 4 * (n - 1));
    let mut a: Vec<usize> = (0..n).collect();
    for (k, i) in (1..n).rev().enumerate() {
        let w = u32::from_be_bytes(words[4 * k..4 * k + 4].try_into().expect("four bytes"));
        a.swap(i, w as usize % (i + 1));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's test vectors (tools/watermark/robust/SPEC.md §2).
    #[test]
    fn tables_match_the_reference() {
        assert_eq!(
            permutation("cells", 256)[..8],
            [46, 210, 83, 193, 209, 100, 59, 63]
        );
        let sync: String = prng_bits("sync", 32)
            .iter()
            .map(|&b| if b { '1' } else { '0' })
            .collect();
        assert_eq!(sync, "00100110011010000110010011000110");
        let whiten = prng_bytes("whiten", 16);
        assert_eq!(
            u128::from_be_bytes(whiten.try_into().unwrap()) >> 1 << 1,
            0x54ac_7941_0c60_0dbf_7e95_5da6_02e6_ebcc
        );
    }
}
