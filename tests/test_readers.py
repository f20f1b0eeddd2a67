"""readers.py: every FER2013 layout users download reads to the same tensors, and every bad file is one line naming
the file and row."""
import gzip

from PIL import Image
from conftest import PIXELS, damaged_files, image_tree, kaggle_csv, one_line, run_main, run_script
import numpy as np
import pytest
import torch

import cli
import data
import readers


def csv_with(tmp_path, rows, header="emotion,pixels,Usage"):
    return write(tmp_path / "bad.csv", header + "\n" + "\n".join(rows) + "\n")


def write(path, text):
    path.write_text(text)
    return path


USAGE = ["Training"] * 50 + ["PublicTest"] * 10 + ["PrivateTest"] * 10


def pixel_strings(images):
    return [" ".join(map(str, im.ravel().tolist())) for im in images]


@pytest.fixture
def small(faces):
    images, labels = faces
    return images[:70], labels[:70]


def save_image(path, array, mode):
    Image.fromarray(array).convert(mode).save(path)


@pytest.mark.parametrize("names", [("Training", "PublicTest", "PrivateTest"), ("train", "valid", "test")],
                         ids=["kaggle-usage", "roboflow"])
def test_split_folders_named_after_usage_or_roboflow_are_the_splits(tmp_path, faces, names):
    splits = data.load(str(image_tree(tmp_path, names, faces)))
    assert {k: len(v[1]) for k, v in splits.items()} == {"train": 14, "val": 14, "test": 14}


def test_two_folders_for_one_split_are_refused(tmp_path, faces):
    with pytest.raises(cli.DataError, match="'test' and 'testing' are both the test split"):
        data.load(str(image_tree(tmp_path, ("train", "test", "testing"), faces)))


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    from PIL import Image
    values = (np.arange(48 * 48).reshape(48, 48) * 28).astype(np.uint16)  # 0 .. 64,484
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    got = readers.read_image(str(tmp_path / "deep.png"), 48).astype(int)
    assert np.abs(got - np.round(values / 257)).max() <= 1


def test_a_photo_stored_sideways_is_turned_upright_by_its_exif_tag(tmp_path):
    from PIL import Image
    upright = np.zeros((48, 48), np.uint8)
    upright[:12] = 255  # a white band at the top
    sideways = Image.fromarray(np.rot90(upright, 1).copy())  # stored turned left; tag 6: "turn right to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    got = readers.read_image(str(tmp_path / "phone.jpg"), 48)
    assert got[:12].mean() > 200 and got[20:].mean() < 50
    from app import faces  # a picture already opened reads as the file does, upright
    with Image.open(tmp_path / "phone.jpg") as im:
        assert np.array_equal(faces.as_grey(im), faces.as_grey(tmp_path / "phone.jpg"))


