"""train.py end to end on synthetic faces: it learns, writes every output, resumes exactly, stops cleanly."""
import csv
import functools
import json
import math
import os
import runpy

import pytest
import torch

import checkpoint
import cli
import data
import model
import readers
import run_folder
import synthetic
import train
from conftest import QUICK, ROOT, one_line, run_main, run_script

# The loop's own behaviour (resume, moving average, interruptions) does not depend on the network: the MLP
# runs it in seconds where the ResNet takes minutes on two cores.
LOOP = QUICK + ["--model", "mlp"]


def history(out):
    with open(os.path.join(out, "history.csv")) as f:
        return list(csv.DictReader(f))


def test_training_beats_chance_clearly(trained):
    out, r = trained
    rows = history(out)
    assert len(rows) == 4
    assert max(float(row["val_acc"]) for row in rows) > 0.35  # chance is 1/7 = 0.14
    assert "test accuracy" in r.stdout


def test_the_closing_figure_is_the_one_evaluate_py_gives(trained):
    """The same weights read the same figure everywhere: train.py scores model.pth as evaluate.py does."""
    import re
    out, r = trained
    closing = re.search(r"test accuracy (\d+\.\d+)%", r.stdout).group(1)
    e = run_script("evaluate.py", "--weights", out / "model.pth", "--data", "synthetic")
    assert e.returncode == 0 and f"accuracy {closing}%" in e.stdout, (closing, e.stdout)


