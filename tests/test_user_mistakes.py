"""The files and flags users really have: each ends in the right answer, or in one line naming the file, row or
flag with a non-zero exit. Never a traceback, never a silently wrong answer.

Scripts run in this process through their `__main__` block (runpy), exactly as `python SCRIPT ...` runs them,
without paying for a new interpreter and torch import per case."""
import errno
import gzip
import io
import lzma
import pickle
import struct
import zipfile
import zlib

import numpy as np
import pytest
import torch

import data
import model as models
from conftest import run_script

PIXELS = " ".join(["128"] * 2304)
FAST = ["--data", "synthetic", "--device", "cpu", "--model", "mlp", "--bs", "64", "--amp", "off"]


def run_main(script, *args):
    """`python SCRIPT ARGS`, in this process: (exit code, stdout, stderr)."""
    r = run_script(script, *args)
    return r.returncode, r.stdout, r.stderr


def one_line(result, code, *words):
    got_code, _, err = result
    lines = err.strip().splitlines()
    assert got_code == code, (got_code, err)
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]


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
    models.save_weights(path, models.build("mlp"), "mlp")
    return path


# ---------------------------------------------------------------------------------------------------------------
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
    assert code == 0 and "on test: accuracy" in out and "on 7 images" in out
    one_line(run_main("train.py", "--data", path, "--epochs", "1", "--out", tmp_path / "run"), 1,
             "test.csv", "no training images")
    code, out, err = run_main("data.py", path, "--out", tmp_path)
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
    got = data.read_image(str(tmp_path / "deep.png")).astype(int)
    assert np.abs(got - np.round(values / 257)).max() <= 1


def test_a_photo_stored_sideways_is_turned_upright_by_its_exif_tag(tmp_path):
    from PIL import Image
    upright = np.zeros((48, 48), np.uint8)
    upright[:12] = 255  # a white band at the top
    sideways = Image.fromarray(np.rot90(upright, 1).copy())  # stored turned left; tag 6: "turn right to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    got = data.read_image(str(tmp_path / "phone.jpg"))
    assert got[:12].mean() > 200 and got[20:].mean() < 50


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


def test_a_trailing_comma_on_every_row_still_reads(tmp_path):
    path = tmp_path / "commas.csv"
    path.write_text("emotion,pixels\n" + "".join(f"{k % 7},{PIXELS},\n" for k in range(20)))
    splits = data.load(str(path))
    assert sorted(torch.cat([splits["train"][1], splits["val"][1]]).tolist()) == sorted(k % 7 for k in range(20))


# ---------------------------------------------------------------------------------------------------------------
# Bad files: one line naming the file

def damaged_files(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (40, 2304))  # random pixels: no file compresses to nothing
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
    one_line(run_main("evaluate.py", "--weights", weights, "--images", tmp_path / name), 1, name, *words)


def test_too_few_training_images_names_the_file(tmp_path):
    path = kaggle_csv(tmp_path / "one.csv", ["Training"])
    one_line(run_main("train.py", "--data", path, "--epochs", "1", "--out", tmp_path / "r"), 1,
             "one.csv", "too few")


def test_weights_of_an_unknown_network_name_the_file(tmp_path):
    torch.save({"model": "alexnet", "state_dict": {}}, tmp_path / "alex.pth")
    one_line(run_main("evaluate.py", "--weights", tmp_path / "alex.pth", "--images", "x.png"), 1,
             "alex.pth", "unknown network 'alexnet'")


class Pickled:  # a weights file carrying code: refused by weights_only loading
    pass


def test_pickled_code_is_refused_without_terminal_colour_codes(tmp_path):
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"model": Pickled()}, f)
    torch.save({"x": Pickled()}, tmp_path / "evil2.pth")
    for name in ("evil.pth", "evil2.pth"):
        result = run_main("evaluate.py", "--weights", tmp_path / name, "--images", "x.png")
        one_line(result, 1, name, "not a usable weights file")
        assert "\x1b" not in result[2]


