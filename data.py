"""FER2013 to tensors: the seven classes, the splits, the report's normalisation, the CSV Dataset, batching.

A data set here is a `Splits` dict split -> (images uint8 [N, 48, 48], labels int64 [N]) on the CPU, with
splits "train", "val" and, where the data has one, "test"; it also knows what the data itself calls each
split (Kaggle's Usage values: Training, PublicTest, PrivateTest), so every output line can name it. The files
themselves, in every layout, are read by readers.py.

    splits = data.load("data/fer2013.csv")        # Training -> train, PublicTest -> val, PrivateTest -> test
    images, labels = splits["train"]              # uint8 [28709, 48, 48], int64 [28709]
"""
import hashlib

import numpy as np
import torch

import cli
import readers
import synthetic
from readers import CLASSES, SIZE, DataError  # noqa: F401 (what FER2013's files define: the emotion column's order)

MEAN, STD = 0.5077, 0.2550  # the report's normalisation (its Figure 6)
VAL_FRACTION = 0.1  # carved out of train, stratified, when the data has no validation split


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
        images, labels = synthetic.synthetic_faces(n_synthetic, seed)
        usage = synthetic.synthetic_usage(n_synthetic)
        splits = {readers.USAGE[u.lower()]: (images[usage == u], labels[usage == u]) for u in np.unique(usage)}
    else:
        splits, names, notes, unknown = readers.read(path)
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


