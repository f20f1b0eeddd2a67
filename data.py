"""Files to tensors: every FER2013 layout, the class list, the choice of split, the Dataset, and batching.

A data set here is a `Splits` dict split -> (images uint8 [N, 48, 48], labels int64 [N]) on the CPU, with
splits "train", "val" and, where the data has one, "test"; it also knows what the data itself calls each
split (Kaggle's Usage values: Training, PublicTest, PrivateTest), so every output line can name it.

    python data.py PATH                 class counts per split, distribution.png and samples.png
    python data.py --synthetic out.csv --n 2000     write synthetic faces as a Kaggle-style CSV
"""
import hashlib
import lzma
import os
import warnings
import zipfile
import zlib

import numpy as np
import pandas as pd
import torch

import cli
import files

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
MEAN, STD = 0.5077, 0.2550  # the report's normalisation (its Figure 6)
SIZE = 48
VAL_FRACTION = 0.1  # carved out of train, stratified, when the data has no validation split

# Kaggle's Usage column and the image releases' folder names (Kaggle's, Roboflow's train/valid/test, and
# folders named after the Usage values) -> our split names.
USAGE = {"training": "train", "publictest": "val", "privatetest": "test"}
FOLDERS = {"train": "train", "training": "train", "validation": "val", "val": "val", "valid": "val",
           "publictest": "val", "test": "test", "testing": "test", "privatetest": "test"}
# Class-folder spellings seen in the image releases (Kaggle msambare, jonathanoheix, FER+ style names).
CLASS_ALIASES = {"anger": "angry", "disgusted": "disgust", "fearful": "fear", "happiness": "happy",
                 "sadness": "sad", "surprised": "surprise", "neutrality": "neutral"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class DataError(cli.UserError):
    """Data the user gave cannot be used; the message names the file (and row) and says why, in one line."""


class Splits(dict):
    """split -> (images, labels), plus what the data calls each split (`names`) and what was left out
    (`notes`)."""

    def __init__(self, items=(), names=None, notes=(), unknown=()):
        super().__init__(items)
        self.names, self.notes, self.unknown = dict(names or {}), list(notes), list(unknown)

    def title(self, split):
        """"val (PublicTest)": our name and, where the data has its own, the data's. A joined split names
        its parts: "val+test (PublicTest + PrivateTest)"."""
        own = " + ".join(self.names.get(part, part) for part in split.split("+"))
        return f"{split} ({own})" if own.lower() != split else split


# What each Kaggle Usage value and each of our splits is called in FER2013's own terms.
KAGGLE_NAMES = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def load(path, seed=0, n_synthetic=3000, whole=False):
    """Reads what `path` holds: "synthetic", a .csv/.csv.gz (Kaggle fer2013.csv, train.csv or
    icml_face_data.csv layout) or an image-folder tree. Returns Splits. `seed` draws the synthetic faces
    and the validation split of data that has none; the scripts keep it at 0, so training and evaluation
    always see the same split. Data without training images (a test.csv of PublicTest and/or PrivateTest
    rows, a folder with only test/) keeps just the splits it has: it can be evaluated, not trained on. Data
    with no split information (train.csv, ROOT/<class>/) is split 90/10 as the report did; with whole=True
    it also keeps every image as the split "all", which evaluation scores by default (a data set made for
    testing, such as CK+ or your own photos, is scored whole, not on a 10% sample)."""
    names, notes, unknown = {}, [], []
    if path == "synthetic":
        import synthetic  # it draws its faces in data.py's sizes and classes, so it imports data.py
        images, labels = synthetic.synthetic_faces(n_synthetic, seed)
        usage = synthetic.synthetic_usage(n_synthetic)
        splits = {USAGE[u.lower()]: (images[usage == u], labels[usage == u]) for u in np.unique(usage)}
    elif os.path.isdir(path):
        splits, names, notes, unknown = read_image_tree(path)
    elif os.path.isfile(path):
        splits = read_csv(path)
        names = {k: KAGGLE_NAMES[k] for k in splits if k in KAGGLE_NAMES}
    elif os.path.exists(path):
        raise DataError(f"{path}: not a file or folder (a pipe or device cannot be read twice); "
                        f"save it to a file")
    else:
        raise DataError(f"{path}: no such file or folder")
    if "all" in splits:  # no split information: the report's stratified train_test_split
        images, labels = splits.pop("all")
        splits["train"] = (images, labels)
        if whole:
            splits["all"] = (images, labels)
            names["all"] = "every image: the data has no splits"
        names.update(train="90% of the data", val="10% of the data, held out by train.py")
    if "train" in splits and "val" not in splits:
        try:
            splits["train"], splits["val"] = stratified_split(*splits["train"], VAL_FRACTION, seed)
        except DataError as e:
            raise DataError(f"{path}: {e}") from None
        names.setdefault("val", "10% of train, held out by train.py")
    tensors = {k: (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, dtype=np.int64)))
               for k, (x, y) in splits.items()}
    return Splits(tensors, names, notes, unknown)


