//! The channel code: binary BCH(127, 64) with designed distance 21, and
//! its soft decoder: ordered-statistics decoding of order [`OSD_ORDER`]
//! with a rank-sum acceptance ([`osd`]; SPEC.md §1, its false-positive
//! bound §7).
//!
//! A word is 127 bits `c_0..c_126`; bit `i` is the coefficient of
//! `x^(126 − i)`. The systematic codeword of the 64-bit message
//! `m_0..m_63` is `[m_0..m_63, p_0..p_62]` with
//! `p(x) = m(x)·x^63 mod g(x)`. GF(2^7) is built on `x^7 + x^3 + 1`.

use std::sync::OnceLock;

/// Code length.
pub(crate) const N: usize = 127;
/// Message bits.
const K: usize = 64;
/// Ordered-statistics decoding: every codeword that differs from the
/// hard decisions in at most this many of the 64 most reliable
/// independent positions is a candidate (1 + 64 + 2,016 + 41,664).
pub(crate) const OSD_ORDER: usize = 3;
const _: () = assert!(
    OSD_ORDER == 3,
    "the enumeration in `osd` is written for order 3"
);
/// Acceptance: a candidate is taken only when the sum of `rank + 1` over
/// the positions where it differs from the hard decisions (rank 0 = the
/// least reliable of the 127) is at most this. It bounds the false
/// positives (SPEC.md §7): at most 8.32·10^-7 per image.
pub(crate) const RANK_SUM_MAX: u32 = 560;

/// The generator polynomial (bit i = coefficient of x^i): the product of
/// the minimal polynomials of α^1 … α^20, degree 63.
pub(crate) const GENERATOR: u64 = 0xa1ab_815b_c7ec_8025;

/// The 127-bit word of `bits` as an integer: bit i of the word is the
/// coefficient of x^(126 − i), i.e. integer bit (126 − i).
fn to_int(bits: &[bool; N]) -> u128 {
    bits.iter().fold(0u128, |acc, &b| acc << 1 | u128::from(b))
}

fn from_int(word: u128) -> [bool; N] {
    std::array::from_fn(|i| word >> (126 - i) & 1 == 1)
}

/// The systematic codeword of the 64 message bits (`msg` bit 63 = m_0).
pub(crate) fn encode(msg: u64) -> [bool; N] {
    let m = u128::from(msg);
    let mut rem = m << 63;
    for d in (63..=126).rev() {
        if rem >> d & 1 == 1 {
            rem ^= u128::from(GENERATOR) << (d - 63);
        }
    }
    from_int(m << 63 | rem)
}

/// Bit `i` of the code word (`c_i`) is integer bit `126 − i` of a word.
const fn bit(i: usize) -> u128 {
    1u128 << (126 - i)
}

/// The generator matrix by columns: bit `63 − k` of `COLUMNS[i]` is `c_i`
/// of the codeword of the unit message `m_k`, so `c_i` of the codeword of
/// a message `m` is the parity of `m & COLUMNS[i]`.
fn columns() -> &'static [u64; N] {
    static COLUMNS: OnceLock<[u64; N]> = OnceLock::new();
    COLUMNS.get_or_init(|| {
        let mut cols = [0u64; N];
        for k in 0..K {
            let code = to_int(&encode(1u64 << (63 - k)));
            for (i, col) in cols.iter_mut().enumerate() {
                if code & bit(i) != 0 {
                    *col |= 1u64 << (63 - k);
                }
            }
        }
        cols
    })
}

/// The codeword of `msg` as a word.
fn codeword(msg: u64) -> u128 {
    to_int(&encode(msg))
}

/// What [`osd`] found.
#[derive(Debug, PartialEq)]
pub(crate) struct Decoded<T> {
    pub value: T,
    /// Hard decisions that differ from the codeword.
    pub bit_errors: usize,
    /// The sum of `rank + 1` over those positions (at most [`RANK_SUM_MAX`]).
    pub rank_sum: u32,
}

