"""Files to tensors: every FER2013 layout, synthetic faces, the Dataset, and device-side batching/augmentation.

A data set here is a dict split -> (images uint8 [N, 48, 48], labels int64 [N]) on the CPU, with splits
"train", "val" and, where the data has one, "test".

    python data.py PATH                 class counts per split, distribution.png and samples.png
    python data.py --synthetic out.csv --n 2000     write synthetic faces as a Kaggle-style CSV
"""
import argparse
import errno
import lzma
import math
import os
import sys
import warnings
import zipfile
import zlib

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
MEAN, STD = 0.5077, 0.2550  # the report's normalisation (its Figure 6)
SIZE = 48
VAL_FRACTION = 0.1  # carved out of train, stratified, when the data has no validation split

# Kaggle's Usage column and the image releases' folder names (Kaggle's, Roboflow's train/valid/test, and folders
# named after the Usage values) -> our split names.
USAGE = {"training": "train", "publictest": "val", "privatetest": "test"}
FOLDERS = {"train": "train", "training": "train", "validation": "val", "val": "val", "valid": "val",
           "publictest": "val", "test": "test", "testing": "test", "privatetest": "test"}
# Class-folder spellings seen in the image releases (Kaggle msambare, jonathanoheix, FER+ style names).
CLASS_ALIASES = {"anger": "angry", "disgusted": "disgust", "fearful": "fear", "happiness": "happy",
                 "sadness": "sad", "surprised": "surprise", "neutrality": "neutral"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class DataError(Exception):
    """Data the user gave cannot be used; the message names the file (and row) and says why, in one line."""


def load(path, seed=0, n_synthetic=3000):
    """Reads what `path` holds: "synthetic", a .csv/.csv.gz (Kaggle fer2013.csv, train.csv or
    icml_face_data.csv layout) or an image-folder tree. Returns {split: (images, labels)}. `seed` draws the
    synthetic faces and the validation split of data that has none; the scripts keep it at 0, so training and
    evaluation always see the same split. Data without training images (a test.csv of PublicTest and/or
    PrivateTest rows, a folder with only test/) keeps just the splits it has: it can be evaluated, not trained on."""
    if path == "synthetic":
        images, labels = synthetic_faces(n_synthetic, seed)
        usage = synthetic_usage(n_synthetic)
        splits = {USAGE[u.lower()]: (images[usage == u], labels[usage == u]) for u in np.unique(usage)}
    elif os.path.isdir(path):
        splits = read_image_tree(path)
    elif os.path.isfile(path):
        splits = read_csv(path)
    else:
        raise DataError(f"{path}: no such file or folder")
    if "all" in splits:  # no split information: the report's stratified train_test_split
        images, labels = splits.pop("all")
        splits["train"] = (images, labels)
    if "train" in splits and "val" not in splits:
        try:
            splits["train"], splits["val"] = stratified_split(*splits["train"], VAL_FRACTION, seed)
        except DataError as e:
            raise DataError(f"{path}: {e}") from None
    return {k: (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, dtype=np.int64)))
            for k, (x, y) in splits.items()}


def stratified_split(images, labels, fraction, seed):
    from sklearn.model_selection import train_test_split
    if len(labels) < 2:
        raise DataError(f"{len(labels)} training image(s): too few to set a validation split aside")
    n_val = max(1, round(fraction * len(labels)))
    present = np.bincount(labels)[np.bincount(labels) > 0]
    # sklearn stratifies only with two of every class and room for each class on both sides
    feasible = present.min() >= 2 and len(present) <= min(n_val, len(labels) - n_val)
    a, b = train_test_split(np.arange(len(labels)), test_size=n_val, random_state=seed,
                            stratify=labels if feasible else None)
    return (images[a], labels[a]), (images[b], labels[b])


# ---------------------------------------------------------------------------------------------------------------
# CSV layouts

COMPRESSION_ERRORS = (zlib.error, zipfile.BadZipFile, lzma.LZMAError, EOFError)  # and OSError (gzip, bz2)


