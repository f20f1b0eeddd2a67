"""The files and flags users really have: each ends in the right answer, or in one line naming the file, row
or flag with a non-zero exit. Never a traceback, never a silently wrong answer.

Scripts run in this process through their `__main__` block (runpy), exactly as `python SCRIPT ...` runs them,
without paying for a new interpreter and torch import per case."""
import errno
import gzip
import io
import lzma
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np
import pytest
import torch

import augment
import checkpoint
import data
import inference
import model
import readers
import run_folder
import synthetic
from conftest import one_line, run_main

PIXELS = " ".join(["128"] * 2304)
FAST = ["--data", "synthetic", "--device", "cpu", "--model", "mlp", "--bs", "64", "--amp", "off"]


def kaggle_csv(path, usages, labels=None, header="emotion,pixels,Usage"):
    labels = labels if labels is not None else [k % 7 for k in range(len(usages))]
    rows = [f"{y},{PIXELS},{u}" for y, u in zip(labels, usages)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def image_tree(root, split_names, faces, per_class=2):
    from PIL import Image
    images, labels = faces
    for s, split in enumerate(split_names):
        for c in range(7):
            (root / split / data.CLASSES[c]).mkdir(parents=True)
            for k in np.flatnonzero(labels == c)[s * per_class:(s + 1) * per_class]:
                Image.fromarray(images[k]).save(root / split / data.CLASSES[c] / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "w.pth"
    checkpoint.save_weights(path, model.build("mlp"), "mlp")
    return path


# ------------------------------------------------------------------------------------------------------------
# Data layouts that used to be read wrongly without a word

@pytest.mark.parametrize("names", [("Training", "PublicTest", "PrivateTest"), ("train", "valid", "test")],
                         ids=["kaggle-usage", "roboflow"])
def test_split_folders_named_after_usage_or_roboflow_are_the_splits(tmp_path, faces, names):
    splits = data.load(str(image_tree(tmp_path, names, faces)))
    assert {k: len(v[1]) for k, v in splits.items()} == {"train": 14, "val": 14, "test": 14}


def test_two_folders_for_one_split_are_refused(tmp_path, faces):
    with pytest.raises(data.DataError, match="'test' and 'testing' are both the test split"):
        data.load(str(image_tree(tmp_path, ("train", "test", "testing"), faces)))


def test_test_rows_only_evaluate_and_refuse_to_train(tmp_path, weights):
    path = kaggle_csv(tmp_path / "test.csv", ["PublicTest"] * 7 + ["PrivateTest"] * 7)
    splits = data.load(str(path))
    assert sorted(splits) == ["test", "val"]
    code, out, _ = run_main("evaluate.py", "--weights", weights, "--data", path, "--out", tmp_path)
    assert code == 0 and "on test (PrivateTest): accuracy" in out and "on 7 images" in out
    one_line(run_main("train.py", "--data", path, "--epochs", "1", "--out", tmp_path / "run"), 1,
             "test.csv", "no training images")
    code, out, err = run_main("tools/explore.py", path, "--out", tmp_path)
    assert code == 0 and "wrote" in out, err


def test_a_folder_with_only_test_evaluates(tmp_path, faces, weights):
    root = image_tree(tmp_path / "imgs", ("test",), faces)
    code, out, err = run_main("evaluate.py", "--weights", weights, "--data", root, "--out", tmp_path)
    assert code == 0 and "on 14 images" in out, err


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    from PIL import Image
    values = (np.arange(48 * 48).reshape(48, 48) * 28).astype(np.uint16)  # 0 .. 64,484
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    got = readers.read_image(str(tmp_path / "deep.png")).astype(int)
    assert np.abs(got - np.round(values / 257)).max() <= 1


def test_a_photo_stored_sideways_is_turned_upright_by_its_exif_tag(tmp_path):
    from PIL import Image
    upright = np.zeros((48, 48), np.uint8)
    upright[:12] = 255  # a white band at the top
    sideways = Image.fromarray(np.rot90(upright, 1).copy())  # stored turned left; tag 6: "turn right to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    got = readers.read_image(str(tmp_path / "phone.jpg"))
    assert got[:12].mean() > 200 and got[20:].mean() < 50
    from app import faces  # a picture already opened reads as the file does, upright
    with Image.open(tmp_path / "phone.jpg") as im:
        assert np.array_equal(faces.as_grey(im), faces.as_grey(tmp_path / "phone.jpg"))


def test_weights_cast_to_whole_numbers_are_refused_not_scored(tmp_path):
    state = {k: v.to(torch.int8) if v.is_floating_point() else v for k, v in model.build("mlp").state_dict().items()}
    torch.save(state, tmp_path / "int8.pth")
    one_line(run_main("evaluate.py", "--weights", tmp_path / "int8.pth", "--data", "synthetic"), 1,
             "int8.pth: holds whole numbers (torch.int8)", "use the float file")


def test_a_short_row_and_a_long_row_cannot_cancel_out(tmp_path):
    short, long = " ".join(["7"] * 2303), " ".join(["7"] * 2305)
    path = tmp_path / "shifted.csv"
    path.write_text(f"emotion,pixels\n3,{PIXELS}\n3,{short}\n3,{PIXELS}\n3,{long}\n")
    with pytest.raises(data.DataError, match="shifted.csv: row 3: 2303 pixel values"):
        data.load(str(path))


def test_blank_lines_keep_row_numbers_those_of_the_file(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text(f"emotion,pixels\n3,{PIXELS}\n\n\n3,1 2\n")
    with pytest.raises(data.DataError, match="gaps.csv: row 5: 2 pixel values"):
        data.load(str(path))


def test_a_quoted_line_break_keeps_row_numbers_those_of_the_file(tmp_path):
    path = tmp_path / "quoted.csv"
    half = " ".join(["7"] * 1152)
    path.write_text(f'emotion,pixels\n3,"{half}\n{half}"\n3,{PIXELS}\n3,1 2\n')  # a row over lines 2-3
    with pytest.raises(data.DataError, match="quoted.csv: row 5: 2 pixel values"):
        data.load(str(path))


def test_a_trailing_comma_on_every_row_still_reads(tmp_path):
    path = tmp_path / "commas.csv"
    path.write_text("emotion,pixels\n" + "".join(f"{k % 7},{PIXELS},\n" for k in range(20)))
    splits = data.load(str(path))
    assert sorted(torch.cat([splits["train"][1], splits["val"][1]]).tolist()) == sorted(k % 7 for k in range(20))


# ------------------------------------------------------------------------------------------------------------
# Bad files: one line naming the file

def damaged_files(tmp_path):
    # random pixels: no file compresses to nothing
    noise = np.random.default_rng(0).integers(0, 256, (40, 2304))
    raw = ("emotion,pixels\n" + "".join(f"3,{' '.join(map(str, row))}\n" for row in noise)).encode()
    flipped = bytearray(gzip.compress(raw))
    flipped[len(flipped) // 2] ^= 0xFF
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("fer2013.csv", raw)
    png = b"\x89PNG\r\n\x1a\n"
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)  # a 900-megapixel grey PNG header, no pixels
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    bomb = png + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    return {"flipped.csv.gz": bytes(flipped), "text.zip": raw, "text.xz": raw, "cut.zip": zipped.getvalue()[:900],
            "cut.csv.xz": lzma.compress(raw)[:500], "bomb.png": bomb, "broken.bmp": b"BM" + b"\x00\xff" * 40}


@pytest.mark.parametrize("name,words", [
    ("flipped.csv.gz", ["damaged, or not the compressed file its name says"]),
    ("text.zip", ["damaged, or not the compressed file its name says"]),
    ("text.xz", ["damaged, or not the compressed file its name says"]),
    ("cut.zip", ["damaged, or not the compressed file its name says"]),
    ("cut.csv.xz", ["damaged, or not the compressed file its name says"]),
])
def test_damaged_or_misnamed_compressed_files(tmp_path, name, words):
    (tmp_path / name).write_bytes(damaged_files(tmp_path)[name])
    one_line(run_main("train.py", "--data", tmp_path / name, "--epochs", "1", "--out", tmp_path / "r"), 1,
             name, *words)


@pytest.mark.parametrize("name,words", [("bomb.png", ["image too large"]), ("broken.bmp", ["unreadable image"])])
def test_images_too_large_or_broken(tmp_path, weights, name, words):
    (tmp_path / name).write_bytes(damaged_files(tmp_path)[name])
    one_line(run_main("app/photos.py", "--weights", weights, "--images", tmp_path / name), 1, name, *words)


def test_too_few_training_images_names_the_file(tmp_path):
    path = kaggle_csv(tmp_path / "one.csv", ["Training"])
    one_line(run_main("train.py", "--data", path, "--epochs", "1", "--out", tmp_path / "r"), 1,
             "one.csv", "too few")


def test_weights_of_an_unknown_network_name_the_file(tmp_path):
    torch.save({"model": "alexnet", "state_dict": {}}, tmp_path / "alex.pth")
    one_line(run_main("app/photos.py", "--weights", tmp_path / "alex.pth", "--images", "x.png"), 1,
             "alex.pth", "unknown network 'alexnet'")


class Pickled:  # a weights file carrying code: refused by weights_only loading
    pass


def test_pickled_code_is_refused_without_terminal_colour_codes(tmp_path):
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"model": Pickled()}, f)
    torch.save({"x": Pickled()}, tmp_path / "evil2.pth")
    for name in ("evil.pth", "evil2.pth"):
        result = run_main("app/photos.py", "--weights", tmp_path / name, "--images", "x.png")
        one_line(result, 1, name, "not a usable weights file", "refused for safety")
        assert "\x1b" not in result[2]


def test_a_bare_state_dict_of_one_of_our_networks_loads(tmp_path):
    net = model.build("cnn2")
    torch.save(net.state_dict(), tmp_path / "bare.pth")
    loaded, name = checkpoint.load_weights(str(tmp_path / "bare.pth"))
    assert name == "cnn2" and all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "ddp.pth")  # DDP's prefix
    assert checkpoint.load_weights(str(tmp_path / "ddp.pth"))[1] == "cnn2"
    torch.save({"w": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(checkpoint.WeightsError, match="other.pth: a bare state_dict that fits none"):
        checkpoint.load_weights(str(tmp_path / "other.pth"))


# ------------------------------------------------------------------------------------------------------------
# Outputs that cannot be written: refused before the work

def test_outputs_that_cannot_be_written_are_refused_before_the_work(tmp_path, weights):
    (tmp_path / "file").write_text("x")
    one_line(run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "file"), 1,
             "file", "not a folder")
    one_line(run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "file" / "run"), 1,
             "file is a file, not a folder")
    one_line(run_main("train.py", *FAST, "--epochs", "1", "--out", "/proc/no-such-run"), 1,
             "/proc/no-such-run", "cannot write")
    one_line(run_main("gradcam.py", "--weights", weights, "--data", "synthetic", "--out",
                      tmp_path / "cam"), 2, "--out", "name an image file")
    one_line(run_main("evaluate.py", "--weights", weights, "--data", "synthetic", "--out", tmp_path / "figs",
                      "--json", tmp_path), 1, "is a folder")
    assert not (tmp_path / "figs").exists()  # refused before anything was written