def test_a_bare_state_dict_of_one_of_our_networks_loads(tmp_path):
    net = models.build("cnn2")
    torch.save(net.state_dict(), tmp_path / "bare.pth")
    loaded, name = models.load_weights(str(tmp_path / "bare.pth"))
    assert name == "cnn2" and all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "ddp.pth")  # DDP's prefix
    assert models.load_weights(str(tmp_path / "ddp.pth"))[1] == "cnn2"
    torch.save({"w": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(models.WeightsError, match="other.pth: a bare state_dict that fits none"):
        models.load_weights(str(tmp_path / "other.pth"))


# ---------------------------------------------------------------------------------------------------------------
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
    code, out, err = run_main("data.py", "--synthetic", tmp_path / "new" / "faces.csv", "--n", "14")
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
             "checkpoint.pth: cannot write it (No space left on device)", "epochs 1-1 are saved")


# ---------------------------------------------------------------------------------------------------------------
# Flags: ranges that mean something

@pytest.mark.parametrize("flags,words", [
    (["--seed", "-1"], "--seed must be in [0, 2^32), got -1"),
    (["--opt", "sgd", "--momentum=-0.5"], "--momentum must be in [0, 1)"),
    (["--plateau-factor", "1"], "--plateau-factor must be in (0, 1), got 1.0"),
    (["--plateau-factor", "0"], "--plateau-factor must be in (0, 1), got 0.0"),
    (["--wd", "nan"], "--wd must be >= 0, got nan"),
    (["--degrees", "nan"], "--degrees must be in [0, 180], got nan"),
    (["--translate", "5"], "--translate must be a fraction of the size in [0, 0.5]"),
    (["--mixup", "nan"], "--mixup must be >= 0"),
    (["--scale", "0.8", "inf"], "--scale needs 0 < low <= high"),
    (["--bs", "9"], None),  # a plain run: any batch size
])
def test_flags_out_of_range_are_usage_errors(tmp_path, capsys, monkeypatch, flags, words):
    import train
    if words is None:
        assert train.parse_args(FAST + flags).bs == 9
        monkeypatch.setenv("WORLD_SIZE", "2")
        words = "--bs 9 is the global batch and must divide evenly over the 2 processes, e.g. --bs 8"
    with pytest.raises(SystemExit) as e:
        train.parse_args(FAST + flags)
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_sgd_without_momentum_is_plain_sgd():
    import train
    args = train.parse_args(FAST + ["--opt", "sgd", "--momentum", "0"])
    trainer = train.Trainer(args, data.load("synthetic", n_synthetic=70), torch.device("cpu"))
    group = trainer.opt.param_groups[0]
    assert group["momentum"] == 0 and group["nesterov"] is False


@pytest.mark.parametrize("script,flags,code,words", [
    ("gradcam.py", ["--layer", "head.1"], 2, ["--layer head.1", "not a spatial map", "try one of stage1.0"]),
    ("gradcam.py", ["--layer", "nope"], 2, ["--layer nope: no such module", "stage3.3"]),
    ("gradcam.py", ["--seed", "-1"], 2, ["--seed must be >= 0"]),
    ("gradcam.py", ["--device", "cuda"], 2, ["--device cuda, but PyTorch sees no CUDA GPU"]),
    ("data.py", ["--synthetic", "x.csv", "--seed", "-1"], 2, ["--seed must be >= 0"]),
])
def test_gradcam_and_data_flags(tmp_path, script, flags, code, words):
    if torch.cuda.is_available() and "cuda" in flags:
        pytest.skip("this machine has a GPU")
    models.save_weights(tmp_path / "r.pth", models.build("resnet"), "resnet")
    base = ["--weights", tmp_path / "r.pth", "--data", "synthetic", "--n", "2", "--out", tmp_path / "g.png"] \
        if script == "gradcam.py" else []
    one_line(run_main(script, *base, *flags), code, *words)


def test_a_wrong_layer_on_another_network_lists_its_own_blocks(tmp_path):
    models.save_weights(tmp_path / "v.pth", models.build("cnn3"), "cnn3")
    one_line(run_main("gradcam.py", "--weights", tmp_path / "v.pth", "--data", "synthetic", "--layer",
                      "stage3.3", "--out", tmp_path / "g.png"), 2, "features.2, features.7, features.12")


# ---------------------------------------------------------------------------------------------------------------
# Resume and interruptions

def test_resume_refuses_another_optimiser_or_schedule(tmp_path):
    run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoint.pth"
    one_line(run_main("train.py", "--resume", ckpt, "--opt", "sgd"), 2,
             "trains with --opt adam, not sgd", "--init")
    one_line(run_main("train.py", "--resume", ckpt, "--schedule", "cosine"), 2, "--schedule plateau")


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
    monkeypatch.setattr(data, "augment", interrupt)  # runpy runs a fresh train.py: patch the data module it uses
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