/// The messages that flip one of the most reliable independent positions
/// (MRIP): `flip[j]` changes `c` at `mrip[j]` and at no other MRIP
/// position, so the MRIP values `v` decode to `⊕ { flip[j] : v_j = 1 }`.
/// `None` when `mrip` is not independent (it always is, by construction).
fn mrip_inverse(mrip: &[usize; K]) -> Option<[u64; K]> {
    let cols = columns();
    // Rows: the equation `parity(m & cols[mrip[j]]) = v_j`, with the
    // identity alongside to follow the row operations.
    let mut rows: [(u64, u64); K] = std::array::from_fn(|j| (cols[mrip[j]], 1u64 << j));
    for b in 0..K {
        let mask = 1u64 << (63 - b);
        let pivot = (b..K).find(|&r| rows[r].0 & mask != 0)?;
        rows.swap(b, pivot);
        let (pr, pa) = rows[b];
        for (r, row) in rows.iter_mut().enumerate() {
            if r != b && row.0 & mask != 0 {
                row.0 ^= pr;
                row.1 ^= pa;
            }
        }
    }
    // Row b now says: m_b = parity(v & rows[b].1).
    Some(std::array::from_fn(|j| {
        (0..K).fold(0u64, |m, b| m | ((rows[b].1 >> j & 1) << (63 - b)))
    }))
}