def test_synthetic_faces_into_a_missing_folder_make_it(tmp_path):
    code, out, err = run_main("tools/explore.py", "--synthetic", tmp_path / "new" / "faces.csv", "--n", "14")
    assert code == 0 and (tmp_path / "new" / "faces.csv").is_file(), err


def test_a_full_disk_mid_run_is_one_line_saying_what_is_saved(tmp_path, monkeypatch):
    real_save, calls = torch.save, {"n": 0}

    def full_after_one_epoch(obj, path, *a, **k):
        if "checkpoint" in str(path):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(torch, "save", full_after_one_epoch)
    one_line(run_main("train.py", *FAST, "--epochs", "3", "--out", tmp_path / "run"), 1,
             "checkpoint.pth: cannot write it (No space left on device)", "epoch 1 is saved")


# ------------------------------------------------------------------------------------------------------------
# Flags: ranges that mean something

@pytest.mark.parametrize("flags,words", [
    (["--seed", "-1"], "--seed must be in [0, 2^32), got -1"),
    (["--opt", "sgd", "--momentum=-0.5"], "--momentum must be in [0, 1)"),
    (["--plateau-factor", "1"], "--plateau-factor must be in (0, 1), got 1.0"),
    (["--plateau-factor", "0"], "--plateau-factor must be in (0, 1), got 0.0"),
    (["--wd", "nan"], "--wd must be >= 0, got nan"),
    (["--degrees", "nan"], "--degrees must be in [0, 180], got nan"),
    (["--translate", "5"], "--translate must be a fraction of the size in [0, 0.5]"),
    (["--scale", "0.8", "inf"], "--scale needs 0 < low <= high"),
    (["--bs", "9"], None),  # a plain run: any batch size
])
def test_flags_out_of_range_are_usage_errors(tmp_path, capsys, monkeypatch, flags, words):
    import train
    if words is None:
        assert train.parse_args(FAST + flags)[0].bs == 9
        monkeypatch.setenv("WORLD_SIZE", "2")
        words = "--bs 9 is the global batch and must divide evenly over the 2 processes, e.g. --bs 8"
    with pytest.raises(SystemExit) as e:
        train.parse_args(FAST + flags)[0]
    assert e.value.code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize("flags,words", [
    (["--momentum", "0.5"], "--momentum is SGD's; --opt adam has none"),
    (["--schedule", "cosine", "--plateau-patience", "3"], "--plateau-patience sets ReduceLROnPlateau"),
    (["--schedule", "cosine", "--plateau-on", "train-loss"], "--plateau-on sets ReduceLROnPlateau"),
    (["--class-weighted-loss"], "--class-weighted-loss and --sampler weighted both correct"),
    (["--init", "a.pth", "--resume", "b.pth"], "--init starts a new run from weights, --resume continues"),
])
def test_a_flag_that_would_be_ignored_is_refused(capsys, flags, words):
    import train
    with pytest.raises(SystemExit) as e:
        train.parse_args(FAST + flags)[0]
    assert e.value.code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize("flags,words", [(["--layer", "stage2"], ["--layer", "add --gradcam"]),
                                         (["--class", "happy"], ["--class", "add --gradcam"]),
                                         (["--gradcam", "g.txt"], ["--gradcam g.txt", "name an image file"]),
                                         (["--gradcam", "g.png", "--json", "g.png"], ["--json g.png", "--gradcam's"])])
