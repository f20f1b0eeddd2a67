"""Every FER2013 layout users download besides a plain fer2013.csv (data.py reads that), and every way a file can
be wrong, in one line naming the file, the row and why; a reader of the reference path can skip this file.
Layouts: train.csv and test.csv (no Usage), icml_face_data.csv (" Usage", " pixels"), CSVs with odd spacing, case
or trailing commas, compressed (.gz, .zip, ...); image folders ROOT/{train,validation,test}/<class>/ and
ROOT/<class>/ (Kaggle's image release, Roboflow's, CK+, your own) in any size, colour or bit depth. data.py hands
in the class names and the size.
"""
import lzma
import os
import warnings
import zipfile
import zlib

import numpy as np
import pandas as pd

from cli import DataError

# Kaggle's Usage column and the image releases' folder names -> our split names, and what Kaggle calls each.
USAGE = {"training": "train", "publictest": "val", "privatetest": "test"}
KAGGLE_NAMES = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
FOLDERS = {"train": "train", "training": "train", "validation": "val", "val": "val", "valid": "val",
           "publictest": "val", "test": "test", "testing": "test", "privatetest": "test"}
# Class-folder spellings seen in the image releases (Kaggle msambare, jonathanoheix, FER+ style names).
CLASS_ALIASES = {"anger": "angry", "disgusted": "disgust", "fearful": "fear", "happiness": "happy",
                 "sadness": "sad", "surprised": "surprise", "neutrality": "neutral"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read(path, classes, size):
    """What a file or folder holds: ({split: (images uint8 [N, size, size], labels int64 [N] indexing
    `classes`)}, {split: the data's own name for it}, notes on what was left out, class folders that are not
    among `classes`). Data without split information comes back as the one split "all"."""
    if os.path.isdir(path):
        return read_image_tree(path, classes, size)
    if os.path.isfile(path):
        splits = read_csv(path, len(classes), size)
        return splits, {k: KAGGLE_NAMES[k] for k in splits if k in KAGGLE_NAMES}, [], []
    if os.path.exists(path):
        raise DataError(f"{path}: not a file or folder (a pipe or device cannot be read twice); save it to a file")
    raise DataError(f"{path}: no such file or folder (fer2013.csv comes from https://www.kaggle.com/c/challenges-in-"
                    f"representation-learning-facial-expression-recognition-challenge/data)")


# ------------------------------------------------------------------------------------------------------------
# CSV layouts

COMPRESSION_ERRORS = (zlib.error, zipfile.BadZipFile, lzma.LZMAError, EOFError)  # and OSError (gzip, bz2)


def read_csv(path, n_classes, size):
    try:
        with warnings.catch_warnings():  # a trailing comma: its empty field dropped, not the index (index_col);
            warnings.simplefilter("ignore", pd.errors.ParserWarning)  # blank lines kept: row numbers are lines
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
    images = parse_pixels(df["pixels"], path, lines, size)
    labels = parse_labels(df["emotion"], path, lines, n_classes)
    if "usage" not in df.columns:
        return {"all": (images, labels)}
    usage = df["usage"].str.strip().str.lower()
    if not usage.isin(list(USAGE)).all():
        row = int(np.flatnonzero(~usage.isin(list(USAGE)))[0])
        raise DataError(f"{path}: row {lines[row]}: unknown Usage {df['usage'].iloc[row]!r} "
                        "(expected Training, PublicTest or PrivateTest)")
    rows = {u: (usage == u).to_numpy() for u in usage.unique()}
    return {USAGE[u]: (images[picked], labels[picked]) for u, picked in rows.items()}


def parse_pixels(column, path, lines, size):
    """One C-level parse (np.fromstring), a -1 ending every row so that a short row and a long one cannot pass as
    the right total; a Python parse per row only to name the bad row."""
    n = len(column)
    try:
        with warnings.catch_warnings():
            # older numpy warns (newer raises) on bad text
            warnings.simplefilter("ignore", DeprecationWarning)
            flat = np.fromstring(" -1 ".join(column.tolist()) + " -1", dtype=np.float32, sep=" ")
    except ValueError:
        flat = np.zeros(0, np.float32)
    if flat.size == n * (size * size + 1):
        rows = flat.reshape(n, size * size + 1)
        pixels = rows[:, :-1]
        whole_bytes = (pixels >= 0) & (pixels <= 255) & (pixels == np.round(pixels))
        if np.all(rows[:, -1] == -1) and np.all(whole_bytes):
            return pixels.astype(np.uint8).reshape(n, size, size)
    for line, text in zip(lines, column.tolist()):  # slow path, only to name the bad row
        tokens = text.split()
        if len(tokens) != size * size:
            raise DataError(f"{path}: row {line}: {len(tokens)} pixel values, expected {size * size}")
        try:
            values = np.array(tokens, dtype=np.float64)
        except ValueError:
            bad = next(t for t in tokens if np.isnan(pd.to_numeric(t, errors="coerce")))
            raise DataError(f"{path}: row {line}: pixel value {bad[:20]!r} is not a number") from None
        if not np.all((values >= 0) & (values <= 255) & (values == np.round(values))):
            raise DataError(f"{path}: row {line}: pixel values must be whole numbers in 0-255")
    raise DataError(f"{path}: the pixel column could not be parsed")


def parse_labels(column, path, lines, n_classes):
    labels = pd.to_numeric(column.str.strip(), errors="coerce").to_numpy()
    bad = np.flatnonzero(~np.isin(labels, np.arange(n_classes)))
    if bad.size:
        row = int(bad[0])
        raise DataError(f"{path}: row {lines[row]}: emotion {column.iloc[row]!r} is not a label 0-{n_classes - 1}")
    return labels.astype(np.int64)


# ------------------------------------------------------------------------------------------------------------
# Image folders: ROOT/{train,validation,test}/<class>/*.jpg, or ROOT/<class>/*.jpg

def class_index(name, classes):
    key = name.strip().lower()
    key = CLASS_ALIASES.get(key, key)
    return classes.index(key) if key in classes else None


def shown(names, k=3):
    return ", ".join(names[:k]) + (", ..." if len(names) > k else "")


def visible(folder):
    """A folder's entries, sorted, without hidden ones (.DS_Store, ._x.png from macOS, .ipynb_checkpoints)."""
    try:
        return sorted(e for e in os.listdir(folder) if not e.startswith("."))
    except OSError as e:  # no permission, or gone while being read
        raise DataError(f"{folder}: cannot read this folder ({e.strerror})") from None


def read_image_tree(root, classes, size):
    subdirs = [d for d in visible(root) if os.path.isdir(os.path.join(root, d))]
    split_dirs = [d for d in subdirs if d.lower() in FOLDERS]
    twice = [(a, b) for a in split_dirs for b in split_dirs if a < b and FOLDERS[a.lower()] == FOLDERS[b.lower()]]
    if twice:
        raise DataError(f"{root}: folders {twice[0][0]!r} and {twice[0][1]!r} are both the "
                        f"{FOLDERS[twice[0][0].lower()]} split; keep one")
    notes, unknown = [], []
    if split_dirs:
        beside = [d for d in visible(root) if d not in split_dirs]
        if beside:
            notes.append(f"{root}: {len(beside)} entr{'ies' if len(beside) > 1 else 'y'} beside the split folders "
                         f"left out ({shown(beside, 4)}): with split folders ({', '.join(split_dirs)}), only they are read")
        splits = {FOLDERS[d.lower()]: read_class_folders(os.path.join(root, d), classes, size, notes, unknown)
                  for d in split_dirs}
        return splits, {FOLDERS[d.lower()]: f"{d}/" for d in split_dirs}, notes, unknown
    if subdirs:
        return {"all": read_class_folders(root, classes, size, notes, unknown)}, {}, notes, unknown
    raise DataError(f"{root}: no class folders (expected {root}/train/<class>/*.jpg or {root}/<class>/*.jpg)")


def read_class_folders(folder, classes, size, notes, unknown):
    """Every image of every class folder; what is left out (CK+'s contempt, other files) is noted. A class folder
    with no image is an error: it would silently train or score a class on nothing."""
    images, labels, skipped_classes, loose, folders_of = [], [], [], [], {}
    for name in visible(folder):
        sub = os.path.join(folder, name)
        if not os.path.isdir(sub):
            loose.append(name)
            continue
        label = class_index(name, classes)
        if label is None:
            skipped_classes.append(name)
            unknown.append(sub)
            continue
        entries = visible(sub)
        files_ = [f for f in entries if f.lower().endswith(IMAGE_EXTS) and os.path.isfile(os.path.join(sub, f))]
        skipped = [f for f in entries if f not in files_]
        if skipped:
            notes.append(f"{sub}: {len(skipped)} entr{'ies' if len(skipped) > 1 else 'y'} left out, not image files "
                         f"({shown(skipped)}; images are read from {', '.join(IMAGE_EXTS)}, not from folders inside "
                         f"a class folder)")
        if not files_:
            raise DataError(f"{sub}: no image files in this class folder (images are read from "
                            f"{', '.join(IMAGE_EXTS)} files directly inside it)")
        images += [read_image(os.path.join(sub, f), size) for f in files_]
        labels += [label] * len(files_)
        folders_of.setdefault(label, []).append(name)
    for label, names in folders_of.items():
        if len(names) > 1:  # "happy" and "Happy", or "happy" and "happiness"
            notes.append(f"{folder}: folders {' and '.join(map(repr, names))} are all class "
                         f"{classes[label]}: their images are read as one class")
    if loose:
        notes.append(f"{folder}: {len(loose)} file{'s' * (len(loose) > 1)} directly inside it left out "
                     f"({shown(loose)}): images are read from the class folders inside it")
    if skipped_classes:
        notes.append(f"{folder}: class folder{'s' * (len(skipped_classes) > 1)} {', '.join(map(repr, skipped_classes))} "
                     f"left out: not FER2013 classes ({', '.join(classes)})")
    if not images and skipped_classes:
        name = skipped_classes[0]
        raise DataError(f"{os.path.join(folder, name)}: unknown class folder {name!r} "
                        f"(expected one of {', '.join(classes)}), and no FER2013 class folder beside it")
    if not images:
        raise DataError(f"{folder}: no images found in its class folders")
    return np.stack(images), np.array(labels, dtype=np.int64)


def read_image(path, size):
    """Any size, colour or grey -> size x size uint8 grey: Pillow's luminance conversion, a bilinear resize."""
    from PIL import Image
    grey = read_grey(path)
    return grey if grey.shape == (size, size) else np.asarray(Image.fromarray(grey).resize((size, size), Image.BILINEAR))


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
    except Exception as e:  # noqa: BLE001 (Pillow's decoders raise many kinds for a damaged file)
        first = (str(e).splitlines() or [type(e).__name__])[0][:100]
        raise DataError(f"{path}: unreadable image ({first})") from None


def grey_of(im):
    """A PIL image as uint8 grey [H, W]: 16- and 32-bit grey scaled to 8 bits (Pillow's convert("L") clips
    them to white), a NaN pixel black, colour by Pillow's luminance."""
    if im.mode in DEEP_GREY:
        values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)  # a NaN pixel is black, not the picture
        peak = values.max()
        if im.mode == "F":  # floats: 0-1, 0-255, or any other range, scaled by its own peak
            top = 1.0 if peak <= 1 else 255.0 if peak <= 255 else peak
        else:  # integers: 8-, 16- or signed 32-bit range, whichever the values use
            top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else 2.0 ** 31 - 1
        return np.clip(np.round(values * (255 / top)), 0, 255).astype(np.uint8)
    return np.asarray(im.convert("L"), dtype=np.uint8).copy()