# What --split may name. "val+test" is the report's own test set: Kaggle's PublicTest and PrivateTest
# together, the 7,178 faces of its icml_face_data.csv extract.
def load_for_training(path):
    """load(path), refused in one line where it cannot be trained on: no training split, or a class folder
    that is not one of the seven."""
    splits = load(path)
    if "train" not in splits:
        raise DataError(f"{path}: no training images (it holds {', '.join(splits)} only); it can be evaluated "
                        f"with evaluate.py, not trained on")
    if splits.unknown:
        raise DataError(f"{splits.unknown[0]}: unknown class folder (expected one of {', '.join(CLASSES)}); "
                        f"training needs every class folder to be one: rename or move it")
    return splits


SPLIT_CHOICES = ("test", "val", "train", "all", "val+test")


def choose_split(splits, split, path):
    """The split a script scores: `split` if given, else test, else every image of data without splits, else
    val. Returns (split, images, labels). "all" on data with splits joins them, "val+test" joins those two."""
    split = split or next(s for s in ("test", "all", "val") if s in splits or s == "val")
    if split in splits:
        return (split, *splits[split])
    parts = [s for s in splits if s != "all"] if split == "all" else split.split("+")
    missing = [s for s in parts if s not in splits]
    if missing or not parts:
        raise cli.FlagError(f"--split {split}: {path} has no {' or '.join(missing) or split} split "
                            f"(it has {', '.join(splits)})")
    return split, torch.cat([splits[s][0] for s in parts]), torch.cat([splits[s][1] for s in parts])


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


# ------------------------------------------------------------------------------------------------------------
# CSV layouts

COMPRESSION_ERRORS = (zlib.error, zipfile.BadZipFile, lzma.LZMAError, EOFError)  # and OSError (gzip, bz2)