def test_photos_refuse_grad_cam_flags_they_cannot_honour(tmp_path, flags, words):
    checkpoint.save_weights(tmp_path / "r.pth", model.build("resnet"), "resnet")
    one_line(run_main("app/photos.py", "--weights", tmp_path / "r.pth", "--images", tmp_path / "me.jpg", *flags), 2,
             *words)
    one_line(run_main("app/photos.py", "--weights", tmp_path / "r.pth", tmp_path / "r.pth", "--images",
                      tmp_path / "me.jpg", "--gradcam", tmp_path / "g.png"), 2, "--gradcam", "one --weights file")


def test_sgd_without_momentum_is_plain_sgd():
    import train
    args = train.parse_args(FAST + ["--opt", "sgd", "--momentum", "0"])[0]
    trainer = train.Trainer(args, data.load("synthetic", n_synthetic=70), torch.device("cpu"))
    group = trainer.opt.param_groups[0]
    assert group["momentum"] == 0 and group["nesterov"] is False


@pytest.mark.parametrize("script,flags,code,words", [
    ("gradcam.py", ["--layer", "head.1"], 2, ["--layer head.1", "not a spatial map", "try one of stage1.0"]),
    ("gradcam.py", ["--layer", "nope"], 2, ["--layer nope: no such module", "stage3.3"]),
    ("gradcam.py", ["--seed", "-1"], 2, ["--seed must be >= 0"]),
    ("gradcam.py", ["--device", "cuda"], 2, ["--device cuda, but PyTorch sees no CUDA GPU"]),
    ("tools/explore.py", ["--synthetic", "x.csv", "--seed", "-1"], 2, ["--seed must be >= 0"]),
])
def test_gradcam_and_data_flags(tmp_path, script, flags, code, words):
    if torch.cuda.is_available() and "cuda" in flags:
        pytest.skip("this machine has a GPU")
    checkpoint.save_weights(tmp_path / "r.pth", model.build("resnet"), "resnet")
    base = ["--weights", tmp_path / "r.pth", "--data", "synthetic", "--n", "2", "--out", tmp_path / "g.png"] \
        if script == "gradcam.py" else []
    one_line(run_main(script, *base, *flags), code, *words)


def test_a_wrong_layer_on_another_network_lists_its_own_blocks(tmp_path):
    checkpoint.save_weights(tmp_path / "v.pth", model.build("cnn3"), "cnn3")
    one_line(run_main("gradcam.py", "--weights", tmp_path / "v.pth", "--data", "synthetic", "--layer",
                      "stage3.3", "--out", tmp_path / "g.png"), 2, "features.2, features.7, features.12")


# ------------------------------------------------------------------------------------------------------------
# Resume and interruptions

