"""FER2013 to tensors: the seven classes, Kaggle's fer2013.csv, the splits, the report's normalisation, the
CSV Dataset and batching. fer2013.csv has a row per face: `emotion` (0-6, CLASSES' order), `pixels` (48 x 48 =
2,304 grey values 0-255) and `Usage` (Training, PublicTest or PrivateTest: our train, val and test splits).

    splits = data.load("data/fer2013.csv")        # Training -> train, PublicTest -> val, PrivateTest -> test
    images, labels = splits["train"]              # uint8 [28709, 48, 48], int64 [28709]

Every other layout (image folders, other CSVs, compressed files) and every way a file can be wrong: readers.py.
"""
import hashlib
import os
import warnings

import numpy as np
import pandas as pd
import torch

import cli
import readers

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # the emotion column's 0-6
SIZE = 48
MEAN, STD = 0.5077, 0.2550  # the report's normalisation (its Figure 6)
USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
VAL_FRACTION = 0.1  # carved out of train, stratified, when the data has no validation split
SPLIT_CHOICES = ("test", "val", "train", "all", "val+test")  # val+test: the report's 7,178 test faces


class Splits(dict):
    """split -> (images uint8 [N, 48, 48], labels int64 [N]), with what the data calls each split (`names`),
    what was left out (`notes`) and class folders that are not FER2013's (`unknown`)."""

    def __init__(self, items=(), names=None, notes=(), unknown=()):
        super().__init__(items)
        self.names, self.notes, self.unknown = dict(names or {}), list(notes), list(unknown)

    def title(self, split):
        """"val (PublicTest)"; a joined split names its parts: "val+test (PublicTest + PrivateTest)"."""
        own = " + ".join(self.names.get(part, part) for part in split.split("+"))
        return f"{split} ({own})" if own.lower() != split else split


def read_csv(path):
    """Kaggle's fer2013.csv as {split: (images, labels)}, or None where the file is anything else."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        with warnings.catch_warnings():  # numpy warns on text that is not numbers
            warnings.simplefilter("ignore")
            # -1 ends every row, so a row short by a value and a later one long by one cannot pass as 2 x 2,304
            flat = np.fromstring(" -1 ".join(df["pixels"]) + " -1", dtype=np.int32, sep=" ")
        rows = flat.reshape(len(df), SIZE * SIZE + 1)
        labels = df["emotion"].astype(np.int64).to_numpy()
        usage = df["Usage"].map(USAGE)
    except Exception:  # noqa: BLE001 (readers.py reads it again and says what is wrong)
        return None
    pixels = rows[:, :-1]
    if (rows[:, -1] != -1).any() or pixels.min() < 0 or pixels.max() > 255 or usage.isna().any() \
            or not np.isin(labels, range(len(CLASSES))).all() or list(df.columns) != ["emotion", "pixels", "Usage"]:
        return None
    images = pixels.astype(np.uint8).reshape(-1, SIZE, SIZE)
    return {split: (images[(usage == split).to_numpy()], labels[(usage == split).to_numpy()])
            for split in usage.unique()}


def load(path, whole=False):
    """The splits of `path`, read here or by readers.py. Data without splits (train.csv, ROOT/<class>/) is split
    90/10, stratified, as the report did, the same way every time (evaluation sees what training held out);
    whole=True also keeps every image as the split "all", which evaluation scores by default (CK+, say)."""
    splits = read_csv(path) if os.path.isfile(path) else None
    names, notes, unknown = {s: k for k, s in USAGE.items()}, [], []
    if splits is None:
        splits, names, notes, unknown = readers.read(path, CLASSES, SIZE)
    if "all" in splits:  # no splits: every image is "all" where asked, and train's 90% and val's 10% split
        splits["train"] = splits["all"] if whole else splits.pop("all")
        names.update(all="every image: the data has no splits", train="90% of the data",
                     val="10% of the data, held out by train.py")
    if "train" in splits and "val" not in splits:
        splits["train"], splits["val"] = stratified_split(*splits["train"], path)
        names.setdefault("val", "10% of train, held out by train.py")
    tensors = {k: (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, dtype=np.int64)))
               for k, (x, y) in splits.items()}
    return Splits(tensors, {k: v for k, v in names.items() if k in tensors}, notes, unknown)


def stratified_split(images, labels, path):
    from sklearn.model_selection import train_test_split
    if len(labels) < 2:
        raise cli.DataError(f"{path}: {len(labels)} training image(s): too few to set a validation split aside")
    n_val = max(1, round(VAL_FRACTION * len(labels)))
    present = np.bincount(labels)[np.bincount(labels) > 0]  # sklearn stratifies only with two of every class and
    feasible = present.min() >= 2 and len(present) <= min(n_val, len(labels) - n_val)  # room for each on both sides
    a, b = train_test_split(np.arange(len(labels)), test_size=n_val, random_state=0,
                            stratify=labels if feasible else None)
    return (images[a], labels[a]), (images[b], labels[b])


def choose_split(splits, split, path):
    """(split, images, labels): `split` if given, else test, else every image of data without splits, else
    val. "all" on data with splits joins them; "val+test" joins those two."""
    split = split or next(s for s in ("test", "all", "val") if s in splits or s == "val")
    if split in splits:
        return (split, *splits[split])
    parts = [s for s in splits if s != "all"] if split == "all" else split.split("+")
    missing = [s for s in parts if s not in splits]
    if missing or not parts:
        raise cli.FlagError(f"--split {split}: {path} has no {' or '.join(missing) or split} split "
                            f"(it has {', '.join(splits)})")
    return split, torch.cat([splits[s][0] for s in parts]), torch.cat([splits[s][1] for s in parts])


# ------------------------------------------------------------------------------------------------------------
# Tensors for the network

class FERDataset(torch.utils.data.Dataset):
    """(normalised float [1, 48, 48], label) per face, for a DataLoader with a WeightedRandomSampler over
    class_weights. train.py gathers, augments and normalises whole batches on the device instead; one of its
    steps is this Dataset's DataLoader step (tests/test_train.py)."""

    def __init__(self, images, labels, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i][None]  # uint8 [1, 48, 48]
        if self.transform is not None:
            x = self.transform(x)
        return normalize(x), self.labels[i]


def class_weights(labels):
    """1 / class count per face, as the report's WeightedRandomSampler used (a missing class counts 1)."""
    return 1.0 / torch.bincount(labels, minlength=len(CLASSES)).clamp(min=1)[labels].double()


def normalize(images):
    """uint8 (0-255) or float (0-1) pixels -> normalised with the report's mean and std; shape kept."""
    if images.dtype == torch.uint8:
        images = images.float() / 255
    return (images - MEAN) / STD


def batches(images, batch_size, device):
    """Normalised float batches [B, 1, 48, 48] on `device`, in order (evaluation, prediction)."""
    for i in range(0, len(images), batch_size):
        yield normalize(images[i:i + batch_size, None].to(device, non_blocking=True)).contiguous(
            memory_format=torch.channels_last)


def fingerprint(images, labels):
    """A set of faces by its content, however the file is named: weights keep their training set's."""
    h = hashlib.sha1(labels.numpy().tobytes())
    h.update(images.numpy().tobytes())
    return h.hexdigest()[:16]