def read_csv(path):
    try:
        with warnings.catch_warnings():
            # a trailing comma: its empty field dropped
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            # index_col=False: a trailing comma must not turn the emotion column into the index;
            # skip_blank_lines=False: blank lines stay rows (dropped below), so row numbers are
            # the file's lines.
            df = pd.read_csv(path, skipinitialspace=True, dtype=str, keep_default_na=False, index_col=False,
                             skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except COMPRESSION_ERRORS + (UnicodeDecodeError, pd.errors.ParserError, OSError, ValueError) as e:
        compressed = str(path).lower().endswith((".gz", ".zip", ".xz", ".bz2", ".zst", ".tar"))
        what = "damaged, or not the compressed file its name says" if compressed and isinstance(
            e, COMPRESSION_ERRORS + (OSError,)) else "not a readable CSV"
        raise DataError(f"{path}: {what} ({(str(e).splitlines() or [type(e).__name__])[0][:120]})") from None
    # The header as written: pandas renames a repeated name ("emotion", "emotion.1"), which would hide it.
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, skipinitialspace=True,
                         keep_default_na=False).iloc[0].tolist()
    names = [str(c).strip().lower() for c in header]  # icml_face_data.csv has " Usage", " pixels"
    df.columns = [str(c).strip().lower() for c in df.columns]
    if len(set(names)) < len(names):  # "emotion" and "Emotion", or "emotion" twice: which one is meant?
        twice = sorted({c for c in names if names.count(c) > 1})
        s, verb = ("s", "appear") if len(twice) > 1 else ("", "appears")
        raise DataError(f"{path}: the column{s} {', '.join(twice)} {verb} "
                        f"twice (names are read without case); keep one")
    if "pixels" not in df.columns or "emotion" not in df.columns:
        shown = [c if len(c) <= 24 else c[:21] + "..." for c in df.columns[:4]]
        hint = "; the first line holds data, not a header: add the line emotion,pixels,Usage" \
            if any(len(c) > 24 or c.replace(".", "").isdigit() for c in df.columns) else ""
        raise DataError(f"{path}: expected columns 'emotion' and 'pixels' (and optionally 'Usage'), "
                        f"found {shown}{' ...' if len(df.columns) > 4 else ''}{hint}")
    # The file's line number of each row (line 1 is the header); a quoted field may hold line breaks.
    breaks = sum(df[c].str.count("\n") for c in df.columns).to_numpy()
    lines = 2 + np.arange(len(df)) + np.concatenate([[0], np.cumsum(breaks)[:-1]]).astype(np.int64)
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
    rows = {u: (usage == u).to_numpy() for u in usage.unique()}
    return {USAGE[u]: (images[picked], labels[picked]) for u, picked in rows.items()}


def parse_pixels(column, path, lines):
    """All rows in one C-level parse (np.fromstring) instead of a Python split per row: ~2 s for 32k rows.
    A -1 (never a pixel) ends every row, so a row short by a value and a later one long by one cannot pass
    as the right total: each row's end must fall exactly where 2,304 values put it."""
    n = len(column)
    try:
        with warnings.catch_warnings():
            # older numpy warns (newer raises) on bad text
            warnings.simplefilter("ignore", DeprecationWarning)
            flat = np.fromstring(" -1 ".join(column.tolist()) + " -1", dtype=np.float32, sep=" ")
    except ValueError:
        flat = np.zeros(0, np.float32)
    if flat.size == n * (SIZE * SIZE + 1):
        rows = flat.reshape(n, SIZE * SIZE + 1)
        pixels = rows[:, :-1]
        whole_bytes = (pixels >= 0) & (pixels <= 255) & (pixels == np.round(pixels))
        if np.all(rows[:, -1] == -1) and np.all(whole_bytes):
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


# ------------------------------------------------------------------------------------------------------------
# Image folders: ROOT/{train,validation,test}/<class>/*.jpg, or ROOT/<class>/*.jpg

def class_index(name):
    key = name.strip().lower()
    key = CLASS_ALIASES.get(key, key)
    return CLASSES.index(key) if key in CLASSES else None


def visible(folder):
    """The entries of a folder, sorted, without hidden ones (.DS_Store, ._x.png from macOS,
    .ipynb_checkpoints)."""
    try:
        return sorted(e for e in os.listdir(folder) if not e.startswith("."))
    except OSError as e:  # no permission, or gone while being read
        raise DataError(f"{folder}: cannot read this folder ({e.strerror})") from None


