"""Bad input ends in one line on stderr naming the file/row/flag, and a non-zero exit: 2 for usage, 1 for
data."""
import gzip
import json
import os

import pytest
from PIL import Image

import checkpoint
import data
import model
import synthetic
from conftest import one_line, run_script

GOOD_PIXELS = " ".join(["128"] * 2304)


def write(path, text):
    path.write_text(text)
    return path


def csv_with(tmp_path, rows, header="emotion,pixels,Usage"):
    return write(tmp_path / "bad.csv", header + "\n" + "\n".join(rows) + "\n")


@pytest.mark.parametrize("rows,header,needles", [
    ([], "", ["bad.csv", "empty"]),
    ([f"3,{GOOD_PIXELS},Training"], "label,image,Usage", ["bad.csv", "expected columns 'emotion' and 'pixels'"]),
    ([f"3,{GOOD_PIXELS},Training", "4,1 2 3,Training"], None, ["bad.csv", "row 3", "3 pixel values, expected 2304"]),
    ([f"3,{GOOD_PIXELS[:-3]}abc,Training"], None, ["bad.csv", "row 2", "'abc' is not a number"]),
    ([f"3,{GOOD_PIXELS[:-3]}300,Training"], None, ["bad.csv", "row 2", "0-255"]),
    ([f"3,{GOOD_PIXELS},Training", f"9,{GOOD_PIXELS},Training"], None, ["bad.csv", "row 3", "emotion '9'"]),
    ([f"happy,{GOOD_PIXELS},Training"], None, ["bad.csv", "row 2", "not a label 0-6"]),
    ([f"3,{GOOD_PIXELS},Holdout"], None, ["bad.csv", "row 2", "unknown Usage 'Holdout'"]),
])
def test_bad_csv_files_are_named_with_their_row(tmp_path, rows, header, needles):
    path = csv_with(tmp_path, rows, "emotion,pixels,Usage" if header is None else header)
    if not rows and not header:
        path.write_text("")
    with pytest.raises(data.DataError) as e:
        data.load(str(path))
    for n in needles:
        assert n in str(e.value)
    # and the scripts say it in one line
    r = run_script("train.py", "--data", path, "--epochs", "1", cwd=tmp_path)
    one_line(r, 1, *needles)
    assert not any((tmp_path / "runs").iterdir())  # the run folder it made is not left behind empty


def test_a_missing_data_file_says_where_to_get_fer2013(tmp_path):
    r = run_script("train.py", "--epochs", "1", "--data", tmp_path / "fer2013.csv")
    one_line(r, 2, "fer2013.csv: no such file", "kaggle.com", "--data synthetic")


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


@pytest.mark.parametrize("flags,needle", [
    (["--epochs", "0"], "--epochs must be a positive integer"),
    (["--epochs", "-3"], "--epochs must be a positive integer"),
    (["--bs", "0"], "--bs must be a positive integer"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--lr=-1e-3"], "--lr must be a positive number"),
    (["--epochs", "ten"], "--epochs: invalid int value"),
    (["--model", "alexnet"], "--model: invalid choice"),
    (["--amp", "fp16", "--device", "cpu"], "--amp fp16 needs a CUDA GPU"),
    (["--ema", "1"], "--ema must be a decay in [0, 1)"),
    (["--train-on-val", "--early-stop", "5"], "use one of them"),
])
def test_bad_flags_are_usage_errors(flags, needle):
    one_line(run_script("train.py", "--data", "synthetic", *flags), 2, needle)


def test_evaluate_refuses_a_split_the_data_does_not_have(tmp_path):
    checkpoint.save_weights(tmp_path / "w.pth", model.build("resnet"), "resnet")
    train_only = tmp_path / "train.csv"
    write(train_only, "emotion,pixels\n" + "\n".join(f"{k % 7},{GOOD_PIXELS}" for k in range(30)) + "\n")
    one_line(run_script("evaluate.py", "--weights", tmp_path / "w.pth", "--data", train_only, "--split", "test"),
                   2, "--split test", "has no test split")


@pytest.mark.parametrize("script", ["evaluate.py", "gradcam.py"])
def test_bad_weights_files_are_one_line(tmp_path, script):
    (tmp_path / "junk.pth").write_bytes(b"junk")
    out = ["--out", tmp_path / "g.png"] if script == "gradcam.py" else []  # gradcam.py writes only where told
    one_line(run_script(script, "--weights", tmp_path / "junk.pth", "--data", "synthetic", *out), 1,
                   "junk.pth", "not a usable weights file")
    one_line(run_script(script, "--weights", tmp_path / "absent.pth", "--data", "synthetic", *out), 1,
                   "absent.pth: no such file")


def test_an_unreadable_image_for_prediction_is_one_line(tmp_path):
    checkpoint.save_weights(tmp_path / "w.pth", model.build("resnet"), "resnet")
    (tmp_path / "me.jpg").write_text("not an image")
    one_line(run_script("app/photos.py", "--weights", tmp_path / "w.pth", "--images", tmp_path / "me.jpg"), 1,
                   "me.jpg", "unreadable image")


def test_one_broken_picture_among_many_is_named_and_the_rest_are_answered(tmp_path):
    checkpoint.save_weights(tmp_path / "w.pth", model.build("mlp"), "mlp")
    good = []
    for k in range(3):
        Image.fromarray(synthetic.synthetic_faces(3, seed=k)[0][0]).save(tmp_path / f"{k}.png")
        good.append(tmp_path / f"{k}.png")
    (tmp_path / "broken.jpg").write_text("not an image")
    r = run_script("app/photos.py", "--weights", tmp_path / "w.pth", "--images", good[0], tmp_path / "broken.jpg",
                   *good[1:], "--json", tmp_path / "faces.json", "--out", tmp_path / "marked")
    one_line(r, 1, "1 of 4 pictures could not be read", "broken.jpg: unreadable image")
    found = json.load(open(tmp_path / "faces.json"))["images"]
    assert [os.path.basename(f["file"]) for f in found] == ["0.png", "broken.jpg", "1.png", "2.png"]
    assert "unreadable image" in found[1]["error"] and all(len(f["faces"]) == 1 for f in found if "error" not in f)
    assert sorted(os.listdir(tmp_path / "marked")) == ["0_faces.png", "1_faces.png", "2_faces.png"]
