"""What train.py promises: it learns; one step of its device-resident loop is the report's per-sample DataLoader
step; it writes every output of a run; resume continues bit for bit; every stop (Ctrl-C, SIGTERM, a diverged
loss, no memory, a killed process) ends in one line saying what is saved; every flag mistake is one line."""
import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import time

from conftest import FAST, QUICK, ROOT, SYNTHETIC, image_tree, one_line, run_here, run_main, run_script
import pandas as pd
import pytest
import synthetic_faces
import torch

import augment
import cli
import data
import model
import train
import weights

# The loop's own behaviour (resume, moving average, interruptions) does not depend on the network: the MLP
# runs it in seconds where the ResNet takes minutes on two cores.
LOOP = QUICK + ["--model", "mlp"]
import errno


def history(out):
    return pd.read_csv(os.path.join(out, "history.csv")).to_dict("records")


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    """600 faces in a file: the ResNet's epochs are cheap and a process of its own starts in seconds."""
    path = tmp_path_factory.mktemp("data") / "faces.csv"
    synthetic_faces.write_csv(path, *synthetic_faces.synthetic_faces(600, seed=3), synthetic_faces.synthetic_usage(600))
    return path


# ------------------------------------------------------------------------------------------------------------
# A run and what it writes

def test_training_beats_chance_clearly(trained):
    out, r = trained
    assert len(history(out)) == 4
    assert max(row["val_acc"] for row in history(out)) > 0.35  # chance is 1/7 = 0.14
    assert "model.pth: epoch" in r.stdout and "last.pth: epoch 4" in r.stdout