def read_csv(path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.ParserWarning)  # a trailing comma: its empty field dropped
            # index_col=False: a trailing comma must not turn the emotion column into the index;
            # skip_blank_lines=False: blank lines stay rows (dropped below), so row numbers are the file's lines.
            df = pd.read_csv(path, skipinitialspace=True, dtype=str, keep_default_na=False, index_col=False,
                             skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except COMPRESSION_ERRORS + (UnicodeDecodeError, pd.errors.ParserError, OSError, ValueError) as e:
        compressed = str(path).lower().endswith((".gz", ".zip", ".xz", ".bz2", ".zst", ".tar"))
        what = "damaged, or not the compressed file its name says" if compressed and isinstance(
            e, COMPRESSION_ERRORS + (OSError,)) else "not a readable CSV"
        raise DataError(f"{path}: {what} ({(str(e).splitlines() or [type(e).__name__])[0][:120]})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]  # icml_face_data.csv has " Usage", " pixels"
    if "pixels" not in df.columns or "emotion" not in df.columns:
        raise DataError(f"{path}: expected columns 'emotion' and 'pixels' (and optionally 'Usage'), "
                        f"found {list(df.columns)}")
    lines = np.arange(len(df)) + 2  # the file's line number of each row (line 1 is the header)
    blank = (df == "").all(axis=1).to_numpy()
    df, lines = df[~blank].reset_index(drop=True), lines[~blank]
    if len(df) == 0:
        raise DataError(f"{path}: no rows")
    images = parse_pixels(df["pixels"], path, lines)
    labels = parse_labels(df["emotion"], path, lines)
    if "usage" not in df.columns:
        return {"all": (images, labels)}
    usage = df["usage"].str.strip().str.lower()
    unknown = sorted(set(usage) - set(USAGE))
    if unknown:
        row = int(np.flatnonzero(~usage.isin(list(USAGE)))[0])
        raise DataError(f"{path}: row {lines[row]}: unknown Usage {df['usage'].iloc[row]!r} "
                        "(expected Training, PublicTest or PrivateTest)")
    return {USAGE[u]: (images[(usage == u).to_numpy()], labels[(usage == u).to_numpy()]) for u in usage.unique()}


def parse_pixels(column, path, lines):
    """All rows in one C-level parse (np.fromstring) instead of a Python split per row: ~2 s for 32k rows.
    A -1 (never a pixel) ends every row, so a row short by a value and a later one long by one cannot pass
    as the right total: each row's end must fall exactly where 2,304 values put it."""
    n = len(column)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # older numpy warns (newer raises) on bad text
            flat = np.fromstring(" -1 ".join(column.tolist()) + " -1", dtype=np.float32, sep=" ")
    except ValueError:
        flat = np.zeros(0, np.float32)
    if flat.size == n * (SIZE * SIZE + 1):
        rows = flat.reshape(n, SIZE * SIZE + 1)
        pixels = rows[:, :-1]
        if np.all(rows[:, -1] == -1) and np.all((pixels >= 0) & (pixels <= 255) & (pixels == np.round(pixels))):
            return pixels.astype(np.uint8).reshape(n, SIZE, SIZE)
    for line, text in zip(lines, column.tolist()):  # slow path, only to name the bad row
        tokens = text.split()
        if len(tokens) != SIZE * SIZE:
            raise DataError(f"{path}: row {line}: {len(tokens)} pixel values, expected {SIZE * SIZE}")
        try:
            values = np.array(tokens, dtype=np.float64)
        except ValueError:
            bad = next(t for t in tokens if not _is_number(t))
            raise DataError(f"{path}: row {line}: pixel value {bad[:20]!r} is not a number") from None
        if not np.all((values >= 0) & (values <= 255) & (values == np.round(values))):
            raise DataError(f"{path}: row {line}: pixel values must be whole numbers in 0-255")
    raise DataError(f"{path}: the pixel column could not be parsed")


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def parse_labels(column, path, lines):
    labels = pd.to_numeric(column.str.strip(), errors="coerce").to_numpy()
    bad = np.flatnonzero(~np.isin(labels, np.arange(len(CLASSES))))
    if bad.size:
        row = int(bad[0])
        raise DataError(f"{path}: row {lines[row]}: emotion {column.iloc[row]!r} is not a label 0-6")
    return labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------------------------
# Image folders: ROOT/{train,validation,test}/<class>/*.jpg, or ROOT/<class>/*.jpg

def class_index(name):
    key = name.strip().lower()
    key = CLASS_ALIASES.get(key, key)
    return CLASSES.index(key) if key in CLASSES else None


def read_image_tree(root):
    subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    split_dirs = [d for d in subdirs if d.lower() in FOLDERS]
    for a in split_dirs:
        for b in split_dirs:
            if a < b and FOLDERS[a.lower()] == FOLDERS[b.lower()]:
                raise DataError(f"{root}: folders {a!r} and {b!r} are both the {FOLDERS[a.lower()]} split; keep one")
    if split_dirs:
        return {FOLDERS[d.lower()]: read_class_folders(os.path.join(root, d)) for d in split_dirs}
    if subdirs:
        return {"all": read_class_folders(root)}
    raise DataError(f"{root}: no class folders (expected {root}/train/<class>/*.jpg or {root}/<class>/*.jpg)")


def read_class_folders(folder):
    images, labels = [], []
    for name in sorted(os.listdir(folder)):
        sub = os.path.join(folder, name)
        if not os.path.isdir(sub):
            continue
        label = class_index(name)
        if label is None:
            raise DataError(f"{sub}: unknown class folder {name!r} (expected one of {', '.join(CLASSES)})")
        files = sorted(f for f in os.listdir(sub) if f.lower().endswith(IMAGE_EXTS))
        images += [read_image(os.path.join(sub, f)) for f in files]
        labels += [label] * len(files)
    if not images:
        raise DataError(f"{folder}: no images found in its class folders")
    return np.stack(images), np.array(labels, dtype=np.int64)


def read_image(path):
    """Any size, colour or grey -> 48x48 uint8 grey: Pillow's luminance conversion, then a bilinear resize."""
    from PIL import Image
    grey = read_grey(path)
    if grey.shape != (SIZE, SIZE):
        grey = np.asarray(Image.fromarray(grey).resize((SIZE, SIZE), Image.BILINEAR))
    return grey


def read_grey(path):
    """An image file as uint8 grey [H, W] at its own size: turned upright as its EXIF orientation tag says (phone
    photos are often stored sideways), 16- and 32-bit grey scaled to 8 bits (Pillow's convert("L") clips them to
    white), colour by Pillow's luminance."""
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
                values = np.asarray(im, dtype=np.float64)
                top = 1.0 if im.mode == "F" and values.max() <= 1 else 255.0 if values.max() <= 255 else 65535.0
                return np.clip(np.round(values * (255 / top)), 0, 255).astype(np.uint8)
            return np.asarray(im.convert("L"), dtype=np.uint8).copy()
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: image too large ({str(e).splitlines()[0][:100]})") from None
    except Exception as e:  # noqa: BLE001  Pillow's decoders raise many kinds (OSError, ValueError, struct.error,
        # SyntaxError, ZeroDivisionError, ...) for a damaged file; a file we cannot decode is the user's to fix.
        raise DataError(f"{path}: unreadable image ({(str(e).splitlines() or [type(e).__name__])[0][:100]})") from None


# ---------------------------------------------------------------------------------------------------------------
# Synthetic faces: the classes differ by drawn features (mouth curve and opening, brows, eyes) under random pose,
# scale, lighting and noise. Learnable, but not from any single pixel.

# Per class: mouth curve (+ smiles), mouth opening, mouth width, brow height, brow tilt (+ inner end up), eye opening
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


FEATURE_SPREAD = np.array([0.07, 0.02, 0.03, 0.02, 0.11, 0.07], dtype=np.float32)  # per-face std of each feature


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
        light = 1 + rng.uniform(-0.35, 0.35, per_face) * gx + rng.uniform(-0.2, 0.2, per_face) * gy  # a gradient
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
    """Kaggle fer2013.csv layout (emotion,pixels[,Usage]), written atomically."""
    pixels = [" ".join(map(str, row)) for row in images.reshape(len(images), -1).tolist()]
    df = pd.DataFrame({"emotion": labels, "pixels": pixels})
    if usage is not None:
        df["Usage"] = usage
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, compression="gzip" if path.endswith(".gz") else None))


