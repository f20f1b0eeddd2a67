"""tools/: synthetic faces, exploring a data set, shipping a run, the training queue, measuring face finders."""
import json
import os
import tarfile

from conftest import FAST, SYNTHETIC, one_line, run_main, run_script
import numpy as np
import pytest
import synthetic_faces
import torch

import data
import model
import weights

TINY = "--model mlp --bs 64 --amp off --device cpu"


def test_synthetic_faces_into_a_missing_folder_make_it(tmp_path):
    code, out, err = run_main("tools/synthetic_faces.py", tmp_path / "new" / "faces.csv", "--n", "14")
    assert code == 0 and (tmp_path / "new" / "faces.csv").is_file(), err


def test_shipping_checks_everything_before_writing_and_never_replaces_its_input(tmp_path):
    run = tmp_path / "run"
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", run)[0] == 0
    one_line(run_main("tools/ship.py", run, tmp_path / "w" / "x", "--data", tmp_path / "none.csv"), 2,
             "--data", "no such file")
    assert not (tmp_path / "w").exists()  # nothing half-shipped
    before = {f: (run / f).read_bytes() for f in os.listdir(run)}
    for dest in ("model", "checkpoint", "last"):  # no output lands on a file of the run it reads
        one_line(run_main("tools/ship.py", run, run / dest, "--data", SYNTHETIC, "--last"), 2,
                 "inside a run folder")
    assert {f: (run / f).read_bytes() for f in os.listdir(run)} == before
    os.makedirs(tmp_path / "ship")
    for folder in (f"{tmp_path / 'ship'}/", tmp_path / "ship"):  # a folder is not a name: no hidden ".pth"
        one_line(run_main("tools/ship.py", run, folder, "--data", SYNTHETIC), 2, "a folder; name the files")
    assert os.listdir(tmp_path / "ship") == []
    other = tmp_path / "other.csv"
    synthetic_faces.write_csv(str(other), *synthetic_faces.synthetic_faces(300, seed=7))
    one_line(run_main("tools/ship.py", run, tmp_path / "w" / "x", "--data", other), 2,
             "--data", "not the data", "trained on")
    assert not (tmp_path / "w").exists()


def test_synthetic_faces_are_compressed_as_the_name_says(tmp_path):
    import bz2
    assert run_main("tools/synthetic_faces.py", tmp_path / "x.csv.bz2", "--n", "14")[0] == 0
    assert bz2.decompress((tmp_path / "x.csv.bz2").read_bytes()).startswith(b"emotion,pixels,Usage")
    assert len(data.load(str(tmp_path / "x.csv.bz2"))["train"][1]) > 0


def test_the_face_measurement_refuses_a_bad_count_in_one_line(tmp_path, mlp_file):
    one_line(run_main("tools/measure_faces.py", "--weights", mlp_file, "--data", SYNTHETIC, "--scenes", "0"), 2,
             "--scenes must be 1 to 200")
    one_line(run_main("tools/measure_faces.py", "--weights", mlp_file, "--data", SYNTHETIC), 2,
             "needs a validation split of at least 700 faces")


def test_shipping_what_is_not_a_finished_run_is_one_line_and_writes_nothing(tmp_path):
    one_line(run_main("tools/ship.py", tmp_path / "nothing", tmp_path / "x", "--data", SYNTHETIC), 2,
             "nothing: not a finished run")
    run = tmp_path / "run"
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", run)[0] == 0
    (run / "last.pth").rename(tmp_path / "last.pth")  # a run still training has no last.pth yet
    one_line(run_main("tools/ship.py", run, tmp_path / "w" / "x", "--data", SYNTHETIC), 2, "not a finished run")
    (tmp_path / "last.pth").rename(run / "last.pth")
    for damage in ("history.csv", "config.json"):
        good = (run / damage).read_bytes()
        (run / damage).write_text("{nonsense")
        one_line(run_main("tools/ship.py", run, tmp_path / "w" / "x", "--data", SYNTHETIC), 1, "missing or damaged")
        (run / damage).write_bytes(good)
    other = tmp_path / "other"  # another run's folder: shipping there would replace its files
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", other)[0] == 0
    one_line(run_main("tools/ship.py", run, other / "x", "--data", SYNTHETIC), 2, "inside a run folder")
    assert not (tmp_path / "w").exists() and not (other / "x.pth").exists()  # nothing half-shipped


