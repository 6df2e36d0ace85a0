//! The channel code: binary BCH(127, 64) with designed distance 21
//! (corrects up to [`T_ERR`] = 10 bit errors), bounded-distance decoding
//! (Berlekamp–Massey, Chien search, a final syndrome check) and Chase-II
//! soft decoding over the [`CHASE_P`] least reliable positions.
//!
//! A word is 127 bits `c_0..c_126`; bit `i` is the coefficient of
//! `x^(126 − i)`. The systematic codeword of the 64-bit message
//! `m_0..m_63` is `[m_0..m_63, p_0..p_62]` with
//! `p(x) = m(x)·x^63 mod g(x)`. GF(2^7) is built on `x^7 + x^3 + 1`.

/// Code length.
pub(crate) const N: usize = 127;
/// Errors corrected by the bounded-distance decoder.
pub(crate) const T_ERR: usize = 10;
/// Chase-II: the number of least reliable positions flipped in every
/// combination (2^6 = 64 test words).
pub(crate) const CHASE_P: usize = 6;

/// The primitive polynomial of GF(128).
const GF_POLY: u32 = 0x89;

/// The generator polynomial (bit i = coefficient of x^i): the product of
/// the minimal polynomials of α^1 … α^20, degree 63.
pub(crate) const GENERATOR: u64 = 0xa1ab_815b_c7ec_8025;

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

/// The syndromes S_1 … S_20 of `word`.
fn syndromes(word: u128) -> [u8; 2 * T_ERR] {
    let mut s = [0u8; 2 * T_ERR];
    let mut w = word;
    while w != 0 {
        let p = w.trailing_zeros() as usize;
        w &= w - 1;
        for (j, sj) in s.iter_mut().enumerate() {
            *sj ^= pow_alpha(p * (j + 1));
        }
    }
    s
}

/// Bounded-distance decoding: the message and the number of corrected
/// errors, or `None` when `bits` is further than [`T_ERR`] from every
/// codeword (as far as the decoder can tell).
pub(crate) fn decode(bits: &[bool; N]) -> Option<(u64, usize)> {
    let mut word = to_int(bits);
    let s = syndromes(word);
    if s.iter().all(|&x| x == 0) {
        return Some(((word >> 63) as u64, 0));
    }
    // Berlekamp–Massey: the error locator Λ (low degree first).
    let mut c = [0u8; 2 * T_ERR + 2];
    let mut b = [0u8; 2 * T_ERR + 2];
    c[0] = 1;
    b[0] = 1;
    let (mut l, mut m, mut last) = (0usize, 1usize, 1u8);
    for n in 0..2 * T_ERR {
        let mut d = s[n];
        for i in 1..=l {
            d ^= mul(c[i], s[n - i]);
        }
        if d == 0 {
            m += 1;
            continue;
        }
        let coef = mul(d, pow_alpha(127 - FIELD.log[last as usize] as usize));
        let previous = c;
        for i in 0..c.len() - m {
            c[i + m] ^= mul(coef, b[i]);
        }
        if 2 * l <= n {
            l = n + 1 - l;
            b = previous;
            last = d;
            m = 1;
        } else {
            m += 1;
        }
    }
    if l > T_ERR {
        return None;
    }
    // Chien search: an error at power p iff Λ(α^−p) = 0.
    let mut found = 0;
    for p in 0..127usize {
        let mut v = 0u8;
        for (i, &ci) in c.iter().enumerate().take(l + 1) {
            if ci != 0 {
                v ^= pow_alpha(FIELD.log[ci as usize] as usize + i * (127 - p));
            }
        }
        if v == 0 {
            word ^= 1u128 << p;
            found += 1;
        }
    }
    if found != l || syndromes(word).iter().any(|&x| x != 0) {
        return None;
    }
    Some(((word >> 63) as u64, l))
}

/// Chase-II: the hard decisions of `soft` (negative = 1) XOR `whiten`,
/// then for every mask 0 … 63 the word with the mask's subset of the six
/// least reliable positions flipped (bit j flips the j-th least reliable,
/// ties in index order), decoded; the first message `accept` takes, with
/// the Hamming distance between the hard word and its codeword.
pub(crate) fn chase<T>(
    soft: &[f64; N],
    whiten: &[bool; N],
    accept: impl Fn(u64) -> Option<T>,
) -> Option<(T, usize)> {
    let hard: [bool; N] = std::array::from_fn(|i| (soft[i] < 0.0) ^ whiten[i]);
    let mut order: Vec<usize> = (0..N).collect();
    order.sort_by(|&a, &b| soft[a].abs().total_cmp(&soft[b].abs()));
    let weak = &order[..CHASE_P];
    for mask in 0..1u32 << CHASE_P {
        let mut word = hard;
        for (j, &pos) in weak.iter().enumerate() {
            if mask >> j & 1 == 1 {
                word[pos] = !word[pos];
            }
        }
        let Some((msg, _)) = decode(&word) else {
            continue;
        };
        if let Some(found) = accept(msg) {
            let codeword = encode(msg);
            let distance = codeword.iter().zip(&hard).filter(|(a, b)| a != b).count();
            return Some((found, distance));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn up_to_ten_errors_are_corrected_and_eleven_are_not_mistaken_silently() {
        let mut state = 42u64;
        for trial in 0..200 {
            let msg = lcg(&mut state) << 11 ^ lcg(&mut state);
            let code = encode(msg);
            assert_eq!(decode(&code), Some((msg, 0)));
            let errors = trial % 11;
            let mut word = code;
            let mut flipped = Vec::new();
            while flipped.len() < errors {
                let p = (lcg(&mut state) % 127) as usize;
                if !flipped.contains(&p) {
                    flipped.push(p);
                    word[p] = !word[p];
                }
            }
            assert_eq!(decode(&word), Some((msg, errors)), "trial {trial}");
        }
    }

    #[test]
    fn the_test_vector_of_the_reference_encodes_alike() {
        // server 0x1234, image 0xdeadbeef, CRC 0xde6b (SPEC.md §1).
        let code = encode(0x1234_dead_beef_de6b);
        let word = to_int(&code) << 1;
        assert_eq!(word, 0x1234_dead_beef_de6b_5e92_cb8c_07db_3f22);
    }

    #[test]
    fn chase_recovers_what_hard_decoding_cannot() {
        let msg = 0x0badc0ffee15u64 << 16 | 0x1234;
        let code = encode(msg);
        let whiten = [false; N];
        // Twelve errors, six of them on the least reliable positions.
        let mut soft: [f64; N] = std::array::from_fn(|i| if code[i] { -1.0 } else { 1.0 });
        for (k, p) in [3usize, 17, 40, 66, 90, 120].into_iter().enumerate() {
            soft[p] = -soft[p] * 0.01 * (k + 1) as f64;
        }
        for p in [5usize, 25, 50, 75, 100, 110] {
            soft[p] = -soft[p];
        }
        let hard: [bool; N] = std::array::from_fn(|i| soft[i] < 0.0);
        assert_eq!(decode(&hard), None);
        let found = chase(&soft, &whiten, |m| (m == msg).then_some(m));
        assert_eq!(found, Some((msg, 12)));
    }
}
