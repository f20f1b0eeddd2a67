"""cli.py, through the scripts: outputs checked before the work and written whole, never over an input; every
flag shown with its default; every stop one line."""
import errno
import os

from conftest import FAST, PIXELS, SYNTHETIC, image_tree, kaggle_csv, one_line, run_here, run_main
import numpy as np
import pytest

import cli
import data
import evaluate


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_outputs_that_cannot_be_written_are_refused_before_the_work(tmp_path, mlp_file):
    (tmp_path / "file").write_text("x")
    one_line(run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "file"), 1,
             "file", "not a folder")
    one_line(run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "file" / "run"), 1,
             "file is a file, not a folder")
    one_line(run_main("train.py", *FAST, "--epochs", "1", "--out", "/proc/no-such-run"), 1,
             "/proc/no-such-run", "cannot write")
    one_line(run_main("gradcam.py", "--weights", mlp_file, "--data", SYNTHETIC, "--out",
                      tmp_path / "cam"), 2, "--out", "name an image file")
    one_line(run_main("evaluate.py", "--weights", mlp_file, "--data", SYNTHETIC, "--out", tmp_path / "figs",
                      "--json", tmp_path), 1, "is a folder")
    assert not (tmp_path / "figs").exists()  # refused before anything was written


def test_ctrl_c_while_the_data_loads_is_one_line(tmp_path, monkeypatch, mlp_file):
    monkeypatch.setattr(data, "load", interrupt)
    one_line(run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "run"), 1, "interrupted")
    one_line(run_main("evaluate.py", "--weights", mlp_file, "--data", SYNTHETIC, "--out", tmp_path), 1,
             "interrupted")


def test_nothing_is_written_beside_the_weights_or_into_the_current_folder(tmp_path, mlp_file, monkeypatch):
    import os
    folder = os.path.dirname(mlp_file)
    before = sorted(os.listdir(folder))
    monkeypatch.chdir(tmp_path)
    assert run_main("evaluate.py", "--weights", mlp_file, "--data", SYNTHETIC)[0] == 0
    assert run_main("tools/explore.py", SYNTHETIC)[0] == 0
    assert sorted(os.listdir(folder)) == before and os.listdir(tmp_path) == []
    one_line(run_main("gradcam.py", "--weights", mlp_file, "--data", SYNTHETIC), 2, "--out")


@pytest.mark.parametrize("script", ["train", "evaluate", "gradcam", "app.photos", "app.camera", "app.serve", "app.export",
                                    "tools.bench", "tools.explore"])
def test_help_shows_every_default_and_every_flag_has_help(script):
    import importlib
    parser = importlib.import_module(script).make_parser()
    assert all(a.help for a in parser._actions), [a.dest for a in parser._actions if not a.help]
    code, out, _ = run_main(f"{script.replace('.', '/')}.py", "-h")
    assert code == 0 and "(default:" in out
    if script == "train":
        assert "--epochs EPOCHS" in out and "(default: 350)" in out


def test_an_output_that_is_an_input_is_refused(tmp_path, mlp_file):
    from PIL import Image
    photo = tmp_path / "me.png"
    Image.fromarray(np.full((200, 200), 90, np.uint8)).save(photo)
    original = photo.read_bytes()
    one_line(run_main("app/photos.py", "--weights", mlp_file, "--images", photo, "--gradcam", photo), 1,
             "me.png", "is also an input")
    one_line(run_main("evaluate.py", "--weights", mlp_file, "--data", SYNTHETIC, "--json", mlp_file), 1,
             "is also an input")
    assert photo.read_bytes() == original


def test_outputs_never_land_on_each_other_nor_inside_the_data(tmp_path, mlp_file, faces):
    from PIL import Image
    photo = tmp_path / "me.png"
    Image.fromarray(np.full((200, 200), 90, np.uint8)).save(photo)
    one_line(run_main("app/photos.py", "--weights", mlp_file, "--images", photo, "--out", tmp_path / "o",
                      "--json", tmp_path / "o" / "me_faces.png"), 2, "--json", "where --out marks a photo")
    one_line(run_main("evaluate.py", "--weights", mlp_file, "--data", SYNTHETIC, "--out", tmp_path / "o",
                      "--json", tmp_path / "o" / "confusion_matrix.png"), 2, "--json", "where --out draws")
    root = image_tree(tmp_path / "tree", ("train", "test"), faces)
    for script, flags in (("evaluate.py", ["--weights", mlp_file, "--out", root / "test" / "happy"]),
                          ("train.py", [*FAST[2:], "--epochs", "1", "--out", root / "runs" / "a"])):
        one_line(run_main(script, "--data", root, *flags), 1, "inside the data folder", "read as faces")
    assert sorted(os.listdir(root)) == ["test", "train"]
    existing = tmp_path / "mine.csv"
    existing.write_text("emotion,pixels\n")
    one_line(run_main("tools/synthetic_faces.py", existing, "--n", "14"), 1, "mine.csv: already exists")
    assert existing.read_text() == "emotion,pixels\n"


def test_a_failed_write_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    cli.write_json(target, {"good": 1})
    good = target.read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli.os, "fsync", disk_full)  # what the writer buffered fails on its way to the disk
    with pytest.raises(cli.OutputError, match="m.json: cannot write it \\(No space left on device\\)"):
        cli.write_json(target, {"new": 2})
    assert target.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_confusing_inputs_are_one_line(tmp_path, mlp_file):
    import os

    import train
    path = kaggle_csv(tmp_path / "twice.csv", ["Training"] * 7, header="emotion,Emotion,pixels")
    path.write_text(path.read_text().replace(f"{PIXELS},Training", f"0,{PIXELS}"))
    with pytest.raises(cli.DataError, match="emotion appears twice"):
        data.load(str(path))
    headerless = tmp_path / "nohead.csv"
    headerless.write_text(f"0,{PIXELS},Training\n3,{PIXELS},Training\n")
    with pytest.raises(cli.DataError, match="not a header") as e:
        data.load(str(headerless))
    assert len(str(e.value)) < 400  # not a whole row of pixels
    train.main(FAST + ["--epochs", "1", "--out", str(tmp_path / "run")])
    one_line(run_main("evaluate.py", "--weights", tmp_path / "run" / "checkpoint.pth", "--data", SYNTHETIC), 1,
             "a training checkpoint", "use model.pth")
    one_line(run_main("evaluate.py", "--weights", tmp_path / "run", "--data", SYNTHETIC), 1, "is a folder")
    os.mkfifo(tmp_path / "pipe")
    one_line(run_main("evaluate.py", "--weights", mlp_file, "--data", tmp_path / "pipe"), 1, "not a file or folder")
    one_line(run_main("tools/synthetic_faces.py", tmp_path / "big.csv", "--n", "1000000000"), 2, "--n must be")
    one_line(run_main("tools/bench.py", "--steps", "-1"), 2, "--steps must be a positive integer")
    one_line(run_main("tools/bench.py", "--json", "/proc/bench.json"), 1, "/proc/bench.json", "cannot write")


def test_out_of_memory_anywhere_else_is_one_line(monkeypatch, mlp_file):
    def fail(*a, **k):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")

    monkeypatch.setattr(evaluate, "scores", fail)
    one_line(run_here(evaluate, "--weights", mlp_file, "--data", SYNTHETIC), 1, "evaluate.py: out of memory")