def test_shipping_a_run_writes_fp16_weights_with_its_command_history_and_evaluate_pys_score(tmp_path):
    run = tmp_path / "run"
    assert run_main("train.py", *FAST, "--epochs", "2", "--out", run)[0] == 0
    dest = tmp_path / "seeds" / "demo"
    code, stdout, err = run_main("tools/ship.py", run, dest, "--data", SYNTHETIC, "--last")
    assert code == 0, err
    blob = torch.load(f"{dest}.pth", weights_only=True)
    command = json.loads((run / "config.json").read_text())["command"]
    assert blob["trained"]["recipe"] == command and blob["trained"]["epoch"] == 2  # --last: the last epoch
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values() if v.is_floating_point())
    assert (tmp_path / "seeds" / "demo_command.txt").read_text() == command + "\n"
    assert (tmp_path / "seeds" / "demo_history.csv").read_text() == (run / "history.csv").read_text()
    score = json.loads((tmp_path / "seeds" / "demo_publictest.json").read_text())
    assert run_main("evaluate.py", "--weights", f"{dest}.pth", "--data", SYNTHETIC, "--split", "val", "--json",
                    tmp_path / "e.json")[0] == 0  # the figure shipped is evaluate.py's, in the same shape
    assert json.loads((tmp_path / "e.json").read_text()) == score
    assert sorted(os.listdir(tmp_path / "seeds")) == sorted(f"demo{s}" for s in (
        ".pth", "_command.txt", "_history.csv", "_publictest.json", "_curves.png", "_confusion_matrix.png"))


def test_shipping_a_run_that_trained_on_val_publishes_no_score_there(tmp_path):
    """Its validation faces were training faces: a figure on them would mean nothing, so none ships."""
    assert run_main("train.py", *FAST, "--epochs", "1", "--train-on-val", "--out", tmp_path / "run")[0] == 0
    code, stdout, err = run_main("tools/ship.py", tmp_path / "run", tmp_path / "w" / "final", "--data", SYNTHETIC)
    assert code == 0 and "trained on the val split too" in stdout, err
    assert sorted(os.listdir(tmp_path / "w")) == ["final.pth", "final_command.txt", "final_curves.png",
                                                  "final_history.csv"]


def test_synthetic_faces_are_deterministic_balanced_and_varied():
    draw = synthetic_faces.synthetic_faces
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
    x, y = synthetic_faces.synthetic_faces(1400, seed=0)
    flat = x.reshape(len(x), -1) / 255.0
    clf = LogisticRegression(max_iter=200).fit(flat[:1000], y[:1000])
    assert clf.score(flat[1000:], y[1000:]) > 0.5  # learnable (chance is 1/7)


def test_cli_writes_synthetic_kaggle_csv_that_loads_back(tmp_path):
    out = tmp_path / "syn.csv"
    r = run_script("tools/synthetic_faces.py", out, "--n", 200)
    assert r.returncode == 0, r.stderr
    splits = data.load(str(out))
    assert sum(len(v[1]) for v in splits.values()) == 200 and set(splits) == {"train", "val", "test"}
    x, y = synthetic_faces.synthetic_faces(200, seed=0)
    assert torch.equal(torch.sort(splits["train"][1]).values,
                       torch.sort(torch.from_numpy(y[synthetic_faces.synthetic_usage(200) == "Training"])).values)


