"""Synthetic test pictures for the easelmark bench (deterministic from a seed).

emoji:   32x32 RGB, white background, a few filled coloured ellipses with a dark
         outline, enlarged by nearest neighbour x8 to 256x256.
natural: smooth gradients + blurred textures + noise, 256x256 or 512x512.
noise:   uniform random RGB.   flat: one colour.
"""
import numpy as np


def _box(a, r):
    """Separable box mean of radius r along both axes (edge-replicated)."""
    for ax in (0, 1):
        p = [(0, 0)] * a.ndim
        p[ax] = (r, r)
        c = np.cumsum(np.pad(a, p, mode="edge"), axis=ax, dtype=np.float64)
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=ax)), c], axis=ax)
        n = a.shape[ax]
        a = (np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=ax)
             - np.take(c, np.arange(0, n), axis=ax)) / (2 * r + 1)
    return a


def emoji(rng):
    y, x = np.mgrid[0:32, 0:32] + 0.5
    img = np.full((32, 32, 3), 255.0)
    if rng.random() < 0.3:  # light tinted background sometimes
        img[:] = 255 - rng.integers(0, 25, 3)
    for k in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(9, 23, 2)
        a, b = rng.uniform(4, 12, 2) if k == 0 else rng.uniform(2, 6, 2)
        th = rng.uniform(0, np.pi)
        xr = (x - cx) * np.cos(th) + (y - cy) * np.sin(th)
        yr = -(x - cx) * np.sin(th) + (y - cy) * np.cos(th)
        d = np.sqrt((xr / a) ** 2 + (yr / b) ** 2)
        col = rng.integers(0, 256, 3)
        shade = 1 - 0.2 * rng.random() * np.clip((y - cy) / b, 0, 1)
        inside = d < 1
        edge = (d >= 1) & (d < 1 + 1.2 / min(a, b))
        img[inside] = col * shade[inside, None]
        if rng.random() < 0.8:
            img[edge] = rng.integers(0, 60, 3)
    if rng.random() < 0.5:  # eyes
        for sx in (-1, 1):
            ex, ey = 16 + sx * rng.uniform(2, 5), rng.uniform(11, 15)
            img[(np.abs(x - ex) < 1) & (np.abs(y - ey) < 1.5)] = rng.integers(0, 60, 3)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(img, 8, 0), 8, 1)


def natural(rng, n=256):
    y, x = np.mgrid[0:n, 0:n] / n
    img = np.zeros((n, n, 3))
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ang = rng.uniform(0, 2 * np.pi)
    t = (x * np.cos(ang) + y * np.sin(ang))
    t = (t - t.min()) / (t.max() - t.min())
    img += c0 * (1 - t[..., None]) + c1 * t[..., None]
    for _ in range(rng.integers(2, 6)):  # soft blobs / regions
        cx, cy, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.08, 0.35)]
        m = np.clip((r - np.hypot(x - cx, y - cy)) * rng.uniform(20, 200), 0, 1)[..., None]
        img = img * (1 - m) + rng.uniform(0, 255, 3) * m
    for _ in range(rng.integers(1, 4)):  # textures at several scales
        rad = int(rng.integers(1, 6)) * n // 256
        tex = _box(rng.normal(0, 1, (n, n)), max(rad, 1))
        tex /= tex.std() + 1e-9
        amp = rng.uniform(2, 25)
        region = np.clip((rng.uniform(0.2, 0.6) - np.hypot(x - rng.random(), y - rng.random())) * 20, 0, 1)
        img += (amp * tex * (region if rng.random() < 0.6 else 1))[..., None] * rng.uniform(0.6, 1.0, 3)
    img += rng.normal(0, rng.uniform(0, 3), img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def noise(rng, n=256):
    return rng.integers(0, 256, (n, n, 3), dtype=np.uint8)


def flat(rng, n=256):
    return np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), (n, n, 3)).copy()


def make(kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "emoji":
        return emoji(rng)
    if kind == "nat256":
        return natural(rng, 256)
    if kind == "nat512":
        return natural(rng, 512)
    if kind == "noise":
        return noise(rng, int(rng.choice([256, 512])))
    if kind == "flat":
        return flat(rng, int(rng.choice([256, 512])))
    raise ValueError(kind)