def test_resume_refuses_another_optimiser_or_schedule(tmp_path):
    run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoint.pth"
    one_line(run_main("train.py", "--resume", ckpt, "--opt", "sgd"), 2,
             "trains with --opt adam, not sgd", "--init")
    one_line(run_main("train.py", "--resume", ckpt, "--schedule", "cosine"), 2, "--schedule plateau")
    one_line(run_main("train.py", "--resume", ckpt, "--train-on-val"), 2, "--train-on-val False, not True")
    one_line(run_main("train.py", "--resume", tmp_path / "run"), 2, f"resume with --resume {ckpt}")


def test_a_gpu_checkpoint_resumes_on_the_cpu(tmp_path):
    run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pth"
    ckpt = torch.load(path, weights_only=True)
    ckpt["device"] = "cuda"  # what a CUDA run saves: a 16-byte Philox state, not the CPU generator's 5 kB
    ckpt["rng"]["augment"] = ckpt["rng"]["augment_ranks"][0] = torch.zeros(16, dtype=torch.uint8)
    ckpt["rng"]["cuda"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(ckpt, path)
    code, out, err = run_main("train.py", "--resume", path, "--epochs", "2")
    assert code == 0, err
    assert "augmentation draws continue from a fresh seed" in out and "epoch    2" in out


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_in_the_first_epoch_says_nothing_was_saved(tmp_path, monkeypatch):
    # runpy runs a fresh train.py: patch the module it uses
    monkeypatch.setattr(augment, "augment", interrupt)
    result = run_main("train.py", *FAST, "--epochs", "3", "--out", tmp_path / "run")
    one_line(result, 1, "interrupted; no epoch was finished, so nothing was saved")
    assert "--resume" not in result[2] and not (tmp_path / "run" / "checkpoint.pth").exists()


def test_ctrl_c_while_the_data_loads_is_one_line(tmp_path, monkeypatch, weights):
    monkeypatch.setattr(data, "load", interrupt)
    one_line(run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "run"), 1, "interrupted")
    one_line(run_main("evaluate.py", "--weights", weights, "--data", "synthetic", "--out", tmp_path), 1,
             "interrupted")


def test_an_existing_run_folder_is_not_overwritten_or_resumed_by_accident(tmp_path):
    run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "run")
    one_line(run_main("train.py", *FAST, "--model", "cnn2", "--epochs", "1", "--out", tmp_path / "run"), 2,
             "already holds a run", "--resume")


def test_a_non_finite_loss_in_the_first_epoch_points_at_no_checkpoint(tmp_path):
    one_line(run_main("train.py", *FAST, "--lr", "1e30", "--opt", "sgd", "--epochs", "2", "--out",
                      tmp_path / "run"), 1, "training loss became", "no epoch was finished")


# ------------------------------------------------------------------------------------------------------------
# A user's first hour: which split is scored, what is written where, what -h says

def test_every_output_line_names_the_kaggle_split(tmp_path, weights):
    path = kaggle_csv(tmp_path / "fer2013.csv", ["Training"] * 70 + ["PublicTest"] * 14 + ["PrivateTest"] * 14)
    code, out, err = run_main("evaluate.py", "--weights", weights, "--data", path)
    assert code == 0 and "on test (PrivateTest): accuracy" in out, err
    code, out, err = run_main("evaluate.py", "--weights", weights, "--data", path, "--split", "val")
    assert code == 0 and "on val (PublicTest): accuracy" in out, err
    code, out, err = run_main("train.py", "--data", path, *FAST[2:], "--epochs", "1", "--out", tmp_path / "run")
    assert code == 0 and "validation on val (PublicTest)" in out and "test (PrivateTest) accuracy" in out, err


def test_nothing_is_written_beside_the_weights_or_into_the_current_folder(tmp_path, weights, monkeypatch):
    import os
    folder = os.path.dirname(weights)
    before = sorted(os.listdir(folder))
    monkeypatch.chdir(tmp_path)
    assert run_main("evaluate.py", "--weights", weights, "--data", "synthetic")[0] == 0
    assert run_main("tools/explore.py", "synthetic")[0] == 0
    assert sorted(os.listdir(folder)) == before and os.listdir(tmp_path) == []
    one_line(run_main("gradcam.py", "--weights", weights, "--data", "synthetic"), 2, "--out")


@pytest.mark.parametrize("script", ["train", "evaluate", "gradcam", "app.photos", "app.camera", "app.serve", "app.export",
                                    "bench", "tools.explore"])
def test_help_shows_every_default_and_every_flag_has_help(script):
    import importlib
    parser = importlib.import_module(script).make_parser()
    assert all(a.help for a in parser._actions), [a.dest for a in parser._actions if not a.help]
    code, out, _ = run_main(f"{script.replace('.', '/')}.py", "-h")
    assert code == 0 and "(default:" in out
    if script == "train":
        assert "--epochs EPOCHS" in out and "(default: 350)" in out


def test_the_optional_extra_opens_windows_on_a_desktop():
    """The headless OpenCV build cannot show camera.py's window; the extra installs the one that can."""
    import os
    from conftest import ROOT
    lines = [s.split("#")[0].strip() for s in open(os.path.join(ROOT, "requirements-faces.txt"))]
    assert any(s.startswith("opencv-python>") for s in lines) and not any("headless" in s for s in lines)


# ------------------------------------------------------------------------------------------------------------
# Data loss: no output replaces an input, another output, or another run

def test_an_output_that_is_an_input_is_refused(tmp_path, weights):
    from PIL import Image
    photo = tmp_path / "me.png"
    Image.fromarray(np.full((200, 200), 90, np.uint8)).save(photo)
    original = photo.read_bytes()
    one_line(run_main("app/photos.py", "--weights", weights, "--images", photo, "--gradcam", photo), 1,
             "me.png", "is also an input")
    one_line(run_main("evaluate.py", "--weights", weights, "--data", "synthetic", "--json", weights), 1,
             "is also an input")
    assert photo.read_bytes() == original


