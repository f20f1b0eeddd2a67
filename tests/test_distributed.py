"""torchrun: N processes train one network as one process would (gloo on the CPU here, NCCL on GPUs)."""
import csv
import os
import subprocess
import sys

import pytest
import torch

import distributed
import train
from conftest import ROOT

# No augmentation, no BatchNorm, no dropout (the MLP), fp32, SGD (Adam divides by the root of tiny second
# moments, which magnifies rounding): a 2-process step is then the 1-process step, so the two runs can be
# compared number for number; what differs is only the order of float additions.
PLAIN = ["--data", "synthetic", "--device", "cpu", "--model", "mlp", "--amp", "off", "--bs", "64",
         "--flip", "0", "--degrees", "0", "--translate", "0", "--scale", "1", "1", "--opt", "sgd", "--lr", "0.02"]


def torchrun(nproc, *args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           os.path.join(ROOT, "train.py"), *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def history(out):
    with open(os.path.join(out, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        del row["seconds"]
    return rows


@pytest.mark.parametrize("world", [1, 2, 4])
def test_the_ranks_batches_together_are_the_one_process_batch(world):
    order = torch.randperm(1000)
    bs = 40
    for step in range(1000 // bs):
        pieces = [distributed.rank_batch(order, step, bs, rank, world) for rank in range(world)]
        assert all(len(p) == bs // world for p in pieces)
        assert torch.equal(torch.cat(pieces), order[step * bs:(step + 1) * bs])


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Two epochs under torchrun with two processes: (output folder, the finished process)."""
    out = tmp_path_factory.mktemp("two")
    r = torchrun(2, *PLAIN, "--epochs", "2", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_torchrun_trains_one_network_and_writes_one_set_of_files(two, tmp_path):
    out, r = two
    assert r.stdout.count("| val loss") == 2  # one line per epoch, from rank 0 alone
    assert "x 2 processes, 32 images each per step" in r.stdout
    assert sorted(os.listdir(out)) == ["checkpoint.pth", "config.json", "curves.png", "history.csv", "last.pth",
                                       "model.pth"]
    one = train.main(PLAIN + ["--epochs", "2", "--out", str(tmp_path / "one")])
    assert one is None
    a, b = history(tmp_path / "one"), history(out)
    for x, y in zip(a, b):  # learns as one process does: the same numbers up to float rounding
        for k in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert float(x[k]) == pytest.approx(float(y[k]), rel=2e-3, abs=2e-3), (k, x, y)
    assert float(b[-1]["val_acc"]) > 0.3  # and it learns: chance is 1/7


def test_resume_under_torchrun_continues_exactly(two, tmp_path):
    straight, _ = two
    assert torchrun(2, *PLAIN, "--epochs", "1", "--out", tmp_path / "split").returncode == 0
    ckpt = torch.load(tmp_path / "split" / "checkpoint.pth", weights_only=True)
    assert ckpt["world"] == 2 and len(ckpt["rng"]["augment_ranks"]) == 2
    assert not torch.equal(*ckpt["rng"]["augment_ranks"])  # each rank draws its own augmentations
    r = torchrun(2, "--resume", tmp_path / "split" / "checkpoint.pth", "--epochs", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert history(straight) == history(tmp_path / "split")
    a = torch.load(straight / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint.pth", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # PLAIN's augmentation is the identity, but its random draws still happen: every rank's stream must
    # come back from the checkpoint exactly where the straight run's stream is.
    assert all(torch.equal(x, y) for x, y in zip(a["rng"]["augment_ranks"], b["rng"]["augment_ranks"]))


def test_an_error_under_torchrun_is_said_once(tmp_path):
    (tmp_path / "bad.csv").write_text("emotion,pixels\n3,1 2 3\n")
    r = torchrun(2, "--data", tmp_path / "bad.csv", "--device", "cpu", "--epochs", "1", "--bs", "64")
    assert r.returncode != 0
    assert r.stderr.count("train.py: ") == 1 and "bad.csv: row 2: 3 pixel values" in r.stderr
    r = torchrun(2, "--data", "synthetic", "--device", "cpu", "--epochs", "0")  # a flag's error too
    assert r.returncode != 0 and r.stderr.count("train.py: error: --epochs must be") == 1, r.stderr
