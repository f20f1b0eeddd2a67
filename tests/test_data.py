"""data.py: Kaggle's fer2013.csv to splits, the report's normalisation, the Dataset, the sampler's weights."""

from conftest import PIXELS
import pytest
import torch

import cli
import data

USAGE = ["Training"] * 50 + ["PublicTest"] * 10 + ["PrivateTest"] * 10


def pixel_strings(images):
    return [" ".join(map(str, im.ravel().tolist())) for im in images]


def kaggle_rows(images, labels, usage):
    return "".join(f"{y},{p},{u}\n" for y, p, u in zip(labels, pixel_strings(images), usage))


@pytest.fixture
def small(faces):
    images, labels = faces
    return images[:70], labels[:70]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def test_a_short_row_and_a_long_row_cannot_cancel_out(tmp_path):
    short, long = " ".join(["7"] * 2303), " ".join(["7"] * 2305)
    path = tmp_path / "shifted.csv"
    path.write_text(f"emotion,pixels\n3,{PIXELS}\n3,{short}\n3,{PIXELS}\n3,{long}\n")
    with pytest.raises(cli.DataError, match="shifted.csv: row 3: 2303 pixel values"):
        data.load(str(path))


def test_kaggle_fer2013_csv_maps_usage_to_splits(tmp_path, small):
    images, labels = small
    path = write(tmp_path / "fer2013.csv", "emotion,pixels,Usage\n" + kaggle_rows(images, labels, USAGE))
    splits = data.load(path)
    assert set(splits) == {"train", "val", "test"}
    assert [len(splits[k][1]) for k in ("train", "val", "test")] == [50, 10, 10]
    assert torch.equal(splits["train"][0], torch.from_numpy(images[:50]))
    assert torch.equal(splits["test"][1], torch.from_numpy(labels[60:]))
    assert splits["train"][0].dtype == torch.uint8 and splits["train"][1].dtype == torch.int64


def test_the_reports_test_set_is_publictest_and_privatetest_together(tmp_path, small):
    images, labels = small
    path = write(tmp_path / "fer2013.csv", "emotion,pixels,Usage\n" + kaggle_rows(images, labels, USAGE))
    splits = data.load(path)
    split, x, y = data.choose_split(splits, "val+test", path)
    assert torch.equal(x, torch.from_numpy(images[50:])) and torch.equal(y, torch.from_numpy(labels[50:]))
    assert splits.title(split) == "val+test (PublicTest + PrivateTest)"
    del splits["test"]  # the development copy: PrivateTest held out
    with pytest.raises(data.cli.FlagError, match="has no test split"):
        data.choose_split(splits, "val+test", path)


def test_train_csv_without_usage_gets_the_same_stratified_split_every_time(tmp_path, faces):
    """The report's 90/10 train_test_split; always the same, so evaluate.py scores what train.py held out."""
    images, labels = faces
    path = write(tmp_path / "train.csv", "emotion,pixels\n" + "".join(
        f"{y},{p}\n" for y, p in zip(labels, pixel_strings(images))))
    a, b = data.load(path), data.load(path)
    assert set(a) == {"train", "val"}
    assert len(a["val"][1]) == 35 and len(a["train"][1]) == 315
    assert torch.equal(a["val"][0], b["val"][0])
    assert torch.bincount(a["val"][1], minlength=7).tolist() == [5] * 7  # stratified: 10% of 50 per class


def test_the_report_normalisation():
    x = torch.tensor([0, 255], dtype=torch.uint8).expand(2, 1, 48, 2)
    z = data.normalize(x)
    assert z.shape == (2, 1, 48, 2) and z.dtype == torch.float32
    assert torch.allclose(z[1, 0, 7], torch.tensor([-0.5077 / 0.2550, (1 - 0.5077) / 0.2550]))
    assert torch.allclose(data.normalize(x.float() / 255), z)
    first = next(data.batches(x[:, 0], 1, "cpu"))  # batches add the channel dimension
    assert first.shape == (1, 1, 48, 2) and torch.allclose(first, z[:1])


def test_dataset_yields_normalised_images_and_labels(faces):
    images, labels = faces
    ds = data.FERDataset(torch.from_numpy(images), torch.from_numpy(labels))
    x, y = ds[5]
    assert len(ds) == 350 and x.shape == (1, 48, 48) and x.dtype == torch.float32
    assert int(y) == labels[5]
    assert torch.allclose(x, (torch.from_numpy(images[5]).float()[None] / 255 - data.MEAN) / data.STD)


def test_real_fer2013_dev_file_loads(fer2013):
    splits = fer2013
    assert len(splits["train"][1]) == 28709 and len(splits["val"][1]) == 3589
    assert torch.bincount(splits["train"][1]).tolist() == [3995, 436, 4097, 7215, 4830, 3171, 4965]  # the report's