def test_cli_explores_a_data_set(tmp_path):
    r = run_script("tools/explore.py", SYNTHETIC, "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "surprise" in r.stdout and "total" in r.stdout
    assert (tmp_path / "distribution.png").stat().st_size > 5000
    assert (tmp_path / "samples.png").stat().st_size > 5000


def test_a_queue_trains_its_runs_in_turn_and_packs_each_finished_one(tmp_path):
    code, out, err = run_main("tools/train_queue.py", "--data", SYNTHETIC, "--minutes", "10",
                              "--out", tmp_path / "runs", "--pack", tmp_path / "pack",
                              f"{TINY} --epochs 2", f"{TINY} --epochs 1 --schedule cosine --seed 1")
    assert code == 0, err
    assert out.count(": finished, packed as") == 2, out
    for name, kept, epoch in (("model_mlp_bs_64_amp_off_device_cpu_epochs_2", "model.pth", None),
                              ("model_mlp_bs_64_amp_off_device_cpu_epochs_1_schedule_cosine_seed_1", "last.pth", 1)):
        with tarfile.open(tmp_path / "pack" / f"{name}.tar") as tar:
            assert sorted(tar.getnames()) == sorted(["config.json", "history.csv", kept])
            tar.extractall(tmp_path / "unpacked" / name, filter="data")
        blob = torch.load(tmp_path / "unpacked" / name / kept, weights_only=True)
        assert all(v.dtype == torch.float16 for v in blob["state_dict"].values() if v.is_floating_point())
        net, _ = weights.load(tmp_path / "unpacked" / name / kept)
        assert epoch is None or net.trained["epoch"] == epoch
        assert json.load(open(tmp_path / "unpacked" / name / "config.json"))["model"] == "mlp"


def test_a_run_that_cannot_finish_by_the_deadline_is_stopped_resumably_and_the_queue_goes_on(tmp_path):
    code, out, err = run_main("tools/train_queue.py", "--data", SYNTHETIC, "--minutes", "0.4",
                              "--out", tmp_path, f"{TINY} --epochs 5000", f"{TINY} --epochs 1")
    assert code == 0, err
    long, short = "model_mlp_bs_64_amp_off_device_cpu_epochs_5000", "model_mlp_bs_64_amp_off_device_cpu_epochs_1"
    # stopped by its own epoch estimate, or (a slow machine) by the deadline before an epoch ended: either way
    # resumable, no lock left
    assert f"{long}: stopped:" in out and f"--resume {tmp_path / long / 'checkpoint.pth'}" in out
    assert not os.path.exists(tmp_path / long / "training.lock")
    assert any(f"{short}: {outcome}" in out for outcome in ("finished", "not started", "stopped:"))


def test_a_queue_refuses_an_out_folder_that_holds_a_run_before_training_anything(tmp_path):
    name = "model_mlp_bs_64_amp_off_device_cpu_epochs_1"
    os.makedirs(tmp_path / name)
    (tmp_path / name / "history.csv").write_text("epoch\n")
    one_line(run_main("tools/train_queue.py", "--data", SYNTHETIC, "--minutes", "1", "--out", tmp_path,
                      f"{TINY} --epochs 1"), 1, name, "already holds a run")
    assert os.listdir(tmp_path / name) == ["history.csv"]


def test_stopping_the_queue_stops_its_run_resumably(tmp_path):
    """kill (SIGTERM) on the queue: its train.py is stopped too, not left running past the deadline."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT
    p = subprocess.Popen([sys.executable, "tools/train_queue.py", "--data", SYNTHETIC, "--minutes", "30", "--out",
                          tmp_path, f"{TINY} --epochs 5000"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = tmp_path / "model_mlp_bs_64_amp_off_device_cpu_epochs_5000"
    t0 = time.time()
    while not (run / "training.lock").exists():
        assert p.poll() is None and time.time() - t0 < 300, p.communicate()
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    t0 = time.time()
    while (run / "training.lock").exists() and time.time() - t0 < 60:  # the run's own stop removes its lock
        time.sleep(0.2)
    assert not (run / "training.lock").exists()
    assert "interrupted" in (tmp_path / "model_mlp_bs_64_amp_off_device_cpu_epochs_5000.log").read_text()


def test_a_queue_file_is_its_entries_and_the_repositorys_queue_names_recipes_that_parse(tmp_path):
    """recipes/gpu_queue.txt is what a lent GPU trains first: every entry parses as train.py's flags."""
    import shlex

    from conftest import ROOT

    import train
    (tmp_path / "q.txt").write_text(f"# a comment\n{TINY} --epochs 1   # one epoch\n\n")
    code, out, err = run_main("tools/train_queue.py", "--data", SYNTHETIC, "--minutes", "10", "--out", tmp_path / "r",
                              "--queue", tmp_path / "q.txt")
    assert code == 0 and out.count(": finished") == 1, err
    one_line(run_main("tools/train_queue.py", "--data", SYNTHETIC, "--minutes", "1", "--out", tmp_path / "s"), 2,
             "nothing to train")
    one_line(run_main("tools/train_queue.py", "--data", SYNTHETIC, "--minutes", "1", "--out", tmp_path / "s",
                      "--queue", tmp_path / "none.txt"), 2, "--queue", "cannot read it")
    entries = [e.split("#")[0].strip() for e in open(os.path.join(ROOT, "recipes", "gpu_queue.txt"))]
    for entry in filter(None, entries):
        words = [w for a in shlex.split(entry) for w in (shlex.split(open(os.path.join(ROOT, a[1:])).read(),
                                                                    comments=True) if a.startswith("@") else [a])]
        assert train.make_parser().parse_args(words).model in ("vgg", "resnet"), entry


def test_the_curves_of_a_run_that_trained_on_val_give_no_best_val_figure(tmp_path, monkeypatch):
    """tools/curves.py: its val line is labelled as training faces and the title names no best val accuracy,
    which would read as a result; a plain run's title gives its best. A folder without a run is one line."""
    import curves
    import matplotlib.pyplot as plt
    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figures open to read them
    history = [{"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 0.4, "val_acc": v, "lr": 1e-3,
                "seconds": 1.0} for e, v in ((1, 0.8), (2, 0.9))]
    curves.plot_curves(tmp_path, history, trained_on_val=True)
    curves.plot_curves(tmp_path, history)
    on_val, plain = (f.axes[1] for f in figures)
    assert "best" not in on_val.get_title() and "trained on too" in on_val.get_title()
    assert "best val 90.00% @ 2" in plain.get_title()
    for f in figures:
        close(f)
    one_line(run_main("tools/curves.py", tmp_path / "nothing"), 1, "nothing", "no readable history.csv")


def test_a_temperature_is_fitted_by_the_fixed_protocol_and_every_answer_applies_it(tmp_path, mlp_file):
    """tools/calibrate.py: the temperature of least cross-entropy, written beside the file; weights.py reads it and
    prediction divides the logits by it."""
    import shutil

    import calibrate
    torch.manual_seed(0)
    logits = 2 * torch.randn(20000, 7)
    labels = torch.multinomial(torch.softmax(logits, 1), 1)[:, 0]  # drawn as the softmax says: calibrated at T = 1
    assert calibrate.fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.05)
    assert calibrate.fit_temperature(logits * 2, labels) == pytest.approx(2.0, abs=0.1)  # overconfident by 2
    assert calibrate.ece(torch.softmax(logits * 2, 1), labels) > calibrate.ece(torch.softmax(logits, 1), labels)
    assert calibrate.protocol(logits * 2, labels)["temperature"] == pytest.approx(2.0, abs=0.1)
    assert calibrate.protocol(logits, labels)["temperature"] == 1.0  # fitting did not lower the odd half's ECE
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    fig, ax = plt.subplots()
    calibrate.reliability(ax, logits[:4], labels[:4], "o-", "tiny")  # no bin of five faces: nothing to draw
    calibrate.reliability(ax, logits, labels, "s--", "many")
    tiny, many = ax.get_lines()
    assert (tiny.get_label(), len(tiny.get_xdata())) == ("tiny", 0) and len(many.get_xdata()) > 5
    plt.close(fig)
    shutil.copy(mlp_file, tmp_path / "m.pth")
    code, out, err = run_main("tools/calibrate.py", "--weights", tmp_path / "m.pth", "--data", SYNTHETIC, "--figure",
                              tmp_path / "r.png")
    assert code == 0 and "ECE on the odd half" in out and os.path.getsize(tmp_path / "r.png") > 0, err
    record = json.loads((tmp_path / "m_calibration.json").read_text())
    assert record["temperature"] > 0 and record["tta_temperature"] > 0 and "protocol" in record
    assert {"ece_before", "ece_after", "half_temperature"} <= set(record["figures"]["tta"])
    net = weights.load(tmp_path / "m.pth")[0]
    assert net.temperature == record["temperature"]
    faces = torch.from_numpy(synthetic_faces.synthetic_faces(10, seed=5)[0])
    with torch.no_grad():
        expected = torch.softmax(net(data.normalize(faces[:, None])) / record["temperature"], 1)
    assert torch.allclose(model.predict_proba([net], faces, "cpu"), expected, atol=1e-6)
    (tmp_path / "m_calibration.json").write_text("{oops")
    one_line(run_main("evaluate.py", "--weights", tmp_path / "m.pth", "--data", SYNTHETIC), 1,
             "m_calibration.json: not a calibration file")
    assert run_main("train.py", *FAST, "--epochs", "1", "--train-on-val", "--out", tmp_path / "tov")[0] == 0
    one_line(run_main("tools/calibrate.py", "--weights", tmp_path / "tov" / "model.pth", "--data", SYNTHETIC), 1,
             "trained on the val split too")


