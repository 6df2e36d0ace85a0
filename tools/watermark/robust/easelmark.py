#!/usr/bin/env python3
"""easelmark v1: a robust invisible watermark for Easel outputs (reference implementation).

The algorithm is specified in SPEC.md next to this file; every constant used here is
listed there.  Library:

    embed(rgb_uint8, server, image) -> rgb_uint8
    detect(rgb_uint8) -> None | dict(server, image, confidence, scale, offset_x, offset_y, ...)

CLI:
    python easelmark.py embed IN OUT --server 0x1234 --image 0xdeadbeef
    python easelmark.py detect IN
"""
import argparse
import hashlib
import json
import sys

import numpy as np

# ----------------------------------------------------------------------------- constants
KEY = b"easelmark-v1"
T = 16                 # tile side in cells
CELL = 4               # cell side in canonical pixels
P = T * CELL           # tile period in canonical pixels (64)
N_CODE = 127           # BCH(127,64) code length
K_MSG = 64             # message bits = 48 data + 16 CRC
T_ERR = 10             # BCH designed radius: the generator has the roots alpha^1 .. alpha^(2 T_ERR) (distance 21)
N_SYNC = T * T - N_CODE  # 129 sync cells
SMOOTH = np.array([0.25, 0.5, 0.25])  # pattern smoothing kernel [1,2,1]/4 (centred: tap k at offset k - 1)
S_C = 1                # centre index of SMOOTH

# embedding strength (luminance grey levels, applied to the unit-RMS pattern)
Q_SSIM = 0.05          # target SSIM loss per window
C2_SSIM = (0.03 * 255) ** 2
M_MAX = 3.2            # strength cap (keeps PSNR >= 38 dB even on fully textured pictures)
HEAD_K = 2.5           # headroom (in units of m) below which the pattern becomes one-sided / fades
SSIM_LOSS = 0.012      # global budget: predicted mean SSIM loss of the picture
MSE_MAX = 255.0 ** 2 / 10 ** (38.2 / 10)  # global budget: MSE of the delivered uint8 output (PSNR >= 38.2 dB)
MSE_STEP = 0.95        # factor on k^2 per step while the rounded output is over MSE_MAX
SSIM_MIN = 0.981       # calibration: the delivered output's SSIM (ssim() below) is at least this
SSIM_AIM = 0.9813      # calibration: the first try aims here (a little above SSIM_MIN)
CAL_G_MIN, CAL_G_MAX = 0.25, 4.0  # calibration: bounds of the factor on k^2
CAL_STEP = 0.9         # calibration: factor on the k^2 factor after a try that fails
CAL_TRIES = 8          # calibration: tries at most
WHITE_K = 0.8          # strength factor of the one-sided pattern near white (SSIM cost of one-sided is higher)
ACT_R = 2              # activity: box radius of the local mean / mean square
MASK_R = 2             # mask smoothing box radius
CH_HI = 221.0          # channel-aware headroom: channels <= CH_HI survive brightness x1.15 (255/1.15 = 221.7)
CH_LO = 0.0            # ... and channels >= CH_LO (contrast +15 % clips below ~0.13 * mean)
U_MIN = 0.4            # luma weight of the robust channels at which a pixel is fully carried by them (gain <= 1/U_MIN)
LUMA_W = np.array([0.299, 0.587, 0.114])

# detection
PRE_R = 3              # prefilter: residual = Y - sigma_{PRE_R}(Y) (separable sigma filter, see residual())
SIGMA_TAU = 6.0        # sigma filter: only neighbours within +-SIGMA_TAU grey levels are averaged
W_R = 4                # weighting: local energy box radius
V0 = 2.0               # weighting: x = r * V0 / (V0 + box_{W_R}(r^2))
CLIP_K = 3.0           # residual clip at CLIP_K * (mean |residual|)
DET_MAX = 512          # decoding reads at most the central DET_MAX x DET_MAX window
SEARCH_MAX = 256       # the scale search reads at most the central SEARCH_MAX x SEARCH_MAX window
S_FINE = 1.004         # scale refinement step around a candidate
S_MIN, S_MAX = 0.45, 2.2
S_STEP = 1.008         # geometric step of the scale grid
N_CAND = 3             # scale candidates decoded
Z_MIN = 4.0            # minimum sync z-score to attempt decoding
OSD_ORDER = 3          # ordered-statistics decoding: flips of up to 3 of the 64 most reliable independent positions
RANK_SUM_MAX = 560     # acceptance: the rank-weighted distance (sum of the reliability ranks + 1 where the word differs)
EQ_LAMBDA = 0.01       # Wiener regularisation of the cell equaliser
LS_K = 1               # adaptive equaliser: (2 LS_K + 1)^2 taps fitted on the sync cells
LS_EPS = 1e-6          # its ridge regularisation (relative to the mean diagonal)
MIN_SIDE = 96          # smaller images are refused by the detector

