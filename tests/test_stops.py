"""What any stop leaves behind: a signal, Ctrl-C at any moment, a killed process, running out of memory.
Every stop leaves a folder that `--resume` continues exactly or that the same command starts afresh, and says
which (docs/errors.md)."""
import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import train
import readers
import synthetic
from conftest import ROOT, one_line, run_here, run_main

FAST = ["--data", "synthetic", "--device", "cpu", "--model", "mlp", "--bs", "64", "--amp", "off"]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    """280 faces in a file: a training process of its own starts and runs an epoch in seconds."""
    images, labels = synthetic.synthetic_faces(280, seed=3)
    path = tmp_path_factory.mktemp("data") / "faces.csv"
    readers.write_csv(str(path), images, labels)
    return path


def start(*args):
    return subprocess.Popen([sys.executable, "train.py", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path, process, timeout=300):
    t0 = time.time()
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.2)


def leftovers(folder):
    """Files a stopped run must not leave: the lock, temporary files."""
    return [f for f in os.listdir(folder) if f == "training.lock" or ".tmp" in f]


def test_sigterm_is_ctrl_c_it_says_what_was_saved_and_the_run_resumes(tmp_path, small_csv):
    run = tmp_path / "run"
    p = start(*FAST, "--data", small_csv, "--epochs", "500", "--out", run)
    wait_for(run / "history.csv", p)  # an epoch is saved
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1, err
    assert "interrupted; epoch" in err and f"--resume {run / 'checkpoint.pth'}" in err, err
    assert "Traceback" not in err and not leftovers(run)
    epoch = torch.load(run / "checkpoint.pth", weights_only=True)["epoch"]
    code, out, err = run_main("train.py", "--resume", run / "checkpoint.pth", "--epochs", epoch + 1)
    assert code == 0 and f"resuming at epoch {epoch + 1} of {epoch + 1}" in out, err


def test_a_run_stopped_before_its_first_epoch_leaves_nothing_in_the_way(tmp_path, monkeypatch):
    run = tmp_path / "run"

    def stop(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(train.Trainer, "train_epoch", stop)
        one_line(run_here(train, *FAST, "--epochs", "2", "--out", run), 1, "nothing was saved")
    assert not run.exists()  # the folder was new: it is gone again
    run.mkdir()
    (run / "config.json").write_text("{}")  # what a run killed (SIGKILL) before its first epoch leaves
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", run)[0] == 0  # the same command starts afresh


def test_ctrl_c_after_the_last_epoch_the_resume_finishes_the_run(tmp_path, monkeypatch):
    run = tmp_path / "run"

    def stop(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(train, "finish", stop)  # the last epoch is saved, last.pth and the closing score are not
        one_line(run_here(train, *FAST, "--epochs", "2", "--out", run), 1, "epochs 1-2 are saved")
    assert not (run / "last.pth").exists()
    code, out, err = run_main("train.py", "--resume", run / "checkpoint.pth")
    assert code == 0, err
    assert "all 2 epochs are trained; finishing the run" in out and "accuracy" in out
    assert (run / "last.pth").exists() and not leftovers(run)
    one_line(run_main("train.py", "--resume", run / "checkpoint.pth"), 2, "has finished 2 epochs already")


def test_a_killed_runs_lock_is_no_claim_even_when_its_number_is_reused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # SIGKILL leaves training.lock behind, and the number in it may now be any live process (here this one)
    (run / "training.lock").write_text(str(os.getpid()))
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", run)[0] == 0
    assert not leftovers(run)


def test_a_live_training_keeps_its_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "training.lock", "w") as held:  # what a training does while it runs
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4321")
        held.flush()
        one_line(run_main("train.py", *FAST, "--epochs", "1", "--out", run), 1,
                 "another training (process 4321) is writing into it")


@pytest.mark.parametrize("error", [RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                                                "allocate 9437184000000 bytes"), MemoryError()],
                         ids=["torch", "python"])
def test_out_of_cpu_memory_is_one_line_naming_the_batch(tmp_path, monkeypatch, error):
    def fail(*a, **k):
        raise error

    monkeypatch.setattr(train.Trainer, "train_step", fail)
    one_line(run_here(train, *FAST, "--epochs", "1", "--out", tmp_path / "run"), 1,
             "out of CPU memory at --bs 64; try --bs 32")


def test_out_of_memory_anywhere_else_is_one_line(monkeypatch):
    import model

    def fail(*a, **k):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")

    monkeypatch.setattr(model, "layer_table", fail)
    one_line(run_here(model), 1, "model.py: out of memory")


def test_a_real_bug_still_shows_its_traceback(tmp_path, monkeypatch):
    def bug(*a, **k):
        raise RuntimeError("shapes do not match")

    monkeypatch.setattr(train.Trainer, "train_step", bug)
    with pytest.raises(RuntimeError, match="shapes do not match"):
        train.main(FAST + ["--epochs", "1", "--out", str(tmp_path / "run")])