def read_image_tree(root):
    """Returns ({split: (images, labels)}, {split: the folder's own name}, notes on what was left out, the
    class folders that are not FER2013 classes)."""
    subdirs = [d for d in visible(root) if os.path.isdir(os.path.join(root, d))]
    split_dirs = [d for d in subdirs if d.lower() in FOLDERS]
    for a in split_dirs:
        for b in split_dirs:
            if a < b and FOLDERS[a.lower()] == FOLDERS[b.lower()]:
                raise DataError(f"{root}: folders {a!r} and {b!r} are both the {FOLDERS[a.lower()]} split; "
                                f"keep one")
    notes, unknown = [], []
    if split_dirs:
        beside = [d for d in visible(root) if d not in split_dirs]
        if beside:
            shown = ", ".join(beside[:4]) + (", ..." if len(beside) > 4 else "")
            notes.append(f"{root}: {len(beside)} entr{'ies' if len(beside) > 1 else 'y'} beside the split "
                         f"folders left out ({shown}): with split folders ({', '.join(split_dirs)}), "
                         f"only they are read")
        splits = {FOLDERS[d.lower()]: read_class_folders(os.path.join(root, d), notes, unknown)
                  for d in split_dirs}
        return splits, {FOLDERS[d.lower()]: f"{d}/" for d in split_dirs}, notes, unknown
    if subdirs:
        return {"all": read_class_folders(root, notes, unknown)}, {}, notes, unknown
    raise DataError(f"{root}: no class folders (expected {root}/train/<class>/*.jpg or {root}/<class>/*.jpg)")


def read_class_folders(folder, notes, unknown):
    """Every image of every class folder. A folder that is not a FER2013 class (CK+'s contempt) is left out
    and noted; so are files of a kind the reader does not take and folders inside a class folder. A class
    folder that yields no image at all is an error: it would silently train or score a class on nothing."""
    images, labels, skipped_classes, loose, folders_of = [], [], [], [], {}
    for name in visible(folder):
        sub = os.path.join(folder, name)
        if not os.path.isdir(sub):
            loose.append(name)
            continue
        label = class_index(name)
        if label is None:
            skipped_classes.append(name)
            unknown.append(sub)
            continue
        entries = visible(sub)
        files_ = [f for f in entries
                  if f.lower().endswith(IMAGE_EXTS) and os.path.isfile(os.path.join(sub, f))]
        skipped = [f for f in entries if f not in files_]
        if skipped:
            entries_word = "entry" if len(skipped) == 1 else "entries"
            shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
            notes.append(f"{sub}: {len(skipped)} {entries_word} left out, not image files ({shown}; images "
                         f"are read from {', '.join(IMAGE_EXTS)}, not from folders inside a class folder)")
        if not files_:
            raise DataError(f"{sub}: no image files in this class folder (images are read from "
                            f"{', '.join(IMAGE_EXTS)} files directly inside it)")
        images += [read_image(os.path.join(sub, f)) for f in files_]
        labels += [label] * len(files_)
        folders_of.setdefault(label, []).append(name)
    for label, names in folders_of.items():
        if len(names) > 1:  # "happy" and "Happy", or "happy" and "happiness"
            notes.append(f"{folder}: folders {' and '.join(map(repr, names))} are all class "
                         f"{CLASSES[label]}: their images are read as one class")
    if loose:
        shown = ", ".join(loose[:3]) + (", ..." if len(loose) > 3 else "")
        notes.append(f"{folder}: {len(loose)} file{'s' * (len(loose) > 1)} directly inside it left out "
                     f"({shown}): images are read from the class folders inside it")
    if skipped_classes:
        notes.append(f"{folder}: class folder{'s' * (len(skipped_classes) > 1)} "
                     f"{', '.join(map(repr, skipped_classes))} left out: "
                     f"not FER2013 classes ({', '.join(CLASSES)})")
    if not images and skipped_classes:
        name = skipped_classes[0]
        raise DataError(f"{os.path.join(folder, name)}: unknown class folder {name!r} "
                        f"(expected one of {', '.join(CLASSES)}), and no FER2013 class folder beside it")
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


DEEP_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # Pillow's 16- and 32-bit grey modes