/// Ordered-statistics decoding of order [`OSD_ORDER`] with a rank-sum
/// acceptance (SPEC.md §1).
///
/// The hard decisions of `soft` (negative = 1) XOR `whiten`; position `i`
/// has the rank of `|soft[i]|` in a stable ascending sort (0 = least
/// reliable) and the weight `rank + 1`. The 64 MRIP are taken greedily in
/// decreasing rank (a position joins when its generator column is
/// independent of those taken). Every codeword that differs from the hard
/// word in at most [`OSD_ORDER`] MRIP positions is a candidate, in a fixed
/// order (by the number of flips, then the flipped MRIP indices in
/// lexicographic order, index 0 the most reliable); its cost is the sum of
/// the weights where it differs from the hard word. The answer is the
/// candidate of least cost (the first in that order on a tie) among those
/// whose message `accept` takes, if that cost is at most [`RANK_SUM_MAX`].
pub(crate) fn osd<T>(
    soft: &[f64; N],
    whiten: &[bool; N],
    accept: impl Fn(u64) -> Option<T>,
) -> Option<Decoded<T>> {
    let hard = to_int(&std::array::from_fn(|i| (soft[i] < 0.0) ^ whiten[i]));
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    order.sort_by(|&a, &b| soft[a].abs().total_cmp(&soft[b].abs()));
    // The weight of integer bit 126 − i is rank(i) + 1.
    let mut weight = [0u32; N];
    for (rank, &i) in order.iter().enumerate() {
        weight[126 - i] = rank as u32 + 1;
    }
    let cols = columns();
    let mut basis = [0u64; K];
    let mut mrip = [0usize; K];
    let mut taken = 0;
    for &i in order.iter().rev() {
        let mut v = cols[i];
        while v != 0 {
            let top = 63 - v.leading_zeros() as usize;
            if basis[top] == 0 {
                break;
            }
            v ^= basis[top];
        }
        if v != 0 {
            basis[63 - v.leading_zeros() as usize] = v;
            mrip[taken] = i;
            taken += 1;
            if taken == K {
                break;
            }
        }
    }
    let flip = mrip_inverse(&mrip)?;
    let m0 = (0..K)
        .filter(|&j| hard & bit(mrip[j]) != 0)
        .fold(0u64, |m, j| m ^ flip[j]);
    let c0 = codeword(m0);
    let delta: [u128; K] = std::array::from_fn(|j| codeword(flip[j]));
    let cost = |c: u128, limit: u32| -> Option<u32> {
        let mut d = c ^ hard;
        let mut sum = 0u32;
        while d != 0 {
            sum += weight[d.trailing_zeros() as usize];
            if sum > limit {
                return None;
            }
            d &= d - 1;
        }
        Some(sum)
    };
    let mut best: Option<(u32, u128, T)> = None;
    let mut consider = |c: u128| {
        // Only a strictly cheaper candidate replaces the best so far.
        let limit = match &best {
            None => RANK_SUM_MAX,
            Some((0, ..)) => return,
            Some((sum, ..)) => sum - 1,
        };
        if let Some(sum) = cost(c, limit)
            && let Some(value) = accept((c >> 63) as u64)
        {
            best = Some((sum, c, value));
        }
    };
    consider(c0);
    for &d in &delta {
        consider(c0 ^ d);
    }
    for a in 0..K {
        for b in a + 1..K {
            consider(c0 ^ delta[a] ^ delta[b]);
        }
    }
    for a in 0..K {
        for b in a + 1..K {
            let cab = c0 ^ delta[a] ^ delta[b];
            for &d in &delta[b + 1..] {
                consider(cab ^ d);
            }
        }
    }
    best.map(|(rank_sum, c, value)| Decoded {
        value,
        bit_errors: (c ^ hard).count_ones() as usize,
        rank_sum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::WatermarkPayload;

    /// The designed error-correcting radius: the generator has the roots
    /// α^1 … α^(2·T_ERR), so any two codewords differ in at least 21 bits.
    const T_ERR: usize = 10;

    /// The primitive polynomial of GF(128).
    const GF_POLY: u32 = 0x89;

    /// GF(128) exponent and logarithm tables.
    struct Field {
        exp: [u8; 254],
        log: [u8; 128],
    }

    const FIELD: Field = {
        let mut exp = [0u8; 254];
        let mut log = [0u8; 128];
        let mut v: u32 = 1;
        let mut i = 0;
        while i < 127 {
            exp[i] = v as u8;
            exp[i + 127] = v as u8;
            log[v as usize] = i as u8;
            v <<= 1;
            if v & 0x80 != 0 {
                v ^= GF_POLY;
            }
            i += 1;
        }
        Field { exp, log }
    };

    fn mul(a: u8, b: u8) -> u8 {
        if a == 0 || b == 0 {
            0
        } else {
            FIELD.exp[FIELD.log[a as usize] as usize + FIELD.log[b as usize] as usize]
        }
    }

    /// α^e for any e ≥ 0.
    fn pow_alpha(e: usize) -> u8 {
        FIELD.exp[e % 127]
    }

    /// The product of the minimal polynomials of α^1 … α^20, computed
    /// from the field, is the constant the encoder uses.
    #[test]
    fn the_generator_is_the_lcm_of_the_minimal_polynomials() {
        let mut g: u128 = 1;
        let mut seen: Vec<Vec<usize>> = Vec::new();
        for e in 1..=2 * T_ERR {
            let mut coset = Vec::new();
            let mut x = e % 127;
            while !coset.contains(&x) {
                coset.push(x);
                x = 2 * x % 127;
            }
            coset.sort_unstable();
            if seen.contains(&coset) {
                continue;
            }
            // Π (x − α^c) over the coset, coefficients in GF(128).
            let mut poly = vec![1u8];
            for &c in &coset {
                let root = pow_alpha(c);
                let mut next = vec![0u8; poly.len() + 1];
                for (i, &p) in poly.iter().enumerate() {
                    next[i + 1] ^= p;
                    next[i] ^= mul(p, root);
                }
                poly = next;
            }
            let minimal = poly
                .iter()
                .enumerate()
                .fold(0u128, |acc, (i, &p)| acc | u128::from(p != 0) << i);
            let mut product = 0u128;
            let mut a = g;
            let mut b = minimal;
            while b != 0 {
                if b & 1 == 1 {
                    product ^= a;
                }
                a <<= 1;
                b >>= 1;
            }
            g = product;
            seen.push(coset);
        }
        assert_eq!(g, u128::from(GENERATOR));
        assert_eq!(127 - g.leading_zeros(), 63);
    }

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 11
    }

    #[test]
    fn the_test_vector_of_the_reference_encodes_alike() {
        // server 0x1234, image 0xdeadbeef, CRC 0xde6b (SPEC.md §1).
        let code = encode(0x1234_dead_beef_de6b);
        let word = to_int(&code) << 1;
        assert_eq!(word, 0x1234_dead_beef_de6b_5e92_cb8c_07db_3f22);
    }

    /// A CRC-16/CCITT-FALSE check on the message's last 16 bits, as the
    /// payload has.
    fn crc_ok(msg: u64) -> Option<u64> {
        WatermarkPayload::from_message(msg).map(|_| msg)
    }

    fn soft_of(word: u128, reliability: impl Fn(usize) -> f64) -> [f64; N] {
        std::array::from_fn(|i| {
            let r = reliability(i);
            if word & bit(i) != 0 { -r } else { r }
        })
    }

    #[test]
    fn the_columns_and_the_inverse_reproduce_the_encoder() {
        let mut state = 7u64;
        let mrip: [usize; K] = std::array::from_fn(|j| j + 63);
        let flip = mrip_inverse(&mrip).expect("64 consecutive positions are an information set");
        for _ in 0..50 {
            let msg = lcg(&mut state) << 11 ^ lcg(&mut state);
            let code = codeword(msg);
            for (i, col) in columns().iter().enumerate() {
                assert_eq!(code & bit(i) != 0, (msg & col).count_ones() % 2 == 1);
            }
            let back = (0..K)
                .filter(|&j| code & bit(mrip[j]) != 0)
                .fold(0u64, |m, j| m ^ flip[j]);
            assert_eq!(back, msg);
        }
    }

    #[test]
    fn a_clean_word_decodes_with_no_errors() {
        let msg = 0x1234_dead_beef_de6b;
        let soft = soft_of(codeword(msg), |i| 1.0 + i as f64);
        let found = osd(&soft, &[false; N], crc_ok).expect("decoded");
        assert_eq!(
            found,
            Decoded {
                value: msg,
                bit_errors: 0,
                rank_sum: 0
            }
        );
    }

    /// Eighteen errors, beyond the code's radius of 10, are corrected when
    /// they sit on unreliable positions and at most three on the MRIP; the
    /// same errors on reliable positions are refused.
    #[test]
    fn errors_on_unreliable_positions_are_corrected_beyond_the_radius() {
        let msg = WatermarkPayload {
            server: 0x0bad,
            image: 0xc0ff_ee15,
        }
        .to_message();
        let mut state = 3u64;
        let code = codeword(msg);
        // Reliability: a fixed shuffle of 1..=127.
        let mut rel: Vec<f64> = (1..=127).map(f64::from).collect();
        for i in (1..N).rev() {
            rel.swap(i, (lcg(&mut state) % (i as u64 + 1)) as usize);
        }
        let mut by_rank: Vec<usize> = (0..N).collect();
        by_rank.sort_by(|&a, &b| rel[a].total_cmp(&rel[b]));
        let wrong: Vec<usize> = by_rank[..18].to_vec();
        let word = wrong.iter().fold(code, |w, &i| w ^ bit(i));
        let found = osd(&soft_of(word, |i| rel[i]), &[false; N], crc_ok).expect("decoded");
        assert_eq!(found.value, msg);
        assert_eq!(found.bit_errors, 18);
        assert_eq!(found.rank_sum, (1..=18).sum::<u32>());
        // The 18 most reliable positions wrong: far over the rank-sum bound.
        let strong: Vec<usize> = by_rank[N - 18..].to_vec();
        let word = strong.iter().fold(code, |w, &i| w ^ bit(i));
        assert_eq!(osd(&soft_of(word, |i| rel[i]), &[false; N], crc_ok), None);
    }

    /// Random words: the bound allows one acceptance in about 5·10^6 (for
    /// three candidates); none of 300 may pass, and without the CRC every
    /// answer keeps within the rank-sum bound.
    #[test]
    fn random_words_are_not_read() {
        let mut state = 11u64;
        for _ in 0..300 {
            let soft: [f64; N] =
                std::array::from_fn(|_| (lcg(&mut state) % 2001) as f64 / 1000.0 - 1.0);
            assert_eq!(osd(&soft, &[false; N], crc_ok), None);
            if let Some(found) = osd(&soft, &[false; N], Some) {
                assert!(found.rank_sum <= RANK_SUM_MAX);
            }
        }
    }

    /// SPEC.md §1's decoder test vector, as the reference decodes it.
    #[test]
    fn the_decoder_test_vector_of_the_reference_decodes_alike() {
        let msg = 0x1234_dead_beef_de6b;
        // Reliability r_i = 1 + (37·i mod 127), as soft magnitude r_i / 127;
        // the 16 least reliable positions and those with r_i = 60 and 100
        // flipped: 18 errors.
        let rel = |i: usize| (1 + 37 * i % 127) as f64;
        let word = (0..N)
            .filter(|&i| rel(i) <= 16.0 || rel(i) == 60.0 || rel(i) == 100.0)
            .fold(codeword(msg), |w, i| w ^ bit(i));
        let found = osd(&soft_of(word, |i| rel(i) / 127.0), &[false; N], crc_ok);
        assert_eq!(
            found,
            Some(Decoded {
                value: msg,
                bit_errors: 18,
                rank_sum: 296
            })
        );
    }
}