def test_outputs_never_land_on_each_other_nor_inside_the_data(tmp_path, weights, faces):
    from PIL import Image
    photo = tmp_path / "me.png"
    Image.fromarray(np.full((200, 200), 90, np.uint8)).save(photo)
    one_line(run_main("app/photos.py", "--weights", weights, "--images", photo, "--out", tmp_path / "o",
                      "--json", tmp_path / "o" / "me_faces.png"), 2, "--json", "where --out marks a photo")
    one_line(run_main("evaluate.py", "--weights", weights, "--data", "synthetic", "--out", tmp_path / "o",
                      "--json", tmp_path / "o" / "confusion_matrix.png"), 2, "--json", "where --out draws")
    root = image_tree(tmp_path / "tree", ("train", "test"), faces)
    for script, flags in (("evaluate.py", ["--weights", weights, "--out", root / "test" / "happy"]),
                          ("train.py", [*FAST[2:], "--epochs", "1", "--out", root / "runs" / "a"])):
        one_line(run_main(script, "--data", root, *flags), 1, "inside the data folder", "read as faces")
    assert sorted(os.listdir(root)) == ["test", "train"]
    existing = tmp_path / "mine.csv"
    existing.write_text("emotion,pixels\n")
    one_line(run_main("tools/explore.py", "--synthetic", existing, "--n", "14"), 1, "mine.csv: already exists")
    assert existing.read_text() == "emotion,pixels\n"


def test_shipping_checks_everything_before_writing_and_never_replaces_its_input(tmp_path):
    run = tmp_path / "run"
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", run)[0] == 0
    one_line(run_main("tools/ship.py", run, tmp_path / "w" / "x", "--data", tmp_path / "none.csv"), 2,
             "--data", "no such file")
    assert not (tmp_path / "w").exists()  # nothing half-shipped
    before = {f: (run / f).read_bytes() for f in os.listdir(run)}
    for dest in ("model", "checkpoint", "last"):  # no output lands on a file of the run it reads
        one_line(run_main("tools/ship.py", run, run / dest, "--data", "synthetic", "--last"), 2,
                 "inside the run folder")
    assert {f: (run / f).read_bytes() for f in os.listdir(run)} == before
    os.makedirs(tmp_path / "ship")
    for folder in (f"{tmp_path / 'ship'}/", tmp_path / "ship"):  # a folder is not a name: no hidden ".pth"
        one_line(run_main("tools/ship.py", run, folder, "--data", "synthetic"), 2, "a folder; name the files")
    assert os.listdir(tmp_path / "ship") == []
    other = tmp_path / "other.csv"
    readers.write_csv(str(other), *synthetic.synthetic_faces(300, seed=7))
    one_line(run_main("tools/ship.py", run, tmp_path / "w" / "x", "--data", other), 2,
             "--data", "not the data", "trained on")
    assert not (tmp_path / "w").exists()


def test_two_photos_with_one_stem_get_two_outputs(tmp_path, weights):
    from PIL import Image
    for name, value in (("1.jpg", 60), ("1.png", 200)):
        Image.fromarray(np.full((48, 48), value, np.uint8)).save(tmp_path / name)
    code, out, err = run_main("app/photos.py", "--weights", weights, "--images", tmp_path / "1.jpg",
                              tmp_path / "1.png", "--out", tmp_path / "marked")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "marked").iterdir()) == ["1.jpg_faces.png", "1.png_faces.png"]


def test_a_run_folder_is_never_shared_or_reused(tmp_path, monkeypatch):
    import os
    import train
    run = tmp_path / "run"  # a folder being written by a live training: tests/test_stops.py
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", run)[0] == 0
    assert not (run / "training.lock").exists()
    (run / "checkpoint.pth").unlink()  # model.pth is still there
    one_line(run_main("train.py", *FAST, "--epochs", "1", "--out", run), 2, "already holds a run", "model.pth")
    other = tmp_path / "other"
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", other)[0] == 0
    one_line(run_main("train.py", "--resume", other / "checkpoint.pth", "--epochs", "2", "--out", run), 2,
             "already holds a run")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_folder.time, "strftime", lambda *a: "20261201-000000")
    first = run_folder.default_out()
    os.makedirs(first)
    assert run_folder.default_out() == first + "-2"  # the same second, a new folder