def test_a_run_writes_every_output(trained):
    out, r = trained
    for name in ("model.pth", "last.pth", "checkpoint.pth", "history.csv", "config.json"):
        assert os.path.getsize(out / name) > 0, name
    assert run_main("tools/curves.py", out, "--out", out / "figs")[0] == 0  # its Figure 8, drawn from history.csv
    assert os.path.getsize(out / "figs" / "curves.png") > 10000
    assert list(history(out)[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    config = json.loads((out / "config.json").read_text())
    assert config["bs"] == 32 and config["lr"] == 3e-4 and config["model"] == "resnet"
    assert r.stdout.count("| val loss") == 4 and not os.path.exists(out / "training.lock")


def test_model_pth_holds_the_best_validation_loss_weights_and_last_pth_the_last(trained):
    out, _ = trained
    best = min(history(out), key=lambda row: row["val_loss"])
    blob = torch.load(out / "model.pth", weights_only=True)
    assert blob["model"] == "resnet" and blob["classes"][3] == "happy"
    assert blob["format"] == 2 and blob["trained"]["epoch"] == best["epoch"]
    last, ckpt = (torch.load(out / f, weights_only=True) for f in ("last.pth", "checkpoint.pth"))
    assert last["trained"]["epoch"] == ckpt["epoch"] == 4
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in last["state_dict"].items())


def test_the_reports_recipe_is_the_default():
    args = train.make_parser().parse_args([])
    assert (args.epochs, args.bs, args.lr, args.model, args.sampler, args.opt) == (350, 256, 1e-4, "resnet", "weighted",
                                                                                  "adam")
    assert (args.flip, args.degrees, args.translate, tuple(args.scale)) == (0.5, 8.0, 0.2, (0.8, 1.2))
    assert (args.schedule, args.plateau_on, args.interpolation) == ("plateau", "train-loss", "nearest")
    assert args.amp == "auto" and args.data == "data/fer2013.csv"


def test_auto_precision_is_bf16_only_where_it_is_native(monkeypatch):
    """bf16 emulated on a CPU without AVX512-BF16 or AMX ran 2.4x slower than fp32 (docs/performance.md)."""
    for avx512_bf16, amx, expected in ((False, False, "off"), (True, False, "bf16"), (False, True, "bf16")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        assert cli.fast_amp(torch.device("cpu")) == expected
        assert train.parse_args(QUICK)[0].amp == expected  # config.json records the precision that ran
    assert train.parse_args(QUICK + ["--amp", "bf16"])[0].amp == "bf16"


# ------------------------------------------------------------------------------------------------------------
# The step

def one_face_per_step_data(path, n=16):
    """n training faces (one batch at --bs n) and 14 validation faces."""
    images, labels = synthetic_faces.synthetic_faces(n + 14, seed=4)
    synthetic_faces.write_csv(path, images, labels, ["Training"] * n + ["PublicTest"] * 14)
    return torch.from_numpy(images[:n]), torch.from_numpy(labels[:n])


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_one_step_is_the_per_sample_dataloader_step_of_the_report(tmp_path, amp):
    """The device path (the sampler's draw, gather a uint8 batch, warp it, normalise, Adam) against the report's
    way: WeightedRandomSampler + FERDataset per sample through a DataLoader, each face warped alone with the
    same draws, the same initial network and dropout masks."""
    images, labels = one_face_per_step_data(tmp_path / "d.csv")
    train.main(["--data", str(tmp_path / "d.csv"), "--device", "cpu", "--bs", "16", "--opt", "sgd", "--momentum", "0",
                "--lr", "0.1", "--amp", amp, "--epochs", "1", "--seed", "7", "--out", str(tmp_path / "run")])
    torch.manual_seed(7)
    reference = model.ResNet().to(memory_format=torch.channels_last)
    dropout = torch.get_rng_state()  # the DataLoader draws from the global generator: the masks must not move
    sampler = torch.utils.data.WeightedRandomSampler(data.class_weights(labels), 16,
                                                     generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(8)
    thetas = augment.random_affine(lambda *s: torch.rand(*s, generator=g), 16, 0.5, 8.0, 0.2, (0.8, 1.2))
    loader = torch.utils.data.DataLoader(data.FERDataset(images, labels), batch_size=1, sampler=sampler)
    xs, ys = [], []
    for k, (x, y) in enumerate(loader):
        xs.append(data.normalize(augment.warp(x * data.STD + data.MEAN, thetas[k:k + 1], "nearest")))
        ys.append(y)
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    torch.set_rng_state(dropout)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
        loss = torch.nn.functional.cross_entropy(reference(torch.cat(xs).contiguous(
            memory_format=torch.channels_last)).float(), torch.cat(ys))
    loss.backward()
    opt.step()
    assert math.isclose(history(tmp_path / "run")[0]["train_loss"], loss.item(), rel_tol=1e-5 if amp == "off" else 2e-2)
    stepped = torch.load(tmp_path / "run" / "last.pth", weights_only=True)["state_dict"]
    for k, v in reference.state_dict().items():
        assert torch.allclose(stepped[k].float(), v.float(), atol=1e-5 if amp == "off" else 1e-2), k


def test_the_warp_resamples_as_the_interpolation_flag_says(tmp_path, monkeypatch):
    seen, warp = [], augment.warp
    monkeypatch.setattr(augment, "warp", lambda x, theta, interpolation: seen.append(interpolation) or
                        warp(x, theta, interpolation))
    one_face_per_step_data(tmp_path / "d.csv")
    for interpolation in ("nearest", "bilinear"):
        train.main(["--data", str(tmp_path / "d.csv"), *FAST[2:], "--bs", "16", "--epochs", "1", "--interpolation",
                    interpolation, "--out", str(tmp_path / interpolation)])
    assert seen == ["nearest", "bilinear"]


def test_the_ema_is_the_exponential_average_of_the_weights_with_a_warming_up_decay():
    net = model.ResNet()
    ema = train.EMA(net, 0.5)
    for n in range(1, 13):
        before = {k: v.clone() for k, v in ema.net.state_dict().items()}
        with torch.no_grad():
            for v in net.state_dict().values():
                v.add_(1) if v.is_floating_point() else v.add_(1)
        ema.update()
        decay = min(0.5, (1 + n) / (10 + n))  # warms up to the --ema decay: 0.18, 0.25, ..., 0.5 from n = 8
        for k, e in ema.net.state_dict().items():
            if e.is_floating_point():
                assert torch.allclose(e, decay * before[k] + (1 - decay) * net.state_dict()[k], atol=1e-6), (n, k)
            else:
                assert torch.equal(e, net.state_dict()[k]), k  # BatchNorm's batch counter follows the network


def test_with_ema_the_saved_weights_are_the_average(tmp_path):
    train.main(LOOP + ["--epochs", "1", "--ema", "0.9", "--out", str(tmp_path)])
    ckpt = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    for name in ("model.pth", "last.pth"):
        saved = torch.load(tmp_path / name, weights_only=True)["state_dict"]
        assert all(torch.equal(saved[k], ckpt["ema"][k]) for k in saved)
        assert not all(torch.equal(saved[k], ckpt["model"][k]) for k in saved)


def test_double_softmax_puts_a_softmax_before_the_cross_entropy():
    logits, y = torch.randn(5, 7), torch.randint(0, 7, (5,))
    assert torch.allclose(train.cross_entropy(logits, y, double_softmax=True),
                          torch.nn.functional.cross_entropy(logits.softmax(1), y))
    assert torch.allclose(train.cross_entropy(logits, y), torch.nn.functional.cross_entropy(logits, y))


def test_sgd_without_momentum_is_plain_sgd_and_inverse_time_decays_every_step(tmp_path):
    """Report 002/004's Keras SGD: no momentum, lr / (1 + decay x step) after every step."""
    train.main(FAST + ["--opt", "sgd", "--momentum", "0", "--lr", "0.01", "--schedule", "inverse-time", "--decay",
                       "0.1", "--epochs", "2", "--out", str(tmp_path)])
    ckpt = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    group = ckpt["optimizer"]["param_groups"][0]
    assert group["momentum"] == 0 and group["nesterov"] is False
    steps = 2400 // 64  # each epoch's row holds the rate its last step reached
    assert [row["lr"] for row in history(tmp_path)] == pytest.approx([0.01 / (1 + 0.1 * n * steps) for n in (1, 2)], rel=1e-5)


def test_init_starts_from_the_given_weights(trained, tmp_path):
    out, _ = trained
    train.main(QUICK + ["--init", str(out / "model.pth"), "--lr", "1e-12", "--epochs", "1", "--out", str(tmp_path)])
    start, after = (torch.load(p, weights_only=True)["state_dict"] for p in (out / "model.pth", tmp_path / "last.pth"))
    assert all(torch.allclose(after[k], v, atol=1e-6) for k, v in start.items() if k in dict(model.ResNet().named_parameters()))


def test_early_stop_ends_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "validate", lambda *a, **k: (1.0, 0.5))  # never better after epoch 1
    train.main(LOOP + ["--epochs", "10", "--early-stop", "2", "--plateau-on", "val-loss", "--out", str(tmp_path)])
    assert [row["epoch"] for row in history(tmp_path)] == [1, 2, 3]
    assert "early stop: no better validation loss since epoch 1" in capsys.readouterr().out


def test_train_on_val_trains_on_both_and_keeps_the_last_epoch(tmp_path, capsys):
    train.main(LOOP + ["--epochs", "2", "--train-on-val", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "'train': 2700" in out and "trained on too" in out  # 2,400 train + 300 validation faces
    assert torch.load(tmp_path / "model.pth", weights_only=True)["trained"]["epoch"] == 2


# ------------------------------------------------------------------------------------------------------------
# Resume

@pytest.mark.parametrize("extra", [["--model", "mlp"], ["--ema", "0.99", "--erase", "0.5"]],
                         ids=["plain", "ema+erase"])  # the second on the ResNet: BatchNorm buffers too
def test_resume_continues_exactly(tmp_path, small_csv, extra):
    """--epochs 2 in one go == --epochs 1, then --resume to 2 (every column but the wall-clock seconds)."""
    base = QUICK + ["--data", str(small_csv), "--seed", "5"] + extra
    train.main(base + ["--epochs", "2", "--out", str(tmp_path / "straight")])
    train.main(base + ["--epochs", "1", "--out", str(tmp_path / "split")])
    train.main(["--resume", str(tmp_path / "split" / "checkpoint.pth"), "--epochs", "2"])
    a, b = (pd.read_csv(tmp_path / f / "history.csv").drop(columns="seconds") for f in ("straight", "split"))
    assert a.equals(b)
    for f, key in (("checkpoint.pth", "model"), ("model.pth", "state_dict"), ("last.pth", "state_dict")):
        wa, wb = (torch.load(tmp_path / run / f, weights_only=True)[key] for run in ("straight", "split"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f


def test_resume_goes_on_as_the_run_began_and_refuses_other_faces(tmp_path, small_csv):
    run = tmp_path / "run"
    run_main("train.py", *FAST, "--epochs", "1", "--out", run)
    ckpt = run / "checkpoint.pth"
    one_line(run_main("train.py", "--resume", ckpt, "--opt", "sgd"), 2, "only --epochs, --data, --device and --amp",
             "--init")
    one_line(run_main("train.py", "--resume", ckpt, "--epochs", "2", "--data", small_csv), 1,
             "other faces than --data")
    one_line(run_main("train.py", "--resume", run / "model.pth", "--epochs", "2"), 1, "not a checkpoint.pth")
    code, out, err = run_main("train.py", "--resume", run, "--epochs", "2")  # the folder means its checkpoint
    assert code == 0 and "resuming at epoch 2" in out, err
    one_line(run_main("train.py", "--resume", ckpt, "--epochs", "2"), 2, "has finished 2 epochs")


def test_a_gpu_checkpoint_resumes_on_the_cpu(tmp_path):
    run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pth"
    ckpt = torch.load(path, weights_only=True)
    ckpt["device"] = "cuda"  # what a CUDA run saves: a 16-byte Philox state, not the CPU generator's 5 kB
    ckpt["rng"]["augment_ranks"] = [torch.zeros(16, dtype=torch.uint8)]
    torch.save(ckpt, path)
    code, out, err = run_main("train.py", "--resume", path, "--epochs", "2")
    assert code == 0 and "augmentation draws go on from a fresh seed" in out and "epoch    2" in out, err


@pytest.mark.parametrize("change", [{"optimizer": {}}, {"model": {"x": torch.ones(1)}}, {"rng": {}}, {"epoch": "1"}])
def test_an_altered_checkpoint_is_one_line(tmp_path, change):
    run_main("train.py", *FAST, "--epochs", "1", "--out", tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pth"
    torch.save({**torch.load(path, weights_only=True), **change}, path)
    one_line(run_main("train.py", "--resume", path, "--epochs", "2"), 1, "checkpoint.pth", "not a checkpoint.pth")


# ------------------------------------------------------------------------------------------------------------
# Stops: each ends in one line saying what is saved and how to resume

def throw(error):
    raise error


def fail_in_epoch(n, error):
    """A validate that raises `error` in epoch n (the loop calls it once an epoch)."""
    calls, real = {"n": 0}, train.validate

    def validate(*a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            raise error
        return real(*a, **k)
    return validate


def test_ctrl_c_keeps_the_finished_epochs_and_prints_the_resume_command(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "validate", fail_in_epoch(2, KeyboardInterrupt))
    one_line(run_here(train, *LOOP, "--epochs", "3", "--out", tmp_path), 1, "interrupted; 1 epoch saved",
             f"python train.py --resume {tmp_path / 'checkpoint.pth'}")
    assert torch.load(tmp_path / "checkpoint.pth", weights_only=True)["epoch"] == 1 and len(history(tmp_path)) == 1


def test_a_run_stopped_before_its_first_epoch_leaves_nothing_in_the_way(tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setattr(train, "validate", fail_in_epoch(1, KeyboardInterrupt))
    one_line(run_here(train, *FAST, "--epochs", "2", "--out", run), 1, "interrupted; no epoch was finished")
    assert not run.exists()  # the folder was new: it is gone again
    monkeypatch.undo()
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", run)[0] == 0  # the same command starts afresh


def test_ctrl_c_after_the_last_epoch_the_resume_finishes_the_run(tmp_path, monkeypatch):
    real = train.save_weights
    monkeypatch.setattr(train, "save_weights", lambda args, net, name, *a: throw(KeyboardInterrupt)
                        if name == "last.pth" else real(args, net, name, *a))
    one_line(run_here(train, *FAST, "--epochs", "2", "--out", tmp_path), 1, "2 epochs saved")
    monkeypatch.undo()
    code, out, err = run_main("train.py", "--resume", tmp_path / "checkpoint.pth")
    assert code == 0 and "last.pth: epoch 2" in out and (tmp_path / "last.pth").exists(), err
    one_line(run_main("train.py", "--resume", tmp_path / "checkpoint.pth"), 2, "has finished 2 epochs")


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    train.main(LOOP + ["--epochs", "1", "--out", str(tmp_path)])
    good = (tmp_path / "checkpoint.pth").read_bytes()
    monkeypatch.setattr(augment, "augment", lambda x, *a: x * float("nan"))
    one_line(run_here(train, "--resume", tmp_path / "checkpoint.pth", "--epochs", "3"), 1,
             "loss became nan in epoch 2", "1 epoch saved", "--lr")
    assert (tmp_path / "checkpoint.pth").read_bytes() == good and len(history(tmp_path)) == 1


@pytest.mark.parametrize("error", [RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                                                "9437184000000 bytes"), MemoryError(),
                                   torch.cuda.OutOfMemoryError("CUDA out of memory")], ids=["torch", "python", "gpu"])
def test_out_of_memory_is_one_line_naming_a_smaller_batch(tmp_path, monkeypatch, error):
    monkeypatch.setattr(augment, "augment", lambda *a: throw(error))
    one_line(run_here(train, *FAST, "--epochs", "1", "--out", tmp_path / "run"), 1,
             "out of memory at --bs 64 (try --bs 32)")


def test_a_real_bug_still_shows_its_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(augment, "augment", lambda *a: throw(RuntimeError("shapes do not match")))
    with pytest.raises(RuntimeError, match="shapes do not match"):
        train.main(FAST + ["--epochs", "1", "--out", str(tmp_path / "run")])


def test_sigterm_is_ctrl_c_it_says_what_was_saved_and_the_run_resumes(tmp_path, small_csv):
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "train.py", *FAST, "--data", small_csv, "--epochs", "500", "--out", run],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (run / "checkpoint.pth").exists():
        assert p.poll() is None and time.time() - t0 < 300, p.communicate()
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 1 and "interrupted; " in err and " saved in " in err and "Traceback" not in err, err
    assert not [f for f in os.listdir(run) if f == "training.lock" or ".tmp" in f]
    epoch = torch.load(run / "checkpoint.pth", weights_only=True)["epoch"]
    code, out, err = run_main("train.py", "--resume", run / "checkpoint.pth", "--epochs", epoch + 1)
    assert code == 0 and f"resuming at epoch {epoch + 1}" in out, err


def test_the_files_a_checkpoint_names_are_never_older_than_it(tmp_path, monkeypatch):
    """A stop between the files of an epoch: model.pth and history.csv are written before checkpoint.pth."""
    monkeypatch.setattr(train, "save_checkpoint", lambda *a: throw(KeyboardInterrupt))
    run_here(train, *FAST, "--epochs", "2", "--out", tmp_path)
    assert (tmp_path / "model.pth").exists() and len(history(tmp_path)) == 1
    assert not (tmp_path / "checkpoint.pth").exists()


# ------------------------------------------------------------------------------------------------------------
# The run folder and the flags

def test_a_run_folder_is_never_shared_or_overwritten(tmp_path):
    run = tmp_path / "run"
    run_main("train.py", *FAST, "--epochs", "1", "--out", run)
    one_line(run_main("train.py", *FAST, "--model", "cnn2", "--epochs", "1", "--out", run), 2, "already holds a run",
             "--resume")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')  # a user's own file is never replaced
    one_line(run_main("train.py", *FAST, "--epochs", "1", "--out", mine), 2, "already holds a run (config.json)")
    live = tmp_path / "live"
    live.mkdir()
    with open(live / "training.lock", "w") as held:  # what a training does while it runs
        fcntl.flock(held, fcntl.LOCK_EX)
        one_line(run_main("train.py", *FAST, "--epochs", "1", "--out", live), 1, "another training is writing")
    # a killed run's lock file (SIGKILL leaves it) is no claim
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", live)[0] == 0


@pytest.mark.parametrize("flags,words", [
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--opt", "sgd", "--momentum=-0.5"], "--momentum must be in [0, 1)"),
    (["--wd", "nan"], "--wd must be >= 0, got nan"),
    (["--degrees", "nan"], "--degrees must be >= 0, got nan"),
    (["--scale", "0.8", "inf"], "--scale must be a positive number, got inf"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    (["--momentum", "0.5"], "--momentum needs --opt sgd"),
    (["--schedule", "cosine", "--plateau-patience", "3"], "--plateau-patience needs --schedule plateau"),
    (["--warmup", "2"], "--warmup needs --schedule cosine"),
    (["--init", "a.pth", "--resume", "b.pth"], "only --epochs, --data, --device and --amp"),
    (["@no-such-recipe.txt"], "@no-such-recipe.txt: cannot read this recipe file"),
])
def test_flag_mistakes_are_one_line_usage_errors(capsys, flags, words):
    with pytest.raises(SystemExit) as e:
        train.parse_args(FAST + flags)
    err = capsys.readouterr().err
    assert e.value.code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_a_missing_data_file_says_where_to_get_fer2013(tmp_path):
    one_line(run_main("train.py", "--data", tmp_path / "fer2013.csv", "--epochs", "1", "--out", tmp_path / "r"), 1,
             "fer2013.csv: no such file", "kaggle.com")
    assert not (tmp_path / "r").exists()


def test_a_recipe_is_its_flags_and_later_flags_win(tmp_path):
    (tmp_path / "r.txt").write_text("# a comment\n--model mlp --bs 64   # the batch\n--seed 3\n")
    args = train.parse_args(["@" + str(tmp_path / "r.txt"), "--seed", "4", "--data", SYNTHETIC])[0]
    assert (args.model, args.bs, args.seed) == ("mlp", 64, 4)
    assert args.command == f"python train.py @{tmp_path / 'r.txt'} --seed 4 --data {SYNTHETIC}"
    (tmp_path / "bad.txt").write_text('--model "mlp\n')
    with pytest.raises(SystemExit):
        train.parse_args(["@" + str(tmp_path / "bad.txt")])


def test_init_refuses_weights_of_another_network_in_one_line(tmp_path):
    weights.save(tmp_path / "cnn2.pth", weights.NETWORKS["cnn2"](), "cnn2")
    one_line(run_script("train.py", *QUICK, "--epochs", "1", "--init", tmp_path / "cnn2.pth", "--out", tmp_path / "r"),
             1, "holds a 'cnn2' network, not 'resnet'")
    one_line(run_script("train.py", *QUICK, "--epochs", "1", "--init", tmp_path / "no.pth", "--out", tmp_path / "r"),
             1, "no such file")


def test_data_that_cannot_be_trained_on_is_one_line(tmp_path):
    images, labels = synthetic_faces.synthetic_faces(28, seed=1)
    synthetic_faces.write_csv(tmp_path / "test.csv", images, labels, ["PrivateTest"] * 28)
    one_line(run_main("train.py", "--data", tmp_path / "test.csv", *FAST[2:], "--epochs", "1", "--out",
                      tmp_path / "r"), 1, "no training images", "evaluate.py")
    assert not (tmp_path / "r").exists()


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
             "checkpoint.pth: cannot write it (No space left on device)", "1 epoch saved")


def test_a_non_finite_loss_in_the_first_epoch_points_at_no_checkpoint(tmp_path):
    one_line(run_main("train.py", *FAST, "--lr", "1e30", "--opt", "sgd", "--epochs", "2", "--out",
                      tmp_path / "run"), 1, "training loss became", "no epoch was finished")


def test_a_folder_with_only_train_and_train_on_val_says_val_was_trained_on(tmp_path, faces, capsys):
    import train
    root = image_tree(tmp_path / "tree", ("train",), faces)
    train.main(FAST[2:] + ["--data", str(root), "--epochs", "1", "--train-on-val", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert "trained on too" in out and "held out by train.py" not in out
