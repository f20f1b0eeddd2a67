"""data.py: every FER2013 layout reads to the same tensors; splits; synthetic faces; the Dataset."""
import gzip

import numpy as np
import pytest
import torch
from PIL import Image

import data
import synthetic
from conftest import run_script


def pixel_strings(images):
    return [" ".join(map(str, im.ravel().tolist())) for im in images]


@pytest.fixture
def small(faces):
    images, labels = faces
    return images[:70], labels[:70]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def kaggle_rows(images, labels, usage):
    return "".join(f"{y},{p},{u}\n" for y, p, u in zip(labels, pixel_strings(images), usage))


USAGE = ["Training"] * 50 + ["PublicTest"] * 10 + ["PrivateTest"] * 10


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


def test_icml_face_data_header_with_spaces_and_gzip(tmp_path, small):
    images, labels = small
    rows = "".join(f"{y}, {u}, {p}\n" for y, p, u in zip(labels, pixel_strings(images), USAGE))
    path = tmp_path / "icml_face_data.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("emotion, Usage, pixels\n" + rows)
    splits = data.load(str(path))
    assert [len(splits[k][1]) for k in ("train", "val", "test")] == [50, 10, 10]
    assert torch.equal(splits["val"][0], torch.from_numpy(images[50:60]))


def test_train_csv_without_usage_gets_a_stratified_seeded_split(tmp_path, faces):
    images, labels = faces
    path = write(tmp_path / "train.csv", "emotion,pixels\n" + "".join(
        f"{y},{p}\n" for y, p in zip(labels, pixel_strings(images))))
    a, b = data.load(path, seed=3), data.load(path, seed=3)
    assert set(a) == {"train", "val"}
    assert len(a["val"][1]) == 35 and len(a["train"][1]) == 315
    assert torch.equal(a["val"][0], b["val"][0])  # seeded
    assert torch.bincount(a["val"][1], minlength=7).tolist() == [5] * 7  # stratified: 10% of 50 per class
    c = data.load(path, seed=4)
    assert not torch.equal(a["val"][1], c["val"][1]) or not torch.equal(a["val"][0], c["val"][0])


def save_image(path, array, mode):
    Image.fromarray(array).convert(mode).save(path)


def test_image_folder_tree_any_case_colour_and_size(tmp_path, small):
    images, labels = small
    names = ["Angry", "DISGUST", "fear", "Happy", "sad", "Surprise", "neutral"]
    for split, sl in (("train", slice(0, 50)), ("Validation", slice(50, 60)), ("test", slice(60, 70))):
        for k, (im, y) in enumerate(zip(images[sl], labels[sl])):
            folder = tmp_path / split / names[y]
            folder.mkdir(parents=True, exist_ok=True)
            save_image(folder / f"{k}.png", im, "L")
    # a colour JPEG of another size lands in the right class, as 48x48 grey
    big = np.stack([np.full((96, 120), 200, np.uint8)] * 3, -1)
    Image.fromarray(big).save(tmp_path / "train" / "Happy" / "colour.jpg")
    splits = data.load(str(tmp_path))
    assert [len(splits[k][1]) for k in ("train", "val", "test")] == [51, 10, 10]
    x, y = splits["train"]
    assert x.shape[1:] == (48, 48) and x.dtype == torch.uint8
    assert sorted(y.tolist()) == sorted(labels[:50].tolist() + [3])
    grey = [i for i in range(len(y)) if x[i].float().std() == 0]
    assert len(grey) == 1 and y[grey[0]] == 3 and abs(int(x[grey[0], 0, 0]) - 200) <= 1
    # PNG is lossless: the 48x48 grey faces come back exactly
    val_sorted = sorted(map(bytes, splits["val"][0].numpy()))
    assert val_sorted == sorted(map(bytes, images[50:60]))


def test_image_folder_without_split_folders_and_kaggle_train_test_only(tmp_path, faces):
    images, labels = faces
    for k, (im, y) in enumerate(zip(images, labels)):
        folder = tmp_path / "flat" / data.CLASSES[y]
        folder.mkdir(parents=True, exist_ok=True)
        save_image(folder / f"{k}.png", im, "L")
    splits = data.load(str(tmp_path / "flat"))
    assert set(splits) == {"train", "val"} and len(splits["val"][1]) == 35


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


def test_synthetic_faces_are_deterministic_balanced_and_varied():
    draw = synthetic.synthetic_faces.__wrapped__  # the real function, not conftest's memo of it
    a_x, a_y = draw(140, seed=7)
    b_x, b_y = draw(140, seed=7)
    c_x, _ = draw(140, seed=8)
    assert np.array_equal(a_x, b_x) and np.array_equal(a_y, b_y)
    assert not np.array_equal(a_x, c_x)
    assert np.bincount(a_y).tolist() == [20] * 7
    assert a_x.dtype == np.uint8 and a_x.shape == (140, 48, 48)
    # no class is a constant image: within-class pixel variation is large (pose, light, noise)
    for k in range(7):
        assert a_x[a_y == k].astype(float).std(0).mean() > 10


def test_synthetic_classes_differ_by_features_a_linear_model_can_partly_see():
    from sklearn.linear_model import LogisticRegression
    x, y = synthetic.synthetic_faces(1400, seed=0)
    flat = x.reshape(len(x), -1) / 255.0
    clf = LogisticRegression(max_iter=200).fit(flat[:1000], y[:1000])
    assert clf.score(flat[1000:], y[1000:]) > 0.5  # learnable (chance is 1/7)


def test_cli_writes_synthetic_kaggle_csv_that_loads_back(tmp_path):
    out = tmp_path / "syn.csv"
    r = run_script("tools/explore.py", "--synthetic", out, "--n", 200)
    assert r.returncode == 0, r.stderr
    splits = data.load(str(out))
    assert sum(len(v[1]) for v in splits.values()) == 200 and set(splits) == {"train", "val", "test"}
    x, y = synthetic.synthetic_faces(200, seed=0)
    assert torch.equal(torch.sort(splits["train"][1]).values,
                       torch.sort(torch.from_numpy(y[synthetic.synthetic_usage(200) == "Training"])).values)


def test_cli_explores_a_data_set(tmp_path):
    r = run_script("tools/explore.py", "synthetic", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "surprise" in r.stdout and "total" in r.stdout
    assert (tmp_path / "distribution.png").stat().st_size > 5000
    assert (tmp_path / "samples.png").stat().st_size > 5000


def test_real_fer2013_dev_file_loads(fer2013):
    splits = fer2013
    assert len(splits["train"][1]) == 28709 and len(splits["val"][1]) == 3589
    assert torch.bincount(splits["train"][1]).tolist() == [3995, 436, 4097, 7215, 4830, 3171, 4965]  # the report's