# ----------------------------------------------------------------------------- PRNG
def prng_bytes(label: str, n: int) -> bytes:
    """SHA-256 in counter mode: SHA256(KEY | '/' | label | '/' | be32(i)), i = 0, 1, ..."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(KEY + b"/" + label.encode() + b"/" + i.to_bytes(4, "big")).digest()
        i += 1
    return bytes(out[:n])


def prng_bits(label: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(prng_bytes(label, (n + 7) // 8), dtype=np.uint8))[:n].astype(np.int64)


def permutation(label: str, n: int) -> np.ndarray:
    """Fisher-Yates: for i = n-1 .. 1: j = be32(word) mod (i+1); swap(a[i], a[j])."""
    words = prng_bytes(label, 4 * (n - 1))
    a = list(range(n))
    for k, i in enumerate(range(n - 1, 0, -1)):
        j = int.from_bytes(words[4 * k:4 * k + 4], "big") % (i + 1)
        a[i], a[j] = a[j], a[i]
    return np.array(a, dtype=np.int64)


# ----------------------------------------------------------------------------- CRC + BCH
def crc16_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


GF_POLY = 0x89  # x^7 + x^3 + 1
EXP = [0] * 254
LOG = [0] * 128
_v = 1
for _i in range(127):
    EXP[_i] = EXP[_i + 127] = _v
    LOG[_v] = _i
    _v <<= 1
    if _v & 0x80:
        _v ^= GF_POLY


def gf_mul(a, b):
    return 0 if a == 0 or b == 0 else EXP[LOG[a] + LOG[b]]


def _poly_mul_gf2(a, b):  # polynomials over GF(2) as python ints (bit i = coeff of x^i)
    r = 0
    while b:
        if b & 1:
            r ^= a
        a <<= 1
        b >>= 1
    return r


def _minimal_poly(e):
    """Minimal polynomial over GF(2) of alpha^e, as int."""
    coset, x = [], e % 127
    while x not in coset:
        coset.append(x)
        x = (2 * x) % 127
    poly = [1]  # coefficients in GF(128), low degree first
    for c in coset:
        root = EXP[c]
        new = [0] * (len(poly) + 1)
        for i, p in enumerate(poly):
            new[i + 1] ^= p
            new[i] ^= gf_mul(p, root)
        poly = new
    return sum((1 << i) for i, p in enumerate(poly) if p), tuple(sorted(coset))


def _generator():
    g, seen = 1, set()
    for e in range(1, 2 * T_ERR + 1):
        m, coset = _minimal_poly(e)
        if coset not in seen:
            seen.add(coset)
            g = _poly_mul_gf2(g, m)
    return g


G_POLY = _generator()
assert G_POLY.bit_length() - 1 == N_CODE - K_MSG


def bch_encode(msg_bits):
    """msg_bits: 64 bits m_0..m_63 -> 127 bits [m_0..m_63, p_0..p_62].

    Codeword polynomial c(x) = sum_j m_j x^(126-j) + sum_k p_k x^(62-k),
    parity = (m(x) * x^63) mod g(x)."""
    m = 0
    for b in msg_bits:
        m = (m << 1) | int(b)
    rem = m << 63
    for d in range(126, 62, -1):
        if rem >> d & 1:
            rem ^= G_POLY << (d - 63)
    word = (m << 63) | rem
    return np.array([(word >> (126 - i)) & 1 for i in range(N_CODE)], dtype=np.int64)


# ----------------------------------------------------------------------------- payload
def payload_bits(server: int, image: int) -> np.ndarray:
    data = (server & 0xFFFF).to_bytes(2, "big") + (image & 0xFFFFFFFF).to_bytes(4, "big")
    word = data + crc16_ccitt_false(data).to_bytes(2, "big")
    return np.unpackbits(np.frombuffer(word, dtype=np.uint8)).astype(np.int64)


def parse_payload(msg_bits):
    word = bytes(np.packbits(np.asarray(msg_bits, dtype=np.uint8)))
    if crc16_ccitt_false(word[:6]) != int.from_bytes(word[6:8], "big"):
        return None
    return int.from_bytes(word[0:2], "big"), int.from_bytes(word[2:6], "big")


# ----------------------------------------------------------------------------- tile
PERM = SYNC_CELLS = DATA_CELLS = SYNC_CHIPS = WHITEN = SYNC_T = SYNC_F = _FOOT = None


def _init():
    """(Re)compute the key-derived tables (call after changing T or CELL)."""
    global PERM, SYNC_CELLS, DATA_CELLS, SYNC_CHIPS, WHITEN, SYNC_T, SYNC_F, _FOOT, P, N_SYNC
    P = T * CELL
    N_SYNC = T * T - N_CODE
    PERM = permutation("cells", T * T)          # PERM[k] = cell index (row*T + col)
    SYNC_CELLS = PERM[:N_SYNC]
    DATA_CELLS = PERM[N_SYNC:]                  # DATA_CELLS[i] carries code bit i
    SYNC_CHIPS = 1 - 2 * prng_bits("sync", N_SYNC)
    WHITEN = prng_bits("whiten", N_CODE)
    SYNC_T = sync_template()
    SYNC_F = np.conj(np.fft.fft2(SYNC_T))
    _FOOT = np.convolve(np.ones(CELL), SMOOTH)
    global GRAM
    GRAM = cell_gram()


def _circ_smooth(tile):
    """Separable circular convolution of a P x P tile with SMOOTH (centred):
    out[y] = sum_k SMOOTH[k] * in[(y + S_C - k) mod P], first along rows (axis 0), then columns."""
    out = tile
    for ax in (0, 1):
        acc = np.zeros_like(out)
        for k, w in enumerate(SMOOTH):
            acc += w * np.roll(out, k - S_C, axis=ax)
        out = acc
    return out


def _cells_to_tile(cell_vals):
    grid = np.asarray(cell_vals, dtype=np.float64).reshape(T, T)
    return _circ_smooth(np.repeat(np.repeat(grid, CELL, 0), CELL, 1))


def sync_template():
    v = np.zeros(T * T)
    v[SYNC_CELLS] = SYNC_CHIPS
    return _cells_to_tile(v)


def make_tile(server, image):
    code = bch_encode(payload_bits(server, image)) ^ WHITEN
    v = np.zeros(T * T)
    v[SYNC_CELLS] = SYNC_CHIPS
    v[DATA_CELLS] = 1 - 2 * code
    tile = _cells_to_tile(v)
    return tile / np.sqrt(np.mean(tile ** 2))




# ----------------------------------------------------------------------------- helpers
def luma(rgb):
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def box(a, r):
    """Mean over a (2r+1)x(2r+1) window, edges replicated."""
    if r <= 0:
        return a
    for ax in (0, 1):
        n = a.shape[ax]
        p = [(0, 0), (0, 0)]
        p[ax] = (r + 1, r)
        c = np.cumsum(np.pad(a, p, mode="edge"), axis=ax)
        hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=ax)
        lo = np.take(c, np.arange(0, n), axis=ax)
        a = (hi - lo) / (2 * r + 1)
    return a


GAUSS = np.exp(-np.arange(-5, 6) ** 2 / (2 * 1.5 ** 2))
GAUSS /= GAUSS.sum()


def gauss(a):
    """Separable 11-tap Gaussian (sigma 1.5, SSIM's window), edges replicated."""
    for ax in (0, 1):
        n = a.shape[ax]
        p = [(0, 0), (0, 0)]
        p[ax] = (5, 5)
        ap = np.pad(a, p, mode="edge")
        a = sum(w * np.take(ap, np.arange(k, k + n), axis=ax) for k, w in enumerate(GAUSS))
    return a


# ----------------------------------------------------------------------------- embed
def strength_mask(Y):
    """Strength so that the SSIM loss per window stays ~ Q: m = sqrt(Q (2 act^2 + C2)).
    Returns (m, act2)."""
    mu = box(Y, ACT_R)
    act2 = np.maximum(box((Y - mu) ** 2, ACT_R), 0)
    m = np.minimum(np.sqrt(Q_SSIM * (2.0 * act2 + C2_SSIM)), M_MAX)
    return box(m, MASK_R), act2


def embed(rgb, server: int, image: int):
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError("expected an HxWx3 uint8 array")
    H, W, _ = rgb.shape
    if H < 256 or W < 256:
        raise ValueError("embed needs at least 256x256 (enlarge smaller outputs first)")
    tile = make_tile(server, image)
    pat = np.tile(tile, (-(-H // P), -(-W // P)))[:H, :W]
    Y = luma(rgb)
    m, act2 = strength_mask(Y)
    f = rgb.astype(np.float64)
    up = 255.0 - f.max(axis=2)          # headroom above (to 255) of the brightest channel
    dn = f.min(axis=2)                  # headroom below (to 0) of the darkest channel
    a_up = np.clip(1.0 - up / (HEAD_K * m), 0.0, 1.0)
    a_dn = np.clip(1.0 - dn / (HEAD_K * m), 0.0, 1.0)
    # near white: asymmetric pattern W - a_up|W| (negative half doubled, positive half removed)
    # keeps the correlation with W and is not clipped away; it is scaled down towards WHITE_K
    # because a one-sided pattern costs more SSIM than a symmetric one.
    # near black: the pattern fades out (factor 1 - a_dn): a one-sided positive pattern would
    # raise the local mean, and SSIM's luminance term is very sensitive to that near 0.
    d = m * (1.0 - a_dn) * (1.0 - (1.0 - WHITE_K) * a_up) * (pat - a_up * np.abs(pat))
    # channel-aware headroom: rho_C = how well channel C can carry a symmetric +-change that survives
    # brightness / contrast +15 % (ramps inside [CH_LO, CH_HI]: width HEAD_K m below CH_HI, width
    # HEAD_K m / U_MIN above CH_LO so that even the largest gain 1/U_MIN never clips at 0); U = luma weight of
    # those channels.  The symmetric pattern m W is put into them (same change in every robust channel,
    # luma change lam * m W, lam = min(1, U / U_MIN)); the rest (1 - lam) of the pixel keeps the old d
    # on all three channels.
    hm = HEAD_K * m
    rho = (np.clip((CH_HI - f) / hm[..., None], 0.0, 1.0) * np.clip((f - CH_LO) / (hm / U_MIN)[..., None], 0.0, 1.0))
    U = rho[..., 0] * LUMA_W[0] + rho[..., 1] * LUMA_W[1] + rho[..., 2] * LUMA_W[2]
    lam = np.minimum(U / U_MIN, 1.0)
    Ud = np.maximum(U, U_MIN)
    ds = m * pat
    D = (ds / Ud)[..., None] * rho + ((1.0 - lam) * d)[..., None]   # per-channel change, H x W x 3
    dY = D[..., 0] * LUMA_W[0] + D[..., 1] * LUMA_W[1] + D[..., 2] * LUMA_W[2]
    # global budget: scale the whole pattern down (never up) so that the predicted mean SSIM loss
    # mean(dvar / (2 avar + C2)) stays <= SSIM_LOSS, with dvar / avar the local variances of the luma
    # change dY / Y in SSIM's own Gaussian window (a local mean shift costs SSIM almost nothing), and
    # the MSE mean(D^2) (over all pixels and the 3 channels) stays <= MSE_MAX.
    dvar = np.maximum(gauss(dY * dY) - gauss(dY) ** 2, 0)
    avar = np.maximum(gauss(Y * Y) - gauss(Y) ** 2, 0)
    k2 = min(1.0, SSIM_LOSS / max(np.mean(dvar / (2.0 * avar + C2_SSIM)), 1e-30),
             MSE_MAX / max(np.mean(D * D), 1e-30))
    # the rounded output can have a larger MSE than D (D takes few distinct values on textured
    # pictures, so rounding does not average out): check the delivered output itself and shrink
    # k^2 by MSE_STEP until its MSE (over all pixels and the 3 channels) is <= MSE_MAX (at most 40 steps).
    for _ in range(41):
        out = np.clip(np.rint(f + D * np.sqrt(k2)), 0, 255)
        if np.mean((out - f) ** 2) <= MSE_MAX:
            break
        k2 *= MSE_STEP
    # calibration: the prediction above is pessimistic by a picture-dependent factor (rounding,
    # the luminance term); measure the delivered output's SSIM and rescale k^2 so that it lands
    # just above SSIM_MIN, assuming the loss 1 - SSIM grows like k^2; a try that fails SSIM_MIN or
    # MSE_MAX is followed by one CAL_STEP smaller, at most CAL_TRIES tries; none passing keeps out.
    s0 = ssim(Y, luma(out))
    g = min(max((1.0 - SSIM_AIM) / max(1.0 - s0, 1e-12), CAL_G_MIN), CAL_G_MAX)
    for _ in range(CAL_TRIES):
        if g <= 1.0 and s0 >= SSIM_MIN:
            break
        tried = np.clip(np.rint(f + D * np.sqrt(k2 * g)), 0, 255)
        if np.mean((tried - f) ** 2) <= MSE_MAX and ssim(Y, luma(tried)) >= SSIM_MIN:
            out = tried
            break
        g *= CAL_STEP
    return out.astype(np.uint8)


def _gauss_valid(a):
    """SSIM's 11-tap Gaussian over the valid windows only (no padding): (H-10) x (W-10)."""
    n0, n1 = a.shape
    a = sum(w * a[k:k + n0 - 10, :] for k, w in enumerate(GAUSS))
    return sum(w * a[:, k:k + n1 - 10] for k, w in enumerate(GAUSS))


def ssim(x, y):
    """Mean SSIM of two luma planes: Gaussian window (11 taps, sigma 1.5), C1 = (0.01 * 255)^2,
    C2 = (0.03 * 255)^2, over the valid windows (the measure bench.py and `easel bench watermark`
    report)."""
    c1, c2 = (0.01 * 255) ** 2, C2_SSIM
    mx, my = _gauss_valid(x), _gauss_valid(y)
    sxx = _gauss_valid(x * x) - mx * mx
    syy = _gauss_valid(y * y) - my * my
    sxy = _gauss_valid(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(np.mean(s))


# ----------------------------------------------------------------------------- detect
def sigma_pass(a, r, tau, ax):
    """One 1-D pass of a sigma filter (Lee) along axis ax: every pixel becomes the mean of the
    pixels of its (2r+1) window (edges replicated) whose value lies within +-tau of its own value
    (the pixel itself always counts).  Steps larger than tau (object edges, the 8x8 squares of an
    enlarged output) are preserved; the small watermark pattern is averaged away."""
    n = a.shape[ax]
    p = [(0, 0), (0, 0)]
    p[ax] = (r, r)
    ap = np.pad(a, p, mode="edge")
    acc = np.zeros_like(a)
    cnt = np.zeros_like(a)
    for k in range(2 * r + 1):
        nb = np.take(ap, np.arange(k, k + n), axis=ax)   # neighbour at offset k - r
        ok = np.abs(nb - a) <= tau
        acc += np.where(ok, nb, 0.0)
        cnt += ok
    return acc / cnt


def residual(Y, pre_r=None):
    """High-pass residual, weighted by the inverse of its local energy, then clipped.

    The smooth part is an edge-preserving separable sigma filter (rows first, then columns on
    the row-filtered image), so piecewise-flat content leaves (almost) no residual and the
    watermark dominates the residual inside flat and gently varying regions."""
    pre_r = PRE_R if pre_r is None else pre_r
    r = Y - sigma_pass(sigma_pass(Y, pre_r, SIGMA_TAU, 1), pre_r, SIGMA_TAU, 0)
    v = box(r * r, W_R)
    x = r * (V0 / (V0 + v))
    lim = CLIP_K * np.mean(np.abs(x)) + 1e-9
    return np.clip(x, -lim, lim)


def _centre(Y, n):
    y0, x0 = max(0, (Y.shape[0] - n) // 2), max(0, (Y.shape[1] - n) // 2)
    return Y[y0:y0 + n, x0:x0 + n], y0, x0


def _fold_matrix(n, s):
    """n x P fold matrix for scale s; image pixel centre x + 0.5 <-> canonical (x + 0.5 - c)/s,
    c = floor(n/2) (an integer, so that at s = 1 every pixel falls on exactly one bin).

    s >= 1 (splat): every image pixel x adds to the two canonical bins around
        u = (x + 0.5 - n/2)/s - 0.5 with linear weights.
    s < 1 (gather): every canonical integer position u whose image position
        x = (u + 0.5) s + n/2 - 0.5 lies in [0, n-1] takes the linear interpolation of
        the two image pixels around x, and adds it to bin u mod P."""
    A = np.zeros((n, P))
    c = float(n // 2)
    if s >= 1:
        u = (np.arange(n) + 0.5 - c) / s - 0.5
        i0 = np.floor(u)
        f = u - i0
        i0 = i0.astype(np.int64)
        rows = np.arange(n)
        A[rows, i0 % P] += 1 - f
        A[rows, (i0 + 1) % P] += f
        return A
    ulo = int(np.ceil((0.5 - c) / s - 0.5))
    uhi = int(np.floor((n - 0.5 - c) / s - 0.5))
    u = np.arange(ulo, uhi + 1)
    x = (u + 0.5) * s + c - 0.5
    x0 = np.clip(np.floor(x).astype(np.int64), 0, n - 2)
    f = x - x0
    np.add.at(A, (x0, u % P), 1 - f)
    np.add.at(A, (x0 + 1, u % P), f)
    return A


def fold(R, s):
    Ay = _fold_matrix(R.shape[0], s)
    Ax = _fold_matrix(R.shape[1], s)
    return Ay.T @ (R @ Ax)


def sync_corr(F):
    """Circular cross-correlation c[dy,dx] = sum F[y+dy, x+dx] * SYNC_T[y, x]."""
    return np.real(np.fft.ifft2(np.fft.fft2(F) * SYNC_F))


def _z(c):
    return (c.max() - c.mean()) / (c.std() + 1e-12)


def _circ_corr1(a, k, shift):
    """1-D circular correlation of length-P vector a with kernel k: out[y] = sum_k k[j] a[y + j - shift]."""
    out = np.zeros(P)
    for j, w in enumerate(k):
        out += w * np.roll(a, -(j - shift))
    return out


def cell_gram():
    """T x T circular kernel g: matched-filter output at cell offset (dy,dx) for a unit cell,
    through the linear part of the detector: in flat regions the sigma filter is a plain box,
    so the high-pass is Y - B_x B_y Y with B = box(2 PRE_R + 1) along each axis."""
    e = np.zeros(P)
    e[0] = 1.0
    h = _circ_corr1(e, _FOOT[::-1], len(_FOOT) - 1 - S_C)               # footprint of cell 0: h[y] = FOOT[y + S_C], rows -1..4
    b = np.ones(2 * PRE_R + 1) / (2 * PRE_R + 1)
    hb = _circ_corr1(h, b, PRE_R)                                        # B applied to the footprint
    r_hh = np.array([np.dot(h, np.roll(h, CELL * d)) for d in range(T)])
    r_hb = np.array([np.dot(hb, np.roll(h, CELL * d)) for d in range(T)])
    return np.outer(r_hh, r_hh) - np.outer(r_hb, r_hb)


def soft_cells(F, dy, dx):
    """Matched filter of every cell of the aligned tile (T*T values, row-major)."""
    A = np.roll(F, (-dy, -dx), axis=(0, 1))  # A[y,x] = F[y+dy, x+dx] (canonical tile)
    # correlate with the cell footprint FOOT = box(CELL) * SMOOTH = [1,3,4,4,3,1]/4:
    # cell (i,j) covers canonical rows 4i-1 .. 4i+4 (and the same columns)
    out = A
    for ax in (0, 1):
        acc = np.zeros_like(out)
        for k, w in enumerate(_FOOT):
            acc += w * np.roll(out, -(k - S_C), axis=ax)
        out = acc
    return out[::CELL, ::CELL]


def ls_equalise(x):
    """Adaptive equaliser: a (2 LS_K + 1)^2-tap circular FIR on the T x T cell grid, fitted by least
    squares so that it maps the cell values of the 129 sync cells onto their known chips.  It absorbs
    what the fixed Gram model misses (the picture-dependent strength, the attack's blur).

    X[c, t] = x[(i + a) mod T, (j + b) mod T] for cell c = i*T + j and tap t = (a, b),
    a, b = -LS_K .. LS_K, a outer (row-major).  M = A^T A + LS_EPS * (trace(A^T A)/ntaps + 1e-30) * I,
    A = X[SYNC_CELLS]; e = M^-1 A^T chips; returns X e (T*T values)."""
    offs = [(a, b) for a in range(-LS_K, LS_K + 1) for b in range(-LS_K, LS_K + 1)]
    X = np.stack([np.roll(x, (-a, -b), axis=(0, 1)).reshape(-1) for a, b in offs], axis=1)
    A = X[SYNC_CELLS]
    M = A.T @ A
    M = M + LS_EPS * (np.trace(M) / len(offs) + 1e-30) * np.eye(len(offs))
    e = np.linalg.solve(M, A.T @ SYNC_CHIPS.astype(np.float64))
    return X @ e


def soft_bits(F, dy, dx):
    """Equalised cell values; the 127 code values.  Two stages: Wiener deconvolution by the fixed
    cell Gram kernel, then the adaptive 3x3 equaliser fitted on the sync cells."""
    y = soft_cells(F, dy, dx)
    G = np.real(np.fft.fft2(GRAM))
    x = np.real(np.fft.ifft2(np.fft.fft2(y) * G / (G * G + EQ_LAMBDA * np.max(G * G))))
    return ls_equalise(x)[DATA_CELLS]


def _rank_subsets(theta):
    """Number of subsets of {1 .. N_CODE} whose sum is at most theta (the false-positive count, §7)."""
    dp = [0] * (theta + 1)
    dp[0] = 1
    for x in range(1, N_CODE + 1):
        for t in range(theta, x - 1, -1):
            dp[t] += dp[t - x]
    return sum(dp)


def _gen_matrix():
    """The 64 x 127 generator matrix: row k is the codeword of the unit message e_k."""
    return np.array([bch_encode(np.eye(K_MSG, dtype=np.int64)[k]) for k in range(K_MSG)], dtype=np.int64)


def _gf2_inverse(a):
    """Inverse of a square 0/1 matrix over GF(2) (Gauss-Jordan; the matrix is known to be regular)."""
    n = a.shape[0]
    m = np.concatenate([a % 2, np.eye(n, dtype=np.int64)], axis=1)
    for col in range(n):
        piv = col + int(np.nonzero(m[col:, col])[0][0])
        m[[col, piv]] = m[[piv, col]]
        rows = np.nonzero(m[:, col])[0]
        rows = rows[rows != col]
        m[rows] ^= m[col]
    return m[:, n:]


def _osd_patterns():
    """The MRIP flip patterns of orders 0 .. OSD_ORDER, in their fixed order: weight by weight, and
    within a weight the index tuples (j1 < j2 < ...) in lexicographic order (j = 0 is the most
    reliable MRIP position).  Returned as an index array padded with K_MSG (a zero row)."""
    from itertools import combinations
    pats = [()]
    for wgt in range(1, OSD_ORDER + 1):
        pats += list(combinations(range(K_MSG), wgt))
    out = np.full((len(pats), OSD_ORDER), K_MSG, dtype=np.int64)
    for i, t in enumerate(pats):
        out[i, :len(t)] = t
    return out


GEN = _gen_matrix()
OSD_PATTERNS = _osd_patterns()


def osd_decode(soft):
    """Ordered-statistics decoding of order OSD_ORDER with a rank-sum acceptance (SPEC.md §1).

    Ranks: position i has rank r_i = its index in the stable ascending sort of |soft| (0 = least
    reliable) and weight r_i + 1.  The MRIP (most reliable independent positions) are taken
    greedily in decreasing rank: a position joins when its generator column is independent of
    those already taken, until there are 64.  Every codeword that differs from the hard word in at
    most OSD_ORDER MRIP positions is a candidate; its cost is the sum of the weights of the
    positions where it differs from the hard word.  The answer is the candidate of least cost
    (ties: the first in pattern order) among those whose message passes the CRC, if that cost is
    at most RANK_SUM_MAX.  Returns ((server, image), hamming distance, cost) or None."""
    hard = (soft < 0).astype(np.int64) ^ WHITEN
    rank = np.empty(N_CODE, dtype=np.int64)
    rank[np.argsort(np.abs(soft), kind="stable")] = np.arange(N_CODE)
    weight = rank + 1
    mrip, basis = [], []  # basis: (pivot bit, reduced column) pairs
    for i in np.argsort(-rank, kind="stable"):
        v = int("".join(str(b) for b in GEN[:, i]), 2)
        for piv, b in basis:
            if v >> piv & 1:
                v ^= b
        if v:
            basis.append((v.bit_length() - 1, v))
            mrip.append(int(i))
            if len(mrip) == K_MSG:
                break
    mrip = np.array(mrip)
    inv = _gf2_inverse(GEN[:, mrip].T)          # message = inv @ (codeword bits on the MRIP)
    c0 = (inv @ hard[mrip] % 2) @ GEN % 2       # re-encoded hard decisions
    delta = np.concatenate([(inv.T @ GEN) % 2, np.zeros((1, N_CODE), dtype=np.int64)])  # row j: flip MRIP j
    cands = c0 ^ delta[OSD_PATTERNS[:, 0]]
    for k in range(1, OSD_ORDER):
        cands ^= delta[OSD_PATTERNS[:, k]]
    cost = (cands ^ hard) @ weight
    for idx in np.argsort(cost, kind="stable"):
        if cost[idx] > RANK_SUM_MAX:
            break
        ids = parse_payload(cands[idx, :K_MSG])
        if ids is not None:
            return ids, int((cands[idx] != hard).sum()), int(cost[idx])
    return None


def scale_grid():
    n = int(np.floor(np.log(S_MAX / S_MIN) / np.log(S_STEP))) + 1
    return S_MIN * S_STEP ** np.arange(n)


def detect(rgb, return_debug=False):
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, -1)
    H, W = rgb.shape[:2]
    if min(H, W) < MIN_SIDE:
        return None
    Yfull = luma(rgb[..., :3])
    # 1. coarse scale search on the central SEARCH_MAX window
    Ys, _, _ = _centre(Yfull, SEARCH_MAX)
    Rs = residual(Ys)
    scales = scale_grid()
    zs = np.empty(len(scales))
    for k, s in enumerate(scales):
        zs[k] = _z(sync_corr(fold(Rs, s)))
    loc = [k for k in range(len(zs)) if (k == 0 or zs[k] >= zs[k - 1]) and (k == len(zs) - 1 or zs[k] > zs[k + 1])]
    loc.sort(key=lambda k: -zs[k])
    # 2. decode the best candidates on the central DET_MAX window
    Yd, y0, x0 = _centre(Yfull, DET_MAX)
    best, tried = None, []
    for k in loc[:N_CAND]:
        if zs[k] < Z_MIN:
            break
        Rd = residual(Yd, max(1, int(round(PRE_R * scales[k]))))
        cands = []
        for s in (scales[k] / S_FINE, scales[k], scales[k] * S_FINE):
            c = sync_corr(fold(Rd, s))
            cands.append((_z(c), s, np.unravel_index(np.argmax(c), c.shape)))
        z, s, (dy, dx) = max(cands, key=lambda t: t[0])
        F = fold(Rd, s)
        soft = soft_bits(F, dy, dx)
        found = osd_decode(soft)
        tried.append((float(s), float(z), found is not None))
        if found is None:
            continue
        ids, nerr, cost = found
        oy = (dy + 0.5) * s + Yd.shape[0] // 2 - 0.5 + y0
        ox = (dx + 0.5) * s + Yd.shape[1] // 2 - 0.5 + x0
        conf = 1.0 - 0.5 * cost / (RANK_SUM_MAX + 1.0) - 0.5 * np.exp(-max(0.0, z - Z_MIN))
        best = dict(server=ids[0], image=ids[1], confidence=round(float(conf), 4), scale=round(float(s), 4),
                    offset_x=round(float(ox % (P * s)), 2), offset_y=round(float(oy % (P * s)), 2),
                    sync_z=round(float(z), 2), bit_errors=int(nerr), rank_sum=int(cost))
        break
    if return_debug:
        return best, dict(scales=scales, zs=zs, tried=tried)
    return best


_init()


# ----------------------------------------------------------------------------- test vectors
def test_image():
    """Deterministic 256x256 test picture for the embed test vector (SPEC.md section 5):
    R = 64 + x div 2, G = 64 + y div 2, B = 128, then the top-left 64x64 square
    is set to white (255) and the bottom-right 64x64 square to black (0)."""
    y, x = np.mgrid[0:256, 0:256]
    img = np.stack([x // 2 + 64, y // 2 + 64, np.full_like(x, 128)], -1).astype(np.uint8)
    img[:64, :64] = 255
    img[192:, 192:] = 0
    return img


def test_image_ch():
    """Second test picture (channel-aware headroom, SPEC.md section 4 step 5c): test_image(), then
    rows 0..63 x columns 192..255 = (255, 40, 40), rows 192..255 x columns 0..63 = (250, 215, 30),
    rows 96..159 x columns 96..159 = (255, 0, 0), rows 96..159 x columns 0..63 = (4, 60, 120)."""
    img = test_image()
    img[:64, 192:] = (255, 40, 40)
    img[192:, :64] = (250, 215, 30)
    img[96:160, 96:160] = (255, 0, 0)
    img[96:160, :64] = (4, 60, 120)
    return img


def selftest():
    """Print the test vectors listed in SPEC.md."""
    code = bch_encode(payload_bits(0x1234, 0xDEADBEEF))
    pack = lambda b: bytes(np.packbits(np.append(b, 0).astype(np.uint8))).hex()
    print("codeword", pack(code))
    print("whiten  ", pack(WHITEN))
    print("sent    ", pack(code ^ WHITEN))
    print("perm[:8]", PERM[:8].tolist())
    print("gram-test g[0,0] g[0,1] g[1,1] g[0,2] = %.10f %.10f %.10f %.10f" % (GRAM[0, 0], GRAM[0, 1], GRAM[1, 1], GRAM[0, 2]))
    src = test_image()
    out = embed(src, 0x1234, 0xDEADBEEF)
    d = out.astype(np.int64) - src.astype(np.int64)
    print("embed-test sha256(out RGB bytes, row-major) =", hashlib.sha256(out.tobytes()).hexdigest())
    print("embed-test sum|out-in| = %d, sum(out-in) = %d, max|out-in| = %d" % (np.abs(d).sum(), d.sum(), np.abs(d).max()))
    print("detect(test) =", detect(out))
    src = test_image_ch()
    out = embed(src, 0x1234, 0xDEADBEEF)
    d = out.astype(np.int64) - src.astype(np.int64)
    print("embed-test-ch sha256 =", hashlib.sha256(out.tobytes()).hexdigest())
    print("embed-test-ch sum|out-in| = %d, sum(out-in) = %d, max|out-in| = %d; per channel sum|out-in| R G B = %s"
          % (np.abs(d).sum(), d.sum(), np.abs(d).max(), np.abs(d).sum(axis=(0, 1)).tolist()))
    print("detect(test-ch) =", detect(out))


# ----------------------------------------------------------------------------- CLI
def _main(argv=None):
    from PIL import Image
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embed")
    e.add_argument("inp")
    e.add_argument("out")
    e.add_argument("--server", type=lambda v: int(v, 0), required=True)
    e.add_argument("--image", type=lambda v: int(v, 0), required=True)
    d = sub.add_parser("detect")
    d.add_argument("inp")
    sub.add_parser("selftest")
    a = ap.parse_args(argv)
    if a.cmd == "selftest":
        return selftest()
    img = np.asarray(Image.open(a.inp).convert("RGB"))
    if a.cmd == "embed":
        Image.fromarray(embed(img, a.server, a.image)).save(a.out)
    else:
        r = detect(img)
        print(json.dumps(r if r is None else {k: r[k] for k in r}))


if __name__ == "__main__":
    sys.exit(_main())
