"""The weights in weights/: loadable, small, and scoring on PublicTest exactly what the README says."""
import json
import os
import re
import shlex

import pytest
import torch

import data
import inference
import train
from conftest import ROOT

SHIPPED = {"resnet.pth": "resnet", "vgg.pth": "vgg", "vgg_nearest.pth": "vgg", "report_recipe.pth": "resnet"}
# Trained on Training + PublicTest with a recipe fixed beforehand: they have no PublicTest figure to reproduce.
TRAINED_ON_VAL = {"resnet_tov.pth": "resnet"}
NETWORKS = {**SHIPPED, **TRAINED_ON_VAL}  # every file in weights/ named here -> the network it holds


@pytest.mark.parametrize("name", [*SHIPPED, *TRAINED_ON_VAL, "resnet_stage1.pth"])
def test_shipped_weights_are_fp16_state_dicts_under_16_mb(name):
    path = os.path.join(ROOT, "weights", name)
    assert os.path.getsize(path) <= 16e6
    blob = inference.read_file(path)
    assert blob["model"] == NETWORKS.get(name, "resnet") and blob["classes"] == list(data.CLASSES)
    floats = [v for v in blob["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    net, _ = inference.load_weights(path)
    assert net(torch.zeros(2, 1, 48, 48)).shape == (2, 7)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_reproduce_the_readme_on_publictest(name, fer2013):
    stem = name.removesuffix(".pth")
    published = json.load(open(os.path.join(ROOT, "weights", f"{stem}_publictest.json")))
    readme = open(os.path.join(ROOT, "README.md")).read()
    row = next(s for s in readme.splitlines() if s.startswith(f"| `weights/{name}` |"))
    assert re.search(r"\| (\d+\.\d+)% \|", row).group(1) == f"{100 * published['accuracy']:.2f}"
    assert f"evaluate.py --weights weights/{name} --split val`" in row

    images, labels = fer2013["val"]
    probs = inference.predict_proba(inference.load_nets([os.path.join(ROOT, "weights", name)], "cpu"), images,
                                   torch.device("cpu"))
    assert int((probs.argmax(1) == labels).sum()) == round(published["accuracy"] * published["n"])


def test_the_vgg_weights_still_load_under_their_old_name(capsys):
    """weights/vgg.pth was weights/best.pth: a command or script naming the old file loads the new one and
    says so."""
    net, name = inference.load_weights(os.path.join(ROOT, "weights", "best.pth"))
    assert name == "vgg" and "best.pth is now called" in capsys.readouterr().err


SEEDS = sorted(f for f in os.listdir(os.path.join(ROOT, "weights", "seeds")) if f.endswith(".pth"))


@pytest.mark.parametrize("name", SEEDS)
def test_the_seed_systems_are_fp16_weights_with_their_command(name):
    path = os.path.join(ROOT, "weights", "seeds", name)
    blob = inference.read_file(path)
    assert blob["classes"] == list(data.CLASSES)
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values() if v.is_floating_point())
    assert_command_rebuilds(path, blob)
    # (report.pth is seed 000's recipe on the default resnet)
    assert blob["model"] == {"report.pth": "resnet"}.get(name, name.removesuffix(".pth"))
    net, _ = inference.load_weights(path)
    assert net(torch.zeros(2, 1, 48, 48)).shape == (2, 7)


@pytest.mark.parametrize("name", SEEDS)
def test_the_seed_systems_reproduce_the_readme_on_publictest(name, fer2013):
    path = os.path.join(ROOT, "weights", "seeds", name)
    published = json.load(open(path.replace(".pth", "_publictest.json")))
    row = next(s for s in open(os.path.join(ROOT, "README.md")).read().splitlines()
               if s.startswith("| 00") and f"`{name}`" in s)
    assert f"| {100 * published['accuracy']:.2f}% |" in row
    images, labels = fer2013["val"]
    probs = inference.predict_proba(inference.load_nets([path], "cpu"), images, torch.device("cpu"))
    assert int((probs.argmax(1) == labels).sum()) == round(published["accuracy"] * published["n"])


@pytest.mark.parametrize("name", ["vgg_nearest.pth", "report_recipe.pth", "resnet_tov.pth"])
def test_weights_shipped_with_a_command_say_how_to_rebuild_them(name):
    """The files shipped by tools/ship.py carry the train.py command that made them, in the file and beside it,
    and that command builds the network the file holds."""
    path = os.path.join(ROOT, "weights", name)
    blob = inference.read_file(path)
    assert_command_rebuilds(path, blob)
    assert blob["model"] == NETWORKS[name]


@pytest.mark.parametrize("name", TRAINED_ON_VAL)
def test_weights_trained_on_publictest_publish_no_figure_there(name):
    """PublicTest faces were training faces for these files: no PublicTest score ships beside them and their
    README row says why instead of giving a figure."""
    path = os.path.join(ROOT, "weights", name)
    blob = inference.read_file(path)
    assert blob["meta"]["config"]["train_on_val"] is True
    assert "--train-on-val" in open(path.replace(".pth", "_command.txt")).read().split()
    assert not os.path.exists(path.replace(".pth", "_publictest.json"))
    row = next(s for s in open(os.path.join(ROOT, "README.md")).read().splitlines()
               if s.startswith(f"| `weights/{name}` |"))
    assert "trained on PublicTest" in row and not re.search(r"\d+\.\d+%", row)


def assert_command_rebuilds(path, blob):
    """NAME_command.txt beside the file, and the file's own meta, hold one train.py command that builds the
    network the file holds."""
    command = open(path.replace(".pth", "_command.txt")).read().strip()
    assert command.startswith("python train.py ") and blob["meta"]["command"] == command
    assert train.make_parser().parse_args(shlex.split(command)[2:]).model == blob["model"]