def test_blank_lines_keep_row_numbers_those_of_the_file(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text(f"emotion,pixels\n3,{PIXELS}\n\n\n3,1 2\n")
    with pytest.raises(cli.DataError, match="gaps.csv: row 5: 2 pixel values"):
        data.load(str(path))


def test_a_quoted_line_break_keeps_row_numbers_those_of_the_file(tmp_path):
    path = tmp_path / "quoted.csv"
    half = " ".join(["7"] * 1152)
    path.write_text(f'emotion,pixels\n3,"{half}\n{half}"\n3,{PIXELS}\n3,1 2\n')  # a row over lines 2-3
    with pytest.raises(cli.DataError, match="quoted.csv: row 5: 2 pixel values"):
        data.load(str(path))


def test_a_trailing_comma_on_every_row_still_reads(tmp_path):
    path = tmp_path / "commas.csv"
    path.write_text("emotion,pixels\n" + "".join(f"{k % 7},{PIXELS},\n" for k in range(20)))
    splits = data.load(str(path))
    assert sorted(torch.cat([splits["train"][1], splits["val"][1]]).tolist()) == sorted(k % 7 for k in range(20))


@pytest.mark.parametrize("name,words", [
    ("flipped.csv.gz", ["damaged, or not the compressed file its name says"]),
    ("text.zip", ["damaged, or not the compressed file its name says"]),
    ("text.xz", ["damaged, or not the compressed file its name says"]),
    ("cut.zip", ["damaged, or not the compressed file its name says"]),
    ("cut.csv.xz", ["damaged, or not the compressed file its name says"]),
])
def test_damaged_or_misnamed_compressed_files(tmp_path, name, words):
    (tmp_path / name).write_bytes(damaged_files()[name])
    one_line(run_main("train.py", "--data", tmp_path / name, "--epochs", "1", "--out", tmp_path / "r"), 1,
             name, *words)


def test_too_few_training_images_names_the_file(tmp_path):
    path = kaggle_csv(tmp_path / "one.csv", ["Training"])
    one_line(run_main("train.py", "--data", path, "--epochs", "1", "--out", tmp_path / "r"), 1,
             "one.csv", "too few")


def test_what_a_class_folder_holds_besides_images_is_said_not_silently_dropped(tmp_path, faces):
    from PIL import Image
    images, labels = faces
    root = image_tree(tmp_path / "t", ("train",), faces)
    Image.fromarray(images[0]).save(root / "train" / "happy" / "._0.png")  # macOS metadata twin: hidden
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "train" / "sad" / "more").mkdir()
    (root / "train" / "sad" / "photo.heic").write_bytes(b"x")
    splits = data.load(str(root))
    assert sum(len(v[1]) for v in splits.values()) == 14
    assert any("sad: 2 entries left out" in n and "more" in n and "photo.heic" in n for n in splits.notes)
    for f in (root / "train" / "angry").iterdir():
        f.rename(f.with_suffix(".heic"))
    with pytest.raises(cli.DataError, match="angry: no image files in this class folder"):
        data.load(str(root))


def test_32_bit_and_float_tiffs_are_scaled_not_saturated(tmp_path):
    from PIL import Image
    ramp = np.linspace(0, 1, 48 * 48).reshape(48, 48)
    Image.fromarray((ramp * (2 ** 31 - 1)).astype(np.int32)).save(tmp_path / "i32.tif")
    Image.fromarray((ramp * 1000).astype(np.float32)).save(tmp_path / "f.tif")
    for name in ("i32.tif", "f.tif"):
        got = readers.read_image(str(tmp_path / name), 48).astype(int)
        assert got.min() == 0 and 100 < got[24, 24] < 200 and got.max() > 120, name  # a ramp, not white


def test_a_nan_pixel_is_black_and_a_deep_grey_photo_is_drawn_as_it_reads(tmp_path):
    from PIL import Image

    from app import faces as finder
    ramp = np.linspace(0, 1, 48 * 48).reshape(48, 48).astype(np.float32)
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    ramp[3, 5] = np.nan
    Image.fromarray(ramp).save(tmp_path / "nan.tif")
    clean, nan = readers.read_grey(str(tmp_path / "f.tif")), readers.read_grey(str(tmp_path / "nan.tif"))
    assert nan[3, 5] == 0 and np.array_equal(np.delete(nan.ravel(), 3 * 48 + 5), np.delete(clean.ravel(), 3 * 48 + 5))
    Image.fromarray(np.full((48, 48), 30000, np.uint16)).save(tmp_path / "g16.png")  # 16-bit mid grey
    drawn = finder.read_rgb(str(tmp_path / "g16.png"))
    assert drawn.shape == (48, 48, 3) and np.array_equal(drawn[..., 0], readers.read_grey(str(tmp_path / "g16.png")))
    assert 100 < drawn.mean() < 140  # not clipped to white


def test_a_photo_between_pillows_warning_and_its_limit_reads_without_a_warning(tmp_path, monkeypatch):
    import warnings

    from PIL import Image
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1,600 pixels: over the warning, under 2x
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert readers.read_grey(str(tmp_path / "big.png")).shape == (40, 40)