def atomic_write(path, write):
    """write(tmp_path), then rename over `path`: readers never see a half-written file. A file that cannot be
    written (full disk, read-only folder, a folder of that name) is a DataError naming it."""
    path = str(path)
    root, ext = os.path.splitext(path[:-3] if path.endswith(".gz") else path)
    tmp = f"{root}.tmp{os.getpid()}{ext}{'.gz' if path.endswith('.gz') else ''}"  # keeps the extension for savefig
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"{path}: cannot write it ({e.strerror or e})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_writable(path, folder=False):
    """Before any long work: `path` (a file to write, or with folder=True a folder to write into) can be written.
    Missing parent folders are made. Tries a real file rather than os.access, which says yes to root everywhere."""
    path = str(path)
    target = os.path.abspath(path if folder else os.path.dirname(os.path.abspath(path)))
    if not folder and os.path.isdir(path):
        raise DataError(f"{path}: is a folder; give a file name")
    existing = target
    while not os.path.exists(existing):  # the nearest part of the path that exists must be a folder
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise DataError(f"{path}: {existing} is a file, not a folder")
    try:
        os.makedirs(target, exist_ok=True)
        probe = os.path.join(target, f".write-test{os.getpid()}")
        with open(probe, "w") as f:
            f.write("x")
        os.remove(probe)
    except OSError as e:
        raise DataError(f"{path}: cannot write {'into it' if folder else 'it'} "
                        f"({e.strerror or errno.errorcode.get(e.errno, e)})") from None