def read_grey(path):
    """An image file as uint8 grey [H, W] at its own size, turned upright as its EXIF orientation tag says
    (phone photos are often stored sideways), then as grey_of makes it."""
    from PIL import Image, ImageOps
    if os.path.exists(path) and not os.path.isfile(path):  # os.stat only: opening a FIFO with no writer hangs
        raise DataError(f"{path}: not a picture file (a folder, pipe or device: a picture is read twice, to "
                        f"find faces and to draw them); save it to a file first")
    try:
        with warnings.catch_warnings():
            # a photo of 89-179 megapixels reads (phones take them); over that it is refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            return grey_of(ImageOps.exif_transpose(im))
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: image too large ({str(e).splitlines()[0][:100]})") from None
    # Pillow's decoders raise many kinds (OSError, ValueError, struct.error, SyntaxError, ZeroDivisionError,
    # ...) for a damaged file; a file we cannot decode is the user's to fix.
    except Exception as e:  # noqa: BLE001
        first = (str(e).splitlines() or [type(e).__name__])[0][:100]
        raise DataError(f"{path}: unreadable image ({first})") from None


def grey_of(im):
    """A PIL image as uint8 grey [H, W]: 16- and 32-bit grey scaled to 8 bits (Pillow's convert("L") clips
    them to white), a NaN pixel black, colour by Pillow's luminance."""
    if im.mode in DEEP_GREY:
        values = np.asarray(im, dtype=np.float64)
        finite = np.isfinite(values)  # a NaN pixel (float TIFFs) is black, not the whole picture
        values = np.where(finite, values, 0.0)
        peak = values.max()
        if im.mode == "F":  # floats: 0-1, 0-255, or any other range, scaled by its own peak
            top = 1.0 if peak <= 1 else 255.0 if peak <= 255 else peak
        else:  # integers: 8-, 16- or signed 32-bit range, whichever the values use
            top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else 2.0 ** 31 - 1
        return np.clip(np.round(values * (255 / top)), 0, 255).astype(np.uint8)
    return np.asarray(im.convert("L"), dtype=np.uint8).copy()


def write_csv(path, images, labels, usage=None):
    """Kaggle fer2013.csv layout (emotion,pixels[,Usage]), written atomically."""
    pixels = [" ".join(map(str, row)) for row in images.reshape(len(images), -1).tolist()]
    df = pd.DataFrame({"emotion": labels, "pixels": pixels})
    if usage is not None:
        df["Usage"] = usage
    # .gz, .bz2, .xz, .zip
    files.atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, compression="infer"))


# ------------------------------------------------------------------------------------------------------------
# Tensors for the network. The report's Dataset, kept for per-sample use (and as the reference in the tests);
# training does not use it: whole batches are gathered and augmented on the device (below).

class FERDataset(torch.utils.data.Dataset):
    """The CSV's faces as a torch Dataset, (normalised float [1, 48, 48], label) per item: the usual way to
    feed a DataLoader, for code that wants one. train.py does not use it: it keeps the whole set on the device
    and draws the WeightedRandomSampler's batches as index tensors, so no per-sample Python and no host-to-device
    copy runs between two steps. The DataLoader equivalent:

        splits = data.load("data/fer2013.csv")
        train_set = FERDataset(*splits["train"], transform=some_uint8_transform)
        sampler = WeightedRandomSampler(class_weights(splits["train"][1]), len(train_set))
        loader = DataLoader(train_set, batch_size=256, sampler=sampler, num_workers=2)
    """

    def __init__(self, images, labels, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i][None]  # uint8 [1, 48, 48]
        if self.transform is not None:
            x = self.transform(x)
        return normalize(x), self.labels[i]


def fingerprint(images, labels):
    """Identifies a set of faces by its content, however the file was named or moved: train.py stores its
    training set's in the weights and checkpoint, so --resume refuses other data and evaluate.py knows what
    the weights have seen."""
    h = hashlib.sha1(labels.numpy().tobytes())
    h.update(images.numpy().tobytes())
    return h.hexdigest()[:16]


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


def class_counts(labels):
    """Faces per class (at least 1, so a missing class never divides by zero)."""
    return torch.bincount(labels, minlength=len(CLASSES)).clamp(min=1)