def test_what_is_merged_or_left_out_of_a_folder_tree_is_said(tmp_path, faces):
    from PIL import Image
    images, _ = faces
    root = image_tree(tmp_path / "t", ("train", "test"), faces)
    Image.fromarray(images[0]).save(root / "train" / "stray.png")  # directly inside a split folder
    (root / "happy").mkdir()  # a class folder beside the split folders
    Image.fromarray(images[0]).save(root / "happy" / "x.png")
    (root / "train" / "Happiness").mkdir()  # a second folder for one class
    Image.fromarray(images[1]).save(root / "train" / "Happiness" / "y.png")
    notes = " | ".join(data.load(str(root)).notes)
    assert "beside the split folders left out (happy)" in notes
    assert "1 file directly inside it left out (stray.png)" in notes
    assert "folders 'Happiness' and 'happy' are all class happy" in notes


def test_a_repeated_column_is_refused_not_read_as_the_first(tmp_path):
    (tmp_path / "x.csv").write_text("emotion,pixels,emotion\n3," + " ".join(["9"] * 2304) + ",4\n")
    with pytest.raises(cli.DataError, match="the column emotion appears twice"):
        data.load(str(tmp_path / "x.csv"))


@pytest.mark.parametrize("rows,header,needles", [
    ([], "", ["bad.csv", "empty"]),
    ([f"3,{PIXELS},Training"], "label,image,Usage", ["bad.csv", "expected columns 'emotion' and 'pixels'"]),
    ([f"3,{PIXELS},Training", "4,1 2 3,Training"], None, ["bad.csv", "row 3", "3 pixel values, expected 2304"]),
    ([f"3,{PIXELS[:-3]}abc,Training"], None, ["bad.csv", "row 2", "'abc' is not a number"]),
    ([f"3,{PIXELS[:-3]}300,Training"], None, ["bad.csv", "row 2", "0-255"]),
    ([f"3,{PIXELS},Training", f"9,{PIXELS},Training"], None, ["bad.csv", "row 3", "emotion '9'"]),
    ([f"happy,{PIXELS},Training"], None, ["bad.csv", "row 2", "not a label 0-6"]),
    ([f"3,{PIXELS},Holdout"], None, ["bad.csv", "row 2", "unknown Usage 'Holdout'"]),
])
def test_bad_csv_files_are_named_with_their_row(tmp_path, rows, header, needles):
    path = csv_with(tmp_path, rows, "emotion,pixels,Usage" if header is None else header)
    if not rows and not header:
        path.write_text("")
    with pytest.raises(cli.DataError) as e:
        data.load(str(path))
    for n in needles:
        assert n in str(e.value)
    # and the scripts say it in one line
    r = run_script("train.py", "--data", path, "--epochs", "1", cwd=tmp_path)
    one_line(r, 1, *needles)
    assert not any((tmp_path / "runs").iterdir())  # the run folder it made is not left behind empty


def test_a_corrupt_gzip_is_one_line(tmp_path):
    (tmp_path / "x.csv.gz").write_bytes(gzip.compress(b"emotion,pixels\n3,1 2")[:20])
    r = run_script("evaluate.py", "--weights", tmp_path / "none.pth", "--data", tmp_path / "x.csv.gz")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1  # the weights are checked first


def test_image_folders_with_unknown_classes_or_unreadable_images(tmp_path, faces):
    from PIL import Image
    (tmp_path / "a" / "train" / "contempt").mkdir(parents=True)
    Image.fromarray(faces[0][0]).save(tmp_path / "a" / "train" / "contempt" / "0.png")
    one_line(run_script("train.py", "--data", tmp_path / "a", "--epochs", "1"), 1,
                   "contempt", "unknown class folder")
    (tmp_path / "b" / "train" / "happy").mkdir(parents=True)
    (tmp_path / "b" / "train" / "happy" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    one_line(run_script("train.py", "--data", tmp_path / "b", "--epochs", "1"), 1,
                   "broken.jpg", "unreadable image")


def test_icml_face_data_header_with_spaces_and_gzip(tmp_path, small):
    images, labels = small
    rows = "".join(f"{y}, {u}, {p}\n" for y, p, u in zip(labels, pixel_strings(images), USAGE))
    path = tmp_path / "icml_face_data.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("emotion, Usage, pixels\n" + rows)
    splits = data.load(str(path))
    assert [len(splits[k][1]) for k in ("train", "val", "test")] == [50, 10, 10]
    assert torch.equal(splits["val"][0], torch.from_numpy(images[50:60]))


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
