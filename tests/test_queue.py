"""tools/train_queue.py: recipes trained one after another until a deadline; each run finishes or is stopped
resumably, and a finished run is packed as ship.py reads it."""
import json
import os
import tarfile

import torch

import checkpoint
from conftest import one_line, run_main

TINY = "--model mlp --bs 64 --amp off --device cpu"


def test_a_queue_trains_its_runs_in_turn_and_packs_each_finished_one(tmp_path):
    code, out, err = run_main("tools/train_queue.py", "--data", "synthetic", "--minutes", "10",
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
        net, _ = checkpoint.load_weights(tmp_path / "unpacked" / name / kept)
        assert epoch is None or net.trained["epoch"] == epoch
        assert json.load(open(tmp_path / "unpacked" / name / "config.json"))["model"] == "mlp"


def test_a_run_that_cannot_finish_by_the_deadline_is_stopped_resumably_and_the_queue_goes_on(tmp_path):
    code, out, err = run_main("tools/train_queue.py", "--data", "synthetic", "--minutes", "0.4",
                              "--out", tmp_path, f"{TINY} --epochs 5000", f"{TINY} --epochs 1")
    assert code == 0, err
    long, short = "model_mlp_bs_64_amp_off_device_cpu_epochs_5000", "model_mlp_bs_64_amp_off_device_cpu_epochs_1"
    assert f"{long}: stopped:" in out and "end past the deadline" in out
    assert f"--resume {tmp_path / long / 'checkpoint.pth'}" in out
    assert torch.load(tmp_path / long / "checkpoint.pth", weights_only=True)["epoch"] >= 1
    assert not os.path.exists(tmp_path / long / "training.lock")
    assert f"{short}: finished" in out or f"{short}: not started" in out


def test_a_queue_refuses_an_out_folder_that_holds_a_run_before_training_anything(tmp_path):
    name = "model_mlp_bs_64_amp_off_device_cpu_epochs_1"
    os.makedirs(tmp_path / name)
    (tmp_path / name / "history.csv").write_text("epoch\n")
    one_line(run_main("tools/train_queue.py", "--data", "synthetic", "--minutes", "1", "--out", tmp_path,
                      f"{TINY} --epochs 1"), 1, name, "already holds a run")
    assert os.listdir(tmp_path / name) == ["history.csv"]
