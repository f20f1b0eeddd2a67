"""Synthetic faces as a Kaggle-style fer2013.csv, for a first run without the data: the seven classes differ by
drawn features (mouth curve and opening, brows, eyes) under random pose, scale, lighting and noise. Learnable, but
not from any single pixel; the tests use them, so nothing there needs FER2013.

    python tools/synthetic_faces.py data/synthetic.csv [--n 3000]     then train.py --data data/synthetic.csv
"""
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
from data import CLASSES, SIZE  # noqa: E402

# Per class: mouth curve (+ smiles), mouth opening, mouth width, brow height, brow tilt (+ inner end up),
# eye opening
FEATURES = np.array([
    # curve  open  width  brow_y  tilt   eye
    [-0.10, 0.00, 0.30, -0.30, -0.55, 0.55],  # angry: brows pulled down to the centre, narrowed eyes
    [-0.25, 0.06, 0.22, -0.33, -0.30, 0.45],  # disgust: narrow downturned mouth, lowered brows, squint
    [-0.05, 0.10, 0.34, -0.52, 0.45, 1.35],  # fear: raised inner brows, wide eyes, stretched open mouth
    [0.55, 0.05, 0.36, -0.42, 0.00, 0.85],  # happy: strong smile
    [-0.45, 0.00, 0.28, -0.42, 0.45, 0.75],  # sad: downturned mouth, inner brows up
    [0.00, 0.30, 0.16, -0.58, 0.05, 1.40],  # surprise: round open mouth, high brows, wide eyes
    [0.00, 0.00, 0.30, -0.42, 0.00, 0.90],  # neutral
], dtype=np.float32)


# per-face std of each feature
FEATURE_SPREAD = np.array([0.07, 0.02, 0.03, 0.02, 0.11, 0.07], dtype=np.float32)


def synthetic_faces(n, seed=0):
    """n faces (uint8 [n, 48, 48]) with balanced labels, deterministic given the seed."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    feats = FEATURES[labels] + rng.normal(0, 1, FEATURES[labels].shape).astype(np.float32) * FEATURE_SPREAD
    angle = rng.uniform(-0.15, 0.15, n)
    scale = rng.uniform(0.85, 1.15, n)
    shift = rng.uniform(-0.08, 0.08, (n, 2))
    g = np.linspace(-1, 1, SIZE, dtype=np.float32)
    gy, gx = np.meshgrid(g, g, indexing="ij")
    images = np.empty((n, SIZE, SIZE), np.uint8)
    for lo in range(0, n, 512):  # chunks keep the float work a few MB
        s = slice(lo, min(n, lo + 512))
        c, si = np.cos(angle[s])[:, None, None], np.sin(angle[s])[:, None, None]
        x0, y0 = gx - shift[s, 0, None, None], gy - shift[s, 1, None, None]
        u = (c * x0 + si * y0) / scale[s, None, None]  # face coordinates
        v = (-si * x0 + c * y0) / scale[s, None, None]
        curve, opening, width, brow_y, tilt, eye = (feats[s, i, None, None] for i in range(FEATURES.shape[1]))
        per_face = (s.stop - lo, 1, 1)
        soft = lambda d: 1 / (1 + np.exp(np.clip(d / 0.025, -30, 30)))  # ~1 inside (d < 0), anti-aliased edge
        face = soft((u / 0.72) ** 2 + (v / 0.9) ** 2 - 1)
        eyes = soft(((np.abs(u) - 0.3) / 0.13) ** 2 + ((v + 0.12) / (0.07 * eye)) ** 2 - 1)
        brow_line = brow_y - tilt * (0.45 - np.abs(u)) - v  # tilt > 0 raises the inner ends
        brows = soft(np.abs(brow_line) - 0.035) * soft(np.abs(np.abs(u) - 0.32) - 0.16)
        mu = np.clip(u / width, -1, 1)
        upper = 0.5 + curve * 0.3 * (0.5 - mu ** 2)  # curve > 0 lifts the corners: a smile
        lower = upper + opening * (1 - mu ** 2) + 0.03
        mouth = soft(np.abs(u) - width) * soft(np.maximum(upper - v, v - lower))
        nose = soft(np.abs(u) - 0.03) * soft(np.abs(v - 0.18) - 0.14) * 0.3
        skin = rng.uniform(0.5, 0.8, per_face)
        background = rng.uniform(0.05, 0.45, per_face)
        img = background + face * (skin - background)
        img = img * (1 - 0.9 * np.maximum.reduce([eyes, brows, mouth, nose]) * face)
        # a gradient
        light = 1 + rng.uniform(-0.35, 0.35, per_face) * gx + rng.uniform(-0.2, 0.2, per_face) * gy
        img = img * light * rng.uniform(0.7, 1.3, per_face) + rng.normal(0, 0.04, img.shape)
        images[s] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def synthetic_usage(n):
    """The Kaggle fer2013.csv proportions, roughly: 80% Training, 10% PublicTest, 10% PrivateTest."""
    usage = np.array(["Training"] * n, dtype=object)
    usage[np.arange(n) % 10 == 8] = "PublicTest"
    usage[np.arange(n) % 10 == 9] = "PrivateTest"
    return usage


def write_csv(path, images, labels, usage=None):
    """Kaggle's fer2013.csv layout (emotion,pixels[,Usage]), written atomically (.gz, .zip ... by the name)."""
    df = pd.DataFrame({"emotion": labels, "pixels": [" ".join(map(str, r)) for r in images.reshape(len(images), -1).tolist()]})
    if usage is not None:
        df["Usage"] = usage
    cli.atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, compression="infer"))


def face_count(n):
    return 7 <= n <= 1_000_000  # a face per class; a million faces is a 4.6 GB CSV


def main(argv=None):
    p = cli.parser("synthetic_faces.py", __doc__)
    p.add_argument("out", help="the CSV to write (.csv, .csv.gz)")
    p.add_argument("--n", type=cli.ranged(int, face_count, "7 to 1,000,000"), default=3000,
                   help="how many faces (80%% Training, 10%% PublicTest, 10%% PrivateTest)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="which faces")
    args = p.parse_args(argv)
    if os.path.exists(args.out):  # it may be someone's real data
        raise cli.OutputError(f"{args.out}: already exists; choose another name or delete it")
    cli.check_writable(args.out)
    images, labels = synthetic_faces(args.n, args.seed)
    write_csv(args.out, images, labels, synthetic_usage(args.n))
    print(f"wrote {args.n} synthetic faces to {args.out}")


if __name__ == "__main__":
    cli.run(main, "synthetic_faces.py")