def test_a_failed_write_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch):
    import files
    target = tmp_path / "m.json"
    files.write_json(target, {"good": 1})
    good = target.read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)  # what the writer buffered fails on its way to the disk
    with pytest.raises(files.OutputError, match="m.json: cannot write it \\(No space left on device\\)"):
        files.write_json(target, {"new": 2})
    assert target.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_a_video_cut_short_is_not_reported_as_written(tmp_path):
    cv2 = pytest.importorskip("cv2")
    from app import camera
    path = str(tmp_path / "v.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(5):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    assert camera.check_video(cv2, path, 5) is None
    assert "holds 5 of 8 frames" in camera.check_video(cv2, path, 8)
    (tmp_path / "empty.avi").write_bytes(b"")
    assert "empty" in camera.check_video(cv2, str(tmp_path / "empty.avi"), 8)


# ------------------------------------------------------------------------------------------------------------
# Silent wrong answers

def test_a_folder_without_splits_is_scored_whole(tmp_path, faces, weights, monkeypatch):
    from PIL import Image
    images, labels = faces
    for k in range(70):
        (tmp_path / "ck" / data.CLASSES[labels[k]]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[k]).save(tmp_path / "ck" / data.CLASSES[labels[k]] / f"{k}.png")
    (tmp_path / "ck" / "contempt").mkdir()
    Image.fromarray(images[0]).save(tmp_path / "ck" / "contempt" / "x.png")
    code, out, err = run_main("evaluate.py", "--weights", weights, "--data", tmp_path / "ck")
    assert code == 0 and "on 70 images" in out and "every image" in out, err
    assert "'contempt' left out" in out
    one_line(run_main("train.py", *FAST[2:], "--data", tmp_path / "ck", "--epochs", "1", "--out", tmp_path / "r"),
             1, "contempt", "unknown class folder")
    # weights trained on that very folder are scored on the 10% train.py held out, not on their own images
    import shutil
    shutil.rmtree(tmp_path / "ck" / "contempt")
    assert run_main("train.py", *FAST[2:], "--data", tmp_path / "ck", "--epochs", "1", "--out", tmp_path / "r")[0] == 0
    code, out, err = run_main("evaluate.py", "--weights", tmp_path / "r" / "model.pth", "--data", tmp_path / "ck")
    assert code == 0 and "scoring the 10% that train.py held out" in out and "on 7 images" in out, out + err
    # ... however the path is spelt, and wherever the same faces were moved
    shutil.copytree(tmp_path / "ck", tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main("evaluate.py", "--weights", "r/model.pth", "--data", "moved")
    assert code == 0 and "scoring the 10% that train.py held out" in out and "on 7 images" in out, out + err


def test_resume_refuses_changed_validation_images(tmp_path, faces):
    images, labels = faces
    usage = ["Training"] * 300 + ["PublicTest"] * 50
    readers.write_csv(str(tmp_path / "a.csv"), images, labels, usage)
    assert run_main("train.py", *FAST[2:], "--data", tmp_path / "a.csv", "--epochs", "1", "--out", tmp_path / "r")[0] == 0
    labels = labels.copy()
    labels[-1] = (labels[-1] + 1) % 7  # one validation label corrected; the training rows are the same
    readers.write_csv(str(tmp_path / "a.csv"), images, labels, usage)
    one_line(run_main("train.py", "--resume", tmp_path / "r" / "checkpoint.pth", "--epochs", "2"), 1,
             "validated on other images", "mix two validation sets")


def test_weights_trained_on_val_warn_when_scored_on_val(tmp_path):
    import train
    train.main(FAST + ["--epochs", "1", "--train-on-val", "--out", str(tmp_path / "run")])
    code, out, err = run_main("evaluate.py", "--weights", tmp_path / "run" / "model.pth", "--data", "synthetic",
                              "--split", "val")
    assert code == 0 and "warning:" in out and "--train-on-val" in out, err
    code, out, _ = run_main("evaluate.py", "--weights", tmp_path / "run" / "model.pth", "--data", "synthetic")
    assert "warning:" not in out  # test was held out
    train.main(FAST + ["--epochs", "1", "--out", str(tmp_path / "held")])  # an ensemble: only one trained on val
    code, out, _ = run_main("evaluate.py", "--weights", tmp_path / "run" / "model.pth", tmp_path / "held" / "model.pth",
                            "--data", "synthetic", "--split", "val")
    warning = next(line for line in out.splitlines() if line.startswith("warning:"))
    assert str(tmp_path / "run" / "model.pth") in warning and str(tmp_path / "held") not in warning


def test_a_folder_with_only_train_and_train_on_val_says_val_was_trained_on(tmp_path, faces, capsys):
    import train
    root = image_tree(tmp_path / "tree", ("train",), faces)
    train.main(FAST[2:] + ["--data", str(root), "--epochs", "1", "--train-on-val", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert "trained on too" in out and "held out by train.py" not in out


def test_resume_applies_the_optimiser_flags_it_is_given(tmp_path):
    import train
    train.main(FAST + ["--epochs", "1", "--opt", "sgd", "--out", str(tmp_path / "run")])
    ckpt = str(tmp_path / "run" / "checkpoint.pth")
    args = train.parse_args(["--resume", ckpt, "--epochs", "2", "--lr", "0.05", "--wd", "0.001", "--momentum", "0.5"])[0]
    trainer = train.Trainer(args, data.load("synthetic"), torch.device("cpu"))
    splits = data.load("synthetic")
    checkpoint.restore(trainer, torch.load(ckpt, weights_only=True), ckpt, data.fingerprint(*splits["train"]),
                       data.fingerprint(*splits["val"]))
    group = trainer.opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["momentum"]) == (0.05, 0.001, 0.5)
    one_line(run_main("train.py", "--resume", ckpt), 2, "has finished 1 epochs already", "--epochs")
    one_line(run_main("train.py", *FAST, "--warmup", "2", "--out", tmp_path / "w"), 2, "--warmup", "cosine")
    one_line(run_main("train.py", *FAST, "--decay", "1e-5", "--out", tmp_path / "d"), 2, "--decay", "inverse-time")


def test_the_inverse_time_schedule_decays_every_step():
    import train
    args = train.parse_args(FAST + ["--opt", "sgd", "--lr", "0.05", "--schedule", "inverse-time", "--decay", "0.01"])[0]
    trainer = train.Trainer(args, data.load("synthetic"), torch.device("cpu"))
    x, y = trainer.train_x[:64], trainer.train_y[:64]
    for step in range(1, 4):
        trainer.train_step(x, y)
        assert trainer.opt.param_groups[0]["lr"] == pytest.approx(0.05 / (1 + 0.01 * step))


def train_history(out, *args):
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", out, *args)[0] == 0
    return [line.split(",")[:-1] for line in (out / "history.csv").read_text().splitlines()]  # not seconds


def test_a_weights_files_own_class_order_is_honoured_and_nan_weights_refused(tmp_path):
    net = model.build("mlp").eval()
    order = [6, 5, 4, 3, 2, 1, 0]
    head = net.net[-1]
    permuted = model.build("mlp").eval()
    permuted.load_state_dict(net.state_dict())
    with torch.no_grad():  # the same network with its outputs in another order, saved under that order
        permuted.net[-1].weight.copy_(head.weight[order])
        permuted.net[-1].bias.copy_(head.bias[order])
    checkpoint.save_weights(tmp_path / "a.pth", net, "mlp")
    blob = {"model": "mlp", "classes": [data.CLASSES[i].title() for i in order],
            "state_dict": permuted.state_dict(), "meta": {}}
    torch.save(blob, tmp_path / "b.pth")
    images = torch.from_numpy(synthetic.synthetic_faces(20, seed=2)[0])
    a, b = (inference.predict_proba(inference.load_nets([tmp_path / n], "cpu"), images, "cpu") for n in ("a.pth", "b.pth"))
    assert torch.allclose(a, b, atol=1e-6)
    # every reader goes through the one loading path, which puts the outputs in data.CLASSES order: the
    # raw outputs (Grad-CAM's target, camera.py, --init's starting point) are the same network's
    x = data.normalize(images[:, None].float() / 255)
    a, b = (checkpoint.load_weights(tmp_path / n)[0](x) for n in ("a.pth", "b.pth"))
    assert torch.allclose(a, b, atol=1e-5)
    runs = [train_history(tmp_path / n, "--init", tmp_path / f"{n}.pth") for n in ("a", "b")]
    assert runs[0] == runs[1]
    blob["state_dict"] = {k: v * float("nan") for k, v in blob["state_dict"].items()}
    torch.save(blob, tmp_path / "nan.pth")
    one_line(run_main("evaluate.py", "--weights", tmp_path / "nan.pth", "--data", "synthetic"), 1,
             "nan.pth", "NaN or infinite weights")


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
    with pytest.raises(data.DataError, match="angry: no image files in this class folder"):
        data.load(str(root))


def test_32_bit_and_float_tiffs_are_scaled_not_saturated(tmp_path):
    from PIL import Image
    ramp = np.linspace(0, 1, 48 * 48).reshape(48, 48)
    Image.fromarray((ramp * (2 ** 31 - 1)).astype(np.int32)).save(tmp_path / "i32.tif")
    Image.fromarray((ramp * 1000).astype(np.float32)).save(tmp_path / "f.tif")
    for name in ("i32.tif", "f.tif"):
        got = readers.read_image(str(tmp_path / name)).astype(int)
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
    with pytest.raises(data.DataError, match="the column emotion appears twice"):
        data.load(str(tmp_path / "x.csv"))


def test_synthetic_faces_are_compressed_as_the_name_says(tmp_path):
    import bz2
    assert run_main("tools/explore.py", "--synthetic", tmp_path / "x.csv.bz2", "--n", "14")[0] == 0
    assert bz2.decompress((tmp_path / "x.csv.bz2").read_bytes()).startswith(b"emotion,pixels,Usage")
    assert len(data.load(str(tmp_path / "x.csv.bz2"))["train"][1]) > 0


# ------------------------------------------------------------------------------------------------------------
# Tracebacks and misleading messages

@pytest.mark.parametrize("change", [{"meta": "hello"}, {"state_dict": [1, 2]}, {"classes": 7},
                                    {"state_dict": {"w": "x"}}], ids=["meta", "list", "classes", "strings"])
def test_a_weights_file_with_other_kinds_of_values_is_one_line(tmp_path, change):
    blob = {"model": "mlp", "classes": list(data.CLASSES), "state_dict": model.build("mlp").state_dict(),
            "meta": {}, **change}
    torch.save(blob, tmp_path / "w.pth")
    one_line(run_main("evaluate.py", "--weights", tmp_path / "w.pth", "--data", "synthetic"), 1,
             "w.pth: not a usable weights file", repr(next(iter(change))))


@pytest.mark.parametrize("key,value", [("rng", None), ("history", "x"), ("epoch", 1.5)])
def test_an_altered_checkpoint_is_one_line(tmp_path, key, value):
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "run")[0] == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)
    if value is None:
        del ckpt[key]
    else:
        ckpt[key] = value
    torch.save(ckpt, tmp_path / "c.pth")
    one_line(run_main("train.py", "--resume", tmp_path / "c.pth", "--epochs", "3"), 1,
             "an incomplete or altered checkpoint.pth", repr(key))


def test_an_unreadable_folder_and_a_pipe_are_one_line_not_a_traceback_or_a_hang(tmp_path, faces, weights,
                                                                             monkeypatch):
    root = image_tree(tmp_path / "tree", ("train",), faces)
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # no writer: opening it would wait forever
    one_line(run_main("app/photos.py", "--weights", weights, "--images", fifo), 1, "photo.jpg: not a picture file")
    listdir = os.listdir

    def refuse(path):
        if str(path).endswith("angry"):
            raise PermissionError(13, "Permission denied")
        return listdir(path)

    monkeypatch.setattr(os, "listdir", refuse)
    with pytest.raises(data.DataError, match="angry: cannot read this folder .Permission denied"):
        data.load(str(root))


def test_someone_elses_checkpoint_dict_loads_its_network(tmp_path):
    net = model.build("cnn2")
    torch.save({"epoch": 3, "model_state_dict": net.state_dict(), "optimizer_state_dict": {}}, tmp_path / "x.pt")
    loaded, name = checkpoint.load_weights(str(tmp_path / "x.pt"))
    assert name == "cnn2"
    torch.save({"a": net.state_dict(), "b": net.state_dict()}, tmp_path / "two.pt")  # unpicked: say so
    with pytest.raises(checkpoint.WeightsError, match="keys \\['a', 'b'\\]"):
        checkpoint.load_weights(str(tmp_path / "two.pt"))


def test_confusing_inputs_are_one_line(tmp_path, weights):
    import os
    import train
    path = kaggle_csv(tmp_path / "twice.csv", ["Training"] * 7, header="emotion,Emotion,pixels")
    path.write_text(path.read_text().replace(f"{PIXELS},Training", f"0,{PIXELS}"))
    with pytest.raises(data.DataError, match="emotion appears twice"):
        data.load(str(path))
    headerless = tmp_path / "nohead.csv"
    headerless.write_text(f"0,{PIXELS},Training\n3,{PIXELS},Training\n")
    with pytest.raises(data.DataError, match="not a header") as e:
        data.load(str(headerless))
    assert len(str(e.value)) < 400  # not a whole row of pixels
    train.main(FAST + ["--epochs", "1", "--out", str(tmp_path / "run")])
    one_line(run_main("evaluate.py", "--weights", tmp_path / "run" / "checkpoint.pth", "--data", "synthetic"), 1,
             "a training checkpoint", "use model.pth")
    one_line(run_main("evaluate.py", "--weights", tmp_path / "run", "--data", "synthetic"), 1, "is a folder")
    os.mkfifo(tmp_path / "pipe")
    one_line(run_main("evaluate.py", "--weights", weights, "--data", tmp_path / "pipe"), 1, "not a file or folder")
    one_line(run_main("tools/explore.py", "--synthetic", tmp_path / "big.csv", "--n", "1000000000"), 2, "--n must be")
    one_line(run_main("bench.py", "--steps", "-1"), 2, "--steps must be a positive integer")
    one_line(run_main("bench.py", "--json", "/proc/bench.json"), 1, "/proc/bench.json", "cannot write")


def test_compile_without_a_compiler_is_one_line(monkeypatch):
    import shutil
    import train
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as e:
        train.parse_args(FAST + ["--compile"])[0]
    assert e.value.code == 2


def test_warnings_turned_into_errors_break_nothing(tmp_path, weights):
    """PYTHONWARNINGS=error (a common CI setting) makes every warning an exception: a file left unclosed, a
    deprecated call. A real process, since the setting acts at interpreter start."""
    import os
    import subprocess
    import sys
    from conftest import ROOT
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    r = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), "--weights", str(weights), "--data",
                        "synthetic", "--out", str(tmp_path), "--json", str(tmp_path / "m.json")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and (tmp_path / "m.json").exists(), r.stderr[-2000:]