def class_weights(labels):
    """1 / class count per sample, as the report's WeightedRandomSampler used."""
    return 1.0 / class_counts(labels)[labels].double()


# ------------------------------------------------------------------------------------------------------------
# python data.py PATH: the report's first section

def explore(path, out_dir, seed=0):
    """The class counts, and distribution.png and samples.png in out_dir, like the report's Figures 2
    and 3."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    splits, names, counts = explore_counts(path, seed)
    os.makedirs(out_dir, exist_ok=True)

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(names)
    for j, k in enumerate(names):
        bars = ax.bar(np.arange(len(CLASSES)) + j * width, counts[k], width, label=k)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(np.arange(len(CLASSES)) + width * (len(names) - 1) / 2,
                  [f"{i} {c}" for i, c in enumerate(CLASSES)])
    ax.set_ylabel("images")
    ax.set_title(f"Emotion distribution: {os.path.basename(path.rstrip('/'))}")
    ax.legend()
    fig.tight_layout()
    files.atomic_write(os.path.join(out_dir, "distribution.png"), lambda t: fig.savefig(t, dpi=120))
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
    files.atomic_write(os.path.join(out_dir, "samples.png"), lambda t: fig.savefig(t, dpi=120))
    plt.close(fig)
    print(f"wrote {os.path.join(out_dir, 'distribution.png')} and {os.path.join(out_dir, 'samples.png')}")


def explore_counts(path, seed=0):
    """Class counts per split, printed; returns the Splits."""
    splits = load(path, seed)
    for note in splits.notes:
        print(f"note: {note}")
    names = [k for k in ("train", "val", "test") if k in splits]
    counts = {k: np.bincount(splits[k][1].numpy(), minlength=len(CLASSES)) for k in names}
    print(f"{'class':<10}" + "".join(f"{k:>8}" for k in names))
    for i, c in enumerate(CLASSES):
        print(f"{i} {c:<8}" + "".join(f"{counts[k][i]:>8}" for k in names))
    print(f"{'total':<10}" + "".join(f"{counts[k].sum():>8}" for k in names))
    own = [f"{k} = {splits.names[k]}" for k in names if splits.title(k) != k]
    if own:
        print(f"the data's own names: {', '.join(own)}")
    return splits, names, counts


def make_parser():
    p = cli.parser("data.py", __doc__)
    p.add_argument("path", nargs="?", help="fer2013.csv, train.csv, icml_face_data.csv (.gz too), an image "
                                           "folder, or 'synthetic'")
    p.add_argument("--synthetic", metavar="OUT.csv", help="write synthetic faces to this CSV instead (.csv, "
                   "or .csv.gz/.bz2/.xz/.zip, compressed as the name says)")
    p.add_argument("--n", type=int, default=2000, help="number of synthetic faces (7 to 1,000,000)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0,
                   help="which synthetic faces, and which faces samples.png shows")
    p.add_argument("--out", help="folder for distribution.png and samples.png (default: no figures)")
    return p


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    if args.synthetic:
        if not 7 <= args.n <= 1_000_000:  # a million faces is a 4.6 GB CSV; more only exhausts the memory
            p.error(f"--n must be 7 to 1,000,000 (one face per class at least), got {args.n}")
        if os.path.exists(args.synthetic):  # it may be someone's real data
            raise files.OutputError(f"{args.synthetic}: already exists; choose another name or delete it")
        files.check_writable(args.synthetic)
        import synthetic
        images, labels = synthetic.synthetic_faces(args.n, args.seed)
        write_csv(args.synthetic, images, labels, synthetic.synthetic_usage(args.n))
        print(f"wrote {args.n} synthetic faces to {args.synthetic}")
    elif args.path:
        if args.out:
            files.check_writable(args.out, folder=True)
            explore(args.path, args.out, args.seed)
        else:
            explore_counts(args.path, args.seed)
    else:
        p.error("give a data PATH to explore, or --synthetic OUT.csv")


if __name__ == "__main__":
    cli.run(main, "data.py")
