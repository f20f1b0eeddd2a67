"""evaluate.py: the figures, which split they are on and what they say about it, and its files."""
import json

from conftest import FAST, PIXELS, ROOT, SYNTHETIC, image_tree, kaggle_csv, one_line, run_main, run_script
import numpy as np
import pytest
import torch

import data
import evaluate
import weights


def write(path, text):
    path.write_text(text)
    return path


def test_test_rows_only_evaluate_and_refuse_to_train(tmp_path, mlp_file):
    path = kaggle_csv(tmp_path / "test.csv", ["PublicTest"] * 7 + ["PrivateTest"] * 7)
    splits = data.load(str(path))
    assert sorted(splits) == ["test", "val"]
    code, out, _ = run_main("evaluate.py", "--weights", mlp_file, "--data", path, "--out", tmp_path)
    assert code == 0 and "on test (PrivateTest): accuracy" in out and "on 7 images" in out
    one_line(run_main("train.py", "--data", path, "--epochs", "1", "--out", tmp_path / "run"), 1,
             "test.csv", "no training images")
    code, out, err = run_main("tools/explore.py", path, "--out", tmp_path)
    assert code == 0 and "wrote" in out, err


def test_a_folder_with_only_test_evaluates(tmp_path, faces, mlp_file):
    root = image_tree(tmp_path / "imgs", ("test",), faces)
    code, out, err = run_main("evaluate.py", "--weights", mlp_file, "--data", root, "--out", tmp_path)
    assert code == 0 and "on 14 images" in out, err


def test_every_output_line_names_the_kaggle_split(tmp_path, mlp_file):
    path = kaggle_csv(tmp_path / "fer2013.csv", ["Training"] * 70 + ["PublicTest"] * 14 + ["PrivateTest"] * 14)
    code, out, err = run_main("evaluate.py", "--weights", mlp_file, "--data", path)
    assert code == 0 and "on test (PrivateTest): accuracy" in out, err
    code, out, err = run_main("evaluate.py", "--weights", mlp_file, "--data", path, "--split", "val")
    assert code == 0 and "on val (PublicTest): accuracy" in out, err
    code, out, err = run_main("train.py", "--data", path, *FAST[2:], "--epochs", "1", "--out", tmp_path / "run")
    assert code == 0 and "validation on val (PublicTest)" in out, err


def test_a_folder_without_splits_is_scored_whole(tmp_path, faces, mlp_file, monkeypatch):
    from PIL import Image
    images, labels = faces
    for k in range(70):
        (tmp_path / "ck" / data.CLASSES[labels[k]]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[k]).save(tmp_path / "ck" / data.CLASSES[labels[k]] / f"{k}.png")
    (tmp_path / "ck" / "contempt").mkdir()
    Image.fromarray(images[0]).save(tmp_path / "ck" / "contempt" / "x.png")
    code, out, err = run_main("evaluate.py", "--weights", mlp_file, "--data", tmp_path / "ck")
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


def test_weights_trained_on_val_warn_when_scored_on_val(tmp_path):
    import train
    train.main(FAST + ["--epochs", "1", "--train-on-val", "--out", str(tmp_path / "run")])
    code, out, err = run_main("evaluate.py", "--weights", tmp_path / "run" / "model.pth", "--data", SYNTHETIC,
                              "--split", "val")
    assert code == 0 and "warning:" in out and "--train-on-val" in out, err
    code, out, _ = run_main("evaluate.py", "--weights", tmp_path / "run" / "model.pth", "--data", SYNTHETIC)
    assert "warning:" not in out  # test was held out
    train.main(FAST + ["--epochs", "1", "--out", str(tmp_path / "held")])  # an ensemble: only one trained on val
    code, out, _ = run_main("evaluate.py", "--weights", tmp_path / "run" / "model.pth", tmp_path / "held" / "model.pth",
                            "--data", SYNTHETIC, "--split", "val")
    warning = next(line for line in out.splitlines() if line.startswith("warning:"))
    assert str(tmp_path / "run" / "model.pth") in warning and str(tmp_path / "held") not in warning


def test_warnings_turned_into_errors_break_nothing(tmp_path, mlp_file):
    """PYTHONWARNINGS=error (a common CI setting) makes every warning an exception: a file left unclosed, a
    deprecated call. A real process, since the setting acts at interpreter start."""
    import os
    import subprocess
    import sys

    from conftest import ROOT
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    r = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), "--weights", str(mlp_file), "--data",
                        SYNTHETIC, "--out", str(tmp_path), "--json", str(tmp_path / "m.json")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and (tmp_path / "m.json").exists(), r.stderr[-2000:]


def test_evaluate_refuses_a_split_the_data_does_not_have(tmp_path):
    weights.save(tmp_path / "w.pth", weights.NETWORKS["resnet"](), "resnet")
    train_only = tmp_path / "train.csv"
    write(train_only, "emotion,pixels\n" + "\n".join(f"{k % 7},{PIXELS}" for k in range(30)) + "\n")
    one_line(run_script("evaluate.py", "--weights", tmp_path / "w.pth", "--data", train_only, "--split", "test"),
                   2, "--split test", "has no test split")


def test_evaluate_prints_metrics_and_writes_the_confusion_matrix_and_json(trained_file, tmp_path):
    r = run_script("evaluate.py", "--weights", trained_file, "--data", SYNTHETIC, "--out", tmp_path,
                   "--json", tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    assert "on test" in r.stdout and "precision" in r.stdout and "surprise" in r.stdout
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 10000
    m = json.loads((tmp_path / "m.json").read_text())
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == m["n"] == 300
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert set(m["per_class"]) == set(data.CLASSES) and m["split"] == "test"


def test_evaluate_takes_other_splits_and_writes_nothing_unasked(trained_file):
    r = run_script("evaluate.py", "--weights", trained_file, "--data", SYNTHETIC, "--split", "val")
    assert r.returncode == 0, r.stderr
    assert "on val" in r.stdout and not (trained_file.parent / "confusion_matrix.png").exists()


def test_evaluate_piped_into_head_stops_without_a_traceback(trained_file):
    import subprocess
    import sys
    cmd = f"'{sys.executable}' evaluate.py --weights '{trained_file}' --data '{SYNTHETIC}' | head -1"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=ROOT)
    assert "accuracy" in r.stdout and r.stdout.count("\n") == 1
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_metrics_match_a_hand_count():
    labels = torch.tensor([0, 0, 1, 3, 3, 3])
    probs = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 3, 3, 0]), 7).float()
    m = evaluate.scores(labels, probs)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["happy"]["recall"] == pytest.approx(2 / 3)
    assert m["per_class"]["angry"]["precision"] == pytest.approx(1 / 2)
    assert m["confusion_matrix"][3][0] == 1