def test_the_face_measurement_refuses_a_bad_count_in_one_line(tmp_path, weights):
    one_line(run_main("tools/measure_faces.py", "--weights", weights, "--data", "synthetic", "--scenes", "0"), 2,
             "--scenes must be 1 to 200")
    one_line(run_main("tools/measure_faces.py", "--weights", weights, "--data", "synthetic"), 2,
             "needs a validation split of at least 700 faces")


def test_every_command_in_the_readme_parses_with_its_scripts_flags(monkeypatch):
    """The README's commands run as written: every `python SCRIPT.py ...` line in its code blocks uses flags
    and values its script accepts (torchrun lines too)."""
    import importlib
    import os
    import shlex
    import cli
    from conftest import ROOT
    monkeypatch.chdir(ROOT)  # where the README's commands run: recipes/ is read from there
    readme = open(os.path.join(ROOT, "README.md")).read()
    blocks = readme.split("```")[1::2]
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split("  #")[0])
            script = next((w for w in words if w.endswith(".py") and not w.startswith("-")), None)
            if script and (words[0] in ("python", "torchrun")):
                commands.append((script, words[words.index(script) + 1:]))
    assert len(commands) >= 12
    for script, args in commands:
        if script.startswith("tools/"):
            continue
        parser = importlib.import_module(script[:-3].replace("/", ".")).make_parser()
        parser.error = lambda msg, script=script, args=args: pytest.fail(f"{script} {' '.join(args)}: {msg}")
        parsed = parser.parse_args(cli.read_recipes(parser, args))
        # the data goes where the README puts it: a command that names another path fails as written
        assert getattr(parsed, "data", "synthetic") in ("synthetic", "data/fer2013.csv"), (script, args)