# ---------------------------------------------------------------------------------------------------------------
# Tensors for the network. The report's Dataset, kept for per-sample use (and as the reference in the tests);
# training does not use it: whole batches are gathered and augmented on the device (below).

class FERDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i][None]  # uint8 [1, 48, 48]
        if self.transform is not None:
            x = self.transform(x)
        return normalize(x), self.labels[i]


def normalize(images):
    """uint8 (0-255) or float (0-1) pixels -> floats normalised with the report's mean/std; shape kept."""
    if images.dtype == torch.uint8:
        images = images.float() / 255
    return (images - MEAN) / STD


def batches(images, batch_size, device):
    """Normalised float batches [B, 1, 48, 48] on `device`, in order (evaluation, prediction)."""
    for i in range(0, len(images), batch_size):
        yield normalize(images[i:i + batch_size, None].to(device, non_blocking=True)).contiguous(
            memory_format=torch.channels_last)


def class_weights(labels):
    """1 / class count per sample, as the report's WeightedRandomSampler used."""
    counts = torch.bincount(labels, minlength=len(CLASSES)).clamp(min=1)
    return 1.0 / counts[labels].double()


def augment(x, generator, flip=0.5, degrees=8.0, translate=0.2, scale=(0.8, 1.2), erase=0.0):
    """The report's v2 pipeline on a whole batch at once: random horizontal flip, then RandomAffine(degrees,
    translate, scale) with black fill, then optional random erasing. x: float [B, 1, H, W] in [0, 1].
    All draws come from `generator` on x's device, so nothing crosses to the host."""
    rand = lambda *shape: torch.rand(*shape, device=x.device, generator=generator)
    theta = random_affine(rand, x.shape[0], flip, degrees, translate, scale)
    x = warp(x, theta)
    return random_erase(x, rand, erase) if erase > 0 else x


def random_affine(rand, b, flip, degrees, translate, scale):
    """[B, 2, 3] random matrices: rotation within +-degrees, zoom within scale, shift within +-translate of the
    size, mirrored with probability flip."""
    angle = (rand(b) * 2 - 1) * (degrees * torch.pi / 180)
    zoom = scale[0] + rand(b) * (scale[1] - scale[0])
    shift = (rand(b, 2) * 2 - 1) * translate * 2  # a fraction of the size; normalised coordinates span 2
    mirror = torch.where(rand(b) < flip, -1.0, 1.0)
    return affine_matrix(angle, zoom, shift, mirror)


def affine_matrix(angle, zoom, shift, mirror):
    """[B, 2, 3] matrices for affine_grid, which maps output to input coordinates (normalised to [-1, 1]):
    the inverse of "mirror (-1), rotate (radians), zoom (>1 enlarges), shift [B, 2]", so the sampled picture is
    the transformed one."""
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    tx, ty = shift[:, 0], shift[:, 1]
    return torch.stack([torch.stack([cos * mirror, sin * mirror, -(cos * tx + sin * ty) * mirror], 1),
                        torch.stack([-sin, cos, sin * tx - cos * ty], 1)], 1)


def warp(x, theta):
    """Bilinear resampling of x [B, 1, H, W] by theta [B, 2, 3]; outside the image is black (0)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_erase(x, rand, p, area=(0.02, 0.2), ratio=(0.3, 3.3)):
    """RandomErasing (Zhong et al. 2017) as a batched mask: with probability p, a rectangle of the given area
    fraction and aspect ratio is set to 0 (black), as torchvision's RandomErasing(value=0)."""
    b, _, h, w = x.shape
    s = (area[0] + rand(b) * (area[1] - area[0])) * h * w
    r = torch.exp(np.log(ratio[0]) + rand(b) * (np.log(ratio[1]) - np.log(ratio[0])))
    eh, ew = (s * r).sqrt().clamp(max=h), (s / r).sqrt().clamp(max=w)
    top, left = rand(b) * (h - eh), rand(b) * (w - ew)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    box = ((ys >= top[:, None, None]) & (ys < (top + eh)[:, None, None]) &
           (xs >= left[:, None, None]) & (xs < (left + ew)[:, None, None]) & (rand(b) < p)[:, None, None])
    return x.masked_fill(box[:, None], 0.0)