def test_a_run_writes_every_output(trained):
    out, r = trained
    for name in ("model.pth", "last.pth", "checkpoint.pth", "history.csv", "curves.png", "config.json"):
        assert os.path.getsize(out / name) > 0, name
    assert list(history(out)[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    config = json.loads((out / "config.json").read_text())
    assert config["bs"] == 32 and config["lr"] == 3e-4 and config["model"] == "resnet"
    assert r.stdout.count("| val loss") == 4  # one line per epoch


def test_model_pth_holds_the_best_validation_loss_weights(trained):
    out, _ = trained
    rows = history(out)
    best = min(rows, key=lambda row: float(row["val_loss"]))
    blob = torch.load(out / "model.pth", weights_only=True)
    assert blob["model"] == "resnet" and blob["classes"][3] == "happy"
    assert blob["format"] == 2 and blob["trained"]["epoch"] == int(best["epoch"])


def test_last_pth_holds_the_last_epochs_weights(trained):
    out, _ = trained
    last = torch.load(out / "last.pth", weights_only=True)
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert last["model"] == "resnet" and last["trained"]["epoch"] == ckpt["epoch"] == 4
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in last["state_dict"].items())


def test_init_starts_from_the_given_weights_with_a_fresh_optimiser(trained):
    """--init fine-tunes: the network (and its moving average) start as the file's weights, Adam starts empty."""
    out, _ = trained
    args = train.parse_args(QUICK + ["--init", str(out / "model.pth"), "--ema", "0.99"])[0]
    trainer = train.Trainer(args, data.load("synthetic"), torch.device("cpu"))
    saved = torch.load(out / "model.pth", weights_only=True)["state_dict"]
    for net in (trainer.net, trainer.ema_net):
        assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
    assert trainer.opt.state_dict()["state"] == {}
    fresh = train.Trainer(train.parse_args(QUICK)[0], data.load("synthetic"), torch.device("cpu"))
    assert not torch.equal(fresh.net.state_dict()["head.4.weight"], saved["head.4.weight"])


def test_init_refuses_weights_of_another_network_in_one_line(tmp_path):
    checkpoint.save_weights(tmp_path / "cnn2.pth", model.build("cnn2"), "cnn2")
    for weights, message in [(tmp_path / "cnn2.pth", "holds a 'cnn2' network, not 'resnet'"),
                             (tmp_path / "none.pth", "no such file")]:
        r = run_script("train.py", *QUICK, "--epochs", "1", "--init", weights, "--out", tmp_path / "run")
        assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_reports_recipe_is_the_default():
    args = train.make_parser().parse_args([])
    assert (args.epochs, args.bs, args.lr, args.model, args.sampler) == (350, 256, 1e-4, "resnet", "weighted")
    assert (args.flip, args.degrees, args.translate, tuple(args.scale)) == (0.5, 8.0, 0.2, (0.8, 1.2))
    assert args.amp == "auto" and args.data == "data/fer2013.csv"
    # the report's learning-rate curve and its torchvision warps, as docs/differences.md reads them
    assert (args.schedule, args.plateau_on, args.interpolation) == ("plateau", "train-loss", "nearest")


def test_auto_precision_is_bf16_only_where_it_is_native(monkeypatch):
    """bf16 emulated on a CPU without AVX512-BF16 or AMX ran 2.4x slower than fp32 (docs/performance.md)."""
    cpu = torch.device("cpu")
    for avx512_bf16, amx, expected in ((False, False, "off"), (True, False, "bf16"), (False, True, "bf16")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        assert cli.fast_amp(cpu) == expected
        assert train.parse_args(QUICK)[0].amp == expected  # config.json records the precision that ran
    assert train.parse_args(QUICK + ["--amp", "bf16"])[0].amp == "bf16"


@pytest.mark.parametrize("extra", [["--model", "mlp"], ["--ema", "0.99", "--erase", "0.5"]],
                         ids=["plain", "ema+erase"])  # the second on the ResNet: BatchNorm buffers too
def test_resume_continues_exactly(tmp_path, monkeypatch, extra):
    """--epochs 2 in one go == --epochs 1, then --resume to 2 (every column but the wall-clock seconds)."""
    # Exactness does not need many faces: 600 make the ResNet's four epochs cheap on a slow machine.
    monkeypatch.setattr(data, "load", functools.partial(data.load, n_synthetic=600))
    base = QUICK + ["--seed", "5"] + extra
    assert train.main(base + ["--epochs", "2", "--out", str(tmp_path / "straight")]) is None
    assert train.main(base + ["--epochs", "1", "--out", str(tmp_path / "split")]) is None
    train.main(["--resume", str(tmp_path / "split" / "checkpoint.pth"), "--epochs", "2"])
    a, b = history(tmp_path / "straight"), history(tmp_path / "split")
    for row in a + b:
        del row["seconds"]
    assert a == b
    wa = torch.load(tmp_path / "straight" / "checkpoint.pth", weights_only=True)["model"]
    wb = torch.load(tmp_path / "split" / "checkpoint.pth", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ma = torch.load(tmp_path / "straight" / "model.pth", weights_only=True)["state_dict"]
    mb = torch.load(tmp_path / "split" / "model.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_with_ema_the_saved_weights_are_the_average(tmp_path):
    train.main(LOOP + ["--epochs", "1", "--ema", "0.9", "--out", str(tmp_path)])
    ckpt = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    for name in ("model.pth", "last.pth"):
        saved = torch.load(tmp_path / name, weights_only=True)["state_dict"]
        assert all(torch.equal(saved[k], ckpt["ema"][k]) for k in saved)
        assert not all(torch.equal(saved[k], ckpt["model"][k]) for k in saved)


def test_early_stop_ends_the_run_and_notes_when_the_plateau_cut_cannot_come(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "validate", lambda *a, **k: (1.0, 0.5))  # never better after epoch 1
    train.main(LOOP + ["--epochs", "10", "--early-stop", "2", "--plateau-on", "val-loss", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert [int(row["epoch"]) for row in history(tmp_path)] == [1, 2, 3]
    assert "early stop: no better validation loss since epoch 1" in out
    assert "note: --early-stop 2 ends the run before --plateau-patience 10 can lower the learning rate" in out


def test_the_early_stop_note_is_said_once_not_on_each_resume(tmp_path, capsys):
    train.main(LOOP + ["--epochs", "1", "--early-stop", "2", "--plateau-on", "val-loss", "--out", str(tmp_path)])
    assert "note: --early-stop 2" in capsys.readouterr().out
    train.main(["--resume", str(tmp_path / "checkpoint.pth"), "--epochs", "2"])
    assert "note: --early-stop" not in capsys.readouterr().out
    assert [int(row["epoch"]) for row in history(tmp_path)] == [1, 2]


def test_an_early_stop_beside_a_training_loss_plateau_draws_no_note(tmp_path, capsys):
    """The default plateau watches the training loss, which the early stop does not: its cut may come first."""
    train.main(LOOP + ["--epochs", "1", "--early-stop", "2", "--out", str(tmp_path)])
    assert "note: --early-stop" not in capsys.readouterr().out


def test_a_patience_under_the_early_stop_draws_no_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "validate", lambda *a, **k: (1.0, 0.5))
    train.main(LOOP + ["--epochs", "10", "--early-stop", "3", "--plateau-patience", "1", "--plateau-on", "val-loss",
                       "--out", str(tmp_path)])
    assert "note: --early-stop" not in capsys.readouterr().out
    lrs = [float(row["lr"]) for row in history(tmp_path)]
    assert lrs[0] == 3e-4 and lrs[-1] < lrs[0]  # the cut came before the stop


def test_train_on_val_trains_on_both_and_keeps_the_last_epoch(tmp_path, capsys):
    train.main(LOOP + ["--epochs", "2", "--train-on-val", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "'train': 2700" in out  # synthetic: 2,400 train + 300 validation faces
    assert "last epoch's weights (epoch 2, trained on val too)" in out
    assert torch.load(tmp_path / "model.pth", weights_only=True)["trained"]["epoch"] == 2


def test_resume_refuses_other_data_or_another_model(tmp_path, capsys):
    out = tmp_path / "run"
    train.main(LOOP + ["--epochs", "1", "--out", str(out)])
    other = tmp_path / "other.csv"
    assert run_script("tools/explore.py", "--synthetic", other, "--n", 300).returncode == 0
    r = run_script("train.py", "--resume", out / "checkpoint.pth", "--data", other, "--epochs", "2")
    assert r.returncode == 1 and "trained on other data" in r.stderr and "Traceback" not in r.stderr
    r = run_script("train.py", "--resume", out / "model.pth", "--epochs", "2")
    assert r.returncode == 1 and "not a checkpoint.pth" in r.stderr


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    train.main(LOOP + ["--epochs", "1", "--out", str(out)])
    good = (out / "checkpoint.pth").read_bytes()
    real_step = train.Trainer.train_step

    def nan_step(self, x, y, *soft):
        loss, correct = real_step(self, x, y, *soft)
        return loss * float("nan"), correct

    monkeypatch.setattr(train.Trainer, "train_step", nan_step)
    with pytest.raises(SystemExit, match="loss became nan in epoch 2"):
        train.main(["--resume", str(out / "checkpoint.pth"), "--epochs", "3"])
    assert (out / "checkpoint.pth").read_bytes() == good
    assert len(history(out)) == 1


def test_ctrl_c_keeps_the_finished_epochs_and_prints_the_resume_command(tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = {"n": 0}
    real_epoch = train.Trainer.train_epoch

    def interrupted_in_epoch_2(self, desc):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_epoch(self, desc)

    monkeypatch.setattr(train.Trainer, "train_epoch", interrupted_in_epoch_2)
    with pytest.raises(SystemExit, match=r"epoch 1 is saved .* python train.py --resume .*checkpoint.pth"):
        train.main(LOOP + ["--epochs", "3", "--out", str(out)])
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ckpt["epoch"] == 1 and len(history(out)) == 1


def test_resume_refuses_another_model(tmp_path):
    out = tmp_path / "run"
    train.main(LOOP + ["--epochs", "1", "--out", str(out)])
    r = run_script("train.py", "--resume", out / "checkpoint.pth", "--model", "cnn3")
    assert r.returncode == 2 and "the checkpoint trains with --model mlp, not cnn3" in r.stderr


def test_a_run_started_under_the_old_head_flag_resumes_as_it_was(tmp_path):
    """--head softmax is now --double-softmax; a checkpoint whose config says head: softmax resumes with the
    report's Softmax, and one that says head: logits without it."""
    out = tmp_path / "run"
    train.main(LOOP + ["--epochs", "1", "--double-softmax", "--out", str(out)])
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    for head, double in (("softmax", True), ("logits", False)):
        config = {k: v for k, v in ckpt["config"].items() if k != "double_softmax"}
        torch.save({**ckpt, "config": {**config, "head": head}}, out / "checkpoint.pth")
        args = train.parse_args(["--resume", str(out / "checkpoint.pth"), "--epochs", "2"])[0]
        assert args.double_softmax is double and not hasattr(args, "head")


def test_a_run_started_before_the_defaults_changed_resumes_as_it_ran(tmp_path):
    """Bilinear warps and a validation-loss plateau were the defaults before 2026-12-04, and checkpoints from
    before the --interpolation and --plateau-on flags do not name them: such a run resumes as it ran."""
    out = tmp_path / "run"
    train.main(LOOP + ["--epochs", "1", "--out", str(out)])
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    resumed = train.parse_args(["--resume", str(out / "checkpoint.pth"), "--epochs", "2"])[0]
    assert (resumed.interpolation, resumed.plateau_on) == ("nearest", "train-loss")
    config = {k: v for k, v in ckpt["config"].items() if k not in ("interpolation", "plateau_on")}
    torch.save({**ckpt, "config": config}, out / "checkpoint.pth")
    resumed = train.parse_args(["--resume", str(out / "checkpoint.pth"), "--epochs", "2"])[0]
    assert (resumed.interpolation, resumed.plateau_on) == ("bilinear", "val-loss")


def test_a_run_that_used_a_deleted_flag_is_refused_and_one_that_left_it_off_resumes(tmp_path):
    """--mixup and --cutmix were measured, lowered accuracy and were deleted (docs/results.md). A checkpoint
    whose run mixed cannot go on as it was; one that recorded them off resumes, without them."""
    out = tmp_path / "run"
    train.main(LOOP + ["--epochs", "1", "--out", str(out)])
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    torch.save({**ckpt, "config": {**ckpt["config"], "mixup": 0.0, "cutmix": 0.0}}, out / "checkpoint.pth")
    resumed = train.parse_args(["--resume", str(out / "checkpoint.pth"), "--epochs", "2"])[0]
    assert not hasattr(resumed, "mixup") and not hasattr(resumed, "cutmix")
    torch.save({**ckpt, "config": {**ckpt["config"], "mixup": 0.2}}, out / "checkpoint.pth")
    one_line(run_script("train.py", "--resume", out / "checkpoint.pth", "--epochs", "2"), 1,
             "checkpoint.pth: the run trains with --mixup", "no longer has")


def test_out_of_gpu_memory_names_a_smaller_batch(tmp_path, monkeypatch):
    def oom(self, desc):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(train.Trainer, "train_epoch", oom)
    with pytest.raises(SystemExit, match="out of GPU memory at --bs 32; try --bs 16"):
        train.main(LOOP + ["--epochs", "1", "--out", str(tmp_path)])


def test_the_weighted_order_is_weighted_random_samplers_own_draw():
    """The epoch order is the report's WeightedRandomSampler over 1 / class count, drawn from the run's own
    generator (which a checkpoint saves): the same indices as a sampler seeded alike, epoch after epoch."""
    args = train.parse_args(QUICK)[0]
    trainer = train.Trainer(args, data.load("synthetic"), torch.device("cpu"))
    sampler = torch.utils.data.WeightedRandomSampler(trainer.sample_weights, len(trainer.train_y),
                                                     generator=torch.Generator().manual_seed(args.seed))
    expected = iter(sampler)
    for _ in range(2):  # two epochs: the generator advances alike
        assert trainer.epoch_order().tolist() == [next(expected) for _ in range(len(trainer.train_y))]
        expected = iter(sampler)


def test_double_softmax_puts_a_softmax_before_the_cross_entropy():
    """--double-softmax is the report's Softmax + CrossEntropyLoss: its loss cannot fall below log(1 + 6/e) =
    1.169 even for a perfectly sure, right answer, which is what squashes the gradients."""
    import torch.nn.functional as F
    args = train.parse_args(QUICK + ["--double-softmax"])[0]
    trainer = train.Trainer(args, data.load("synthetic"), torch.device("cpu"))
    logits, y = torch.randn(5, 7), torch.tensor([0, 1, 2, 3, 4])
    assert torch.allclose(trainer.loss(logits, y), F.cross_entropy(F.softmax(logits, 1), y))
    sure = torch.full((1, 7), -50.0).index_fill_(1, torch.tensor([3]), 50.0)
    assert trainer.loss(sure, torch.tensor([3])).item() == pytest.approx(math.log(1 + 6 / math.e), abs=1e-4)
    assert train.make_parser().parse_args([]).double_softmax is False  # the default stays logits


def test_shipping_a_run_writes_fp16_weights_with_its_command_history_and_score(trained, tmp_path):
    out, _ = trained
    dest = tmp_path / "seeds" / "demo"
    code, stdout, err = run_main("tools/ship.py", out, dest, "--data", "synthetic", "--last")
    assert code == 0, err
    blob = torch.load(f"{dest}.pth", weights_only=True)
    command = json.loads((out / "config.json").read_text())["command"]
    assert blob["trained"]["recipe"] == command and blob["trained"]["epoch"] == 4  # --last: the last epoch
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values() if v.is_floating_point())
    assert (tmp_path / "seeds" / "demo_command.txt").read_text() == command + "\n"
    assert (tmp_path / "seeds" / "demo_history.csv").read_text() == (out / "history.csv").read_text()
    score = json.loads((tmp_path / "seeds" / "demo_publictest.json").read_text())
    assert 0 <= score["accuracy"] <= 1 and score["n"] > 0
    assert run_main("evaluate.py", "--weights", f"{dest}.pth", "--data", "synthetic", "--split", "val", "--json",
                    tmp_path / "e.json")[0] == 0  # the figure shipped is evaluate.py's, in the same shape
    assert json.loads((tmp_path / "e.json").read_text()) == score
    for name in ("curves.png", "confusion_matrix.png"):
        assert (tmp_path / "seeds" / f"demo_{name}").stat().st_size > 0
    assert sorted(os.listdir(tmp_path / "seeds")) == sorted(  # and nothing else, no temporary left
        f"demo{s}" for s in (".pth", "_command.txt", "_history.csv", "_publictest.json", "_curves.png",
                             "_confusion_matrix.png"))


def test_shipping_a_run_that_trained_on_val_publishes_no_score_there(tmp_path):
    """Its validation faces were training faces: a figure on them would mean nothing, so none ships."""
    train.main(LOOP + ["--epochs", "1", "--train-on-val", "--out", str(tmp_path / "run")])
    code, stdout, err = run_main("tools/ship.py", tmp_path / "run", tmp_path / "w" / "final", "--data", "synthetic")
    assert code == 0, err
    assert "trained on the val split too" in stdout
    assert sorted(os.listdir(tmp_path / "w")) == ["final.pth", "final_command.txt", "final_curves.png",
                                                  "final_history.csv"]


def test_the_curves_of_a_run_that_trained_on_val_give_no_best_val_figure(tmp_path, monkeypatch):
    """Its val line is labelled as training faces, and the title names no best val accuracy, which would read
    as a result; a plain run's title still gives its best."""
    import matplotlib.pyplot as plt
    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figures open to read them
    history = [{"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 0.4, "val_acc": v, "lr": 1e-3,
                "seconds": 1.0} for e, v in ((1, 0.8), (2, 0.9))]
    run_folder.plot_curves(tmp_path, history, trained_on_val=True)
    run_folder.plot_curves(tmp_path, history)
    (on_val, plain) = (f.axes[1] for f in figures)
    assert "best" not in on_val.get_title() and "training faces" in on_val.get_title()
    assert [t.get_text() for t in on_val.get_legend().get_texts()] == ["train", "val (trained on too)"]
    assert plain.get_title() == "Accuracy (best val 90.00% @ 2)"
    for f in figures:
        close(f)


def test_distilling_a_teacher_that_repeats_the_labels_changes_nothing(tmp_path):
    """With one-hot probabilities the teacher's cross-entropy is the labels': the run is the plain run."""
    splits = data.load("synthetic")
    blob = {s: {"id": data.fingerprint(*splits[s]), "probs": torch.nn.functional.one_hot(splits[s][1], 7).half()}
            for s in ("train", "val")}
    torch.save(blob, tmp_path / "labels.pt")
    plain = LOOP + ["--epochs", "2", "--amp", "off"]
    assert train.main(plain + ["--out", str(tmp_path / "a")]) is None
    assert train.main(plain + ["--teacher", str(tmp_path / "labels.pt"), "--teacher-weight", "0.7", "--out",
                               str(tmp_path / "b")]) is None
    for a, b in zip(history(tmp_path / "a"), history(tmp_path / "b")):
        assert math.isclose(float(a["train_loss"]), float(b["train_loss"]), rel_tol=1e-5)
        assert a["val_acc"] == b["val_acc"]


def test_recomputed_batchnorm_statistics_are_the_average_over_the_given_faces(tmp_path):
    """tools/bn_statistics.py: the stem's BatchNorm ends with the mean of its input over every batch, the
    network in eval mode; the script scores the shipped and the three recomputed statistics, writing nothing."""
    bn_statistics = runpy.run_path(os.path.join(ROOT, "tools", "bn_statistics.py"))
    net = model.build("resnet").eval()
    batches = [torch.randn(8, 1, 48, 48, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    bn_statistics["recompute_statistics"](net, batches)
    with torch.no_grad():
        expected = torch.cat([net.stem[0](x) for x in batches]).mean((0, 2, 3))
    assert torch.allclose(net.stem[1].running_mean, expected, atol=1e-5)
    assert not net.training and not net.stem[1].training
    checkpoint.save_weights(tmp_path / "t.pth", model.build("cnn3"), "cnn3")
    r = run_script("tools/bn_statistics.py", "--weights", tmp_path / "t.pth", "--data", "synthetic")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("%") == 4 and "warped nearest" in r.stdout and "unwarped" in r.stdout
    assert sorted(os.listdir(tmp_path)) == ["t.pth"]


def test_a_teacher_file_is_made_once_and_refused_for_other_faces(tmp_path):
    checkpoint.save_weights(tmp_path / "t.pth", model.build("mlp"), "mlp")
    r = run_script("tools/teacher.py", "--weights", tmp_path / "t.pth", "--data", "synthetic", "--tta", "--out",
                   tmp_path / "teacher.pt")
    assert r.returncode == 0, r.stderr
    blob = torch.load(tmp_path / "teacher.pt", weights_only=True)
    splits = data.load("synthetic")
    assert blob["train"]["probs"].shape == (len(splits["train"][1]), 7) and blob["tta"] is True
    assert train.main(LOOP + ["--epochs", "1", "--teacher", str(tmp_path / "teacher.pt"), "--out",
                              str(tmp_path / "run")]) is None
    readers.write_csv(str(tmp_path / "other.csv"), *synthetic.synthetic_faces(300, seed=7))
    r = run_script("train.py", *LOOP[2:], "--data", tmp_path / "other.csv", "--epochs", "1", "--teacher",
                   tmp_path / "teacher.pt", "--out", tmp_path / "r2")
    assert r.returncode == 1 and "other train faces than --data gives" in r.stderr
    r = run_script("train.py", *LOOP, "--epochs", "1", "--teacher-weight", "0.3", "--out", tmp_path / "r3")
    assert r.returncode == 2 and "add --teacher PROBS" in r.stderr