def test_shipping_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    one_line(run_main("tools/ship.py", tmp_path / "nothing", tmp_path / "x", "--data", "synthetic"), 1,
             "nothing/model.pth: no such file")
    run = tmp_path / "run"
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", run)[0] == 0
    (run / "history.csv").unlink()
    one_line(run_main("tools/ship.py", run, tmp_path / "w" / "x", "--data", "synthetic"), 1,
             "run/history.csv: no such file")
    assert not (tmp_path / "w").exists()  # nothing half-shipped


def test_batchnorm_statistics_on_missing_weights_or_data_is_one_line(tmp_path):
    one_line(run_main("tools/bn_statistics.py", "--weights", tmp_path / "none.pth", "--data", "synthetic"), 1,
             "none.pth")
    checkpoint.save_weights(tmp_path / "t.pth", model.build("cnn3"), "cnn3")
    one_line(run_main("tools/bn_statistics.py", "--weights", tmp_path / "t.pth", "--data", tmp_path / "x.csv"), 2,
             "--data", "x.csv")
    one_line(run_main("train.py", "--data", "synthetic", "--interpolation", "cubic"), 2, "--interpolation",
             "cubic")


def test_a_recipe_that_cannot_be_read_is_one_line(tmp_path):
    one_line(run_main("train.py", f"@{tmp_path / 'nope.txt'}", *FAST), 2, "nope.txt: cannot read this recipe file")
    (tmp_path / "open.txt").write_text("--model 'resnet\n")
    one_line(run_main("train.py", f"@{tmp_path / 'open.txt'}", *FAST), 2, "open.txt: not a recipe file")
    (tmp_path / "typo.txt").write_text("# a recipe with a misspelt flag\n--epoch 3\n")
    one_line(run_main("train.py", f"@{tmp_path / 'typo.txt'}", *FAST), 2, "unrecognized arguments: --epoch 3")