def mix(x, y, rng, mixup=0.0, cutmix=0.0):
    """Mixup (Zhang et al. 2018: blend) or CutMix (Yun et al. 2019: paste a box) of each image with its partner
    in the reversed batch. Returns (images, partner labels, lam): the loss is lam * CE(y) + (1 - lam) * CE(partner).
    With both alphas 0 the batch is returned unchanged with lam = 1. `rng` is a numpy RandomState on the host,
    so lam and the box are plain numbers: nothing to sync with the device."""
    if not mixup and not cutmix:
        return x, y, 1.0
    use_cutmix = cutmix > 0 and (mixup == 0 or rng.rand() < 0.5)
    alpha = cutmix if use_cutmix else mixup
    lam = float(rng.beta(alpha, alpha))
    partner = x.flip(0)
    if not use_cutmix:
        return x.lerp(partner, 1 - lam), y.flip(0), lam
    h, w = x.shape[-2:]
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = rng.randint(h), rng.randint(w)
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h - cut_h // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w - cut_w // 2, w)
    x = x.clone()
    x[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
    return x, y.flip(0), 1 - (bottom - top) * (right - left) / (h * w)  # the box's true share, after clipping


# ---------------------------------------------------------------------------------------------------------------
# python data.py PATH: the report's first section

def explore(path, out_dir, seed=0):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    splits = load(path, seed)
    names = [k for k in ("train", "val", "test") if k in splits]
    counts = {k: np.bincount(splits[k][1].numpy(), minlength=len(CLASSES)) for k in names}
    print(f"{'class':<10}" + "".join(f"{k:>8}" for k in names))
    for i, c in enumerate(CLASSES):
        print(f"{i} {c:<8}" + "".join(f"{counts[k][i]:>8}" for k in names))
    print(f"{'total':<10}" + "".join(f"{counts[k].sum():>8}" for k in names))
    os.makedirs(out_dir, exist_ok=True)

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(names)
    for j, k in enumerate(names):
        bars = ax.bar(np.arange(len(CLASSES)) + j * width, counts[k], width, label=k)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(np.arange(len(CLASSES)) + width * (len(names) - 1) / 2, [f"{i} {c}" for i, c in enumerate(CLASSES)])
    ax.set_ylabel("images")
    ax.set_title(f"Emotion distribution: {os.path.basename(path.rstrip('/'))}")
    ax.legend()
    fig.tight_layout()
    atomic_write(os.path.join(out_dir, "distribution.png"), lambda t: fig.savefig(t, dpi=120))
    plt.close(fig)

    images, labels = splits[names[0]]  # training images, or the first split a test-only file has
    rng = np.random.default_rng(seed)
    per_class = 6
    fig, axes = plt.subplots(len(CLASSES), per_class, figsize=(per_class * 1.1, len(CLASSES) * 1.2))
    for i, c in enumerate(CLASSES):
        idx = np.flatnonzero(labels.numpy() == i)
        pick = rng.choice(idx, min(per_class, idx.size), replace=False) if idx.size else []
        for j in range(per_class):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(pick):
                ax.imshow(images[pick[j]].numpy(), cmap="gray", vmin=0, vmax=255)
        axes[i, 0].set_title(f"{i} {c}", fontsize=8, loc="left")
    fig.tight_layout()
    atomic_write(os.path.join(out_dir, "samples.png"), lambda t: fig.savefig(t, dpi=120))
    plt.close(fig)
    print(f"wrote {os.path.join(out_dir, 'distribution.png')} and {os.path.join(out_dir, 'samples.png')}")


def main(argv=None):
    p = argparse.ArgumentParser(description="Explore a FER2013 data set, or write synthetic faces.")
    p.error = lambda msg: p.exit(2, f"data.py: error: {msg}\n")
    p.add_argument("path", nargs="?", help="fer2013.csv, train.csv, icml_face_data.csv (.gz too), an image "
                                           "folder, or 'synthetic'")
    p.add_argument("--synthetic", metavar="OUT.csv", help="write synthetic faces to this CSV instead")
    p.add_argument("--n", type=int, default=2000, help="number of synthetic faces")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".", help="folder for distribution.png and samples.png")
    args = p.parse_args(argv)
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    if args.synthetic:
        if args.n < 7:
            p.error("--n must be at least 7 (one face per class)")
        check_writable(args.synthetic)
        images, labels = synthetic_faces(args.n, args.seed)
        write_csv(args.synthetic, images, labels, synthetic_usage(args.n))
        print(f"wrote {args.n} synthetic faces to {args.synthetic}")
    elif args.path:
        check_writable(args.out, folder=True)
        explore(args.path, args.out, args.seed)
    else:
        p.error("give a data PATH to explore, or --synthetic OUT.csv")


if __name__ == "__main__":
    try:
        main()
    except DataError as e:
        sys.exit(f"data.py: {e}")
    except KeyboardInterrupt:
        sys.exit("\ndata.py: interrupted")