def test_the_tta_answer_and_an_ensemble_get_a_temperature_of_their_own(tmp_path, mlp_file, trained_file):
    """An average of views or networks is less sure than it is right: --ensemble fits the files' averaged answer's
    temperatures, plain and TTA, each member's file keeps them under the ensemble's name, and weights.load_nets
    applies them for exactly those files, in any order, wherever they are."""
    import shutil

    import calibrate
    for source, name in ((trained_file, "r.pth"), (mlp_file, "m.pth")):
        shutil.copy(source, tmp_path / name)
    one_line(run_main("tools/calibrate.py", "--weights", tmp_path / "r.pth", "--ensemble", "--data", SYNTHETIC), 2,
             "--ensemble: give two or more")
    code, out, err = run_main("tools/calibrate.py", "--weights", tmp_path / "r.pth", tmp_path / "m.pth", "--ensemble",
                              "--data", SYNTHETIC)
    assert code == 0 and "m.pth + r.pth: plain T" in out, err
    records = [json.loads((tmp_path / f"{n}_calibration.json").read_text()) for n in ("r", "m")]
    assert records[0]["ensembles"] == records[1]["ensembles"] and list(records[0]["ensembles"]) == ["m.pth + r.pth"]
    pair = records[0]["ensembles"]["m.pth + r.pth"]
    faces = torch.from_numpy(synthetic_faces.synthetic_faces(10, seed=5)[0])
    net = weights.load_nets([tmp_path / "r.pth"], "cpu")
    assert (net.temperature, net.tta_temperature) == (1.0, records[0]["tta_temperature"])  # one file: its own T only
    with torch.no_grad():
        views = torch.stack([torch.softmax(net[0](v) / records[0]["temperature"], 1) for v in
                             model.tta_views(data.normalize(faces[:, None]).float(), net[0].trained["interpolation"])])
    expected = torch.softmax(views.mean(0).log() / records[0]["tta_temperature"], 1)
    assert torch.allclose(model.predict_proba(net, faces, "cpu", tta=True), expected, atol=1e-5)
    shutil.copytree(tmp_path, tmp_path / "elsewhere", ignore=shutil.ignore_patterns("elsewhere"))
    for paths in ([tmp_path / "r.pth", tmp_path / "m.pth"], [tmp_path / "elsewhere" / "m.pth", tmp_path / "r.pth"]):
        nets = weights.load_nets(paths, "cpu")
        assert (nets.temperature, nets.tta_temperature) == (pair["temperature"], pair["tta_temperature"])
        with torch.no_grad():
            x = data.normalize(faces[:, None]).float()
            average = sum(torch.softmax(n(x) / n.temperature, 1) for n in nets) / 2
        assert torch.allclose(model.predict_proba(nets, faces, "cpu"),
                              torch.softmax(average.log() / pair["temperature"], 1), atol=1e-5)
    shutil.copy(tmp_path / "m.pth", tmp_path / "other.pth")
    assert weights.load_nets([tmp_path / "r.pth", tmp_path / "other.pth"], "cpu").temperature == 1.0  # not fitted
    one_line(run_main("tools/calibrate.py", "--weights", tmp_path / "m.pth", tmp_path / "elsewhere" / "m.pth",
                      "--ensemble", "--data", SYNTHETIC), 2, "two files of one name")
    (tmp_path / "other_calibration.json").write_text('{"temperature": 1, "ensembles": ["m.pth + r.pth"]}')
    one_line(run_main("evaluate.py", "--weights", tmp_path / "other.pth", "--data", SYNTHETIC), 1,
             "other_calibration.json: not a calibration file")
    assert pair["figures"]["tta"]["ece_before"] >= 0 and calibrate.PROTOCOL == records[1]["protocol"]


def test_explore_never_writes_its_figures_inside_the_data_folder(tmp_path, faces):
    from conftest import image_tree
    root = image_tree(tmp_path / "tree", ("train",), faces)
    one_line(run_main("tools/explore.py", root, "--out", root / "figs"), 1, "inside the data folder")
    assert sorted(os.listdir(root)) == ["train"]
