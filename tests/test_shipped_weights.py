"""The weights in weights/: loadable, small, and scoring on PublicTest exactly what the README says."""
import json
import os
import re
import shlex

from conftest import ROOT
import pytest
import torch

import data
import model
import train
import weights

SHIPPED = {"resnet.pth": "resnet", "vgg.pth": "vgg", "vgg_nearest.pth": "vgg", "vgg_nearest_s2.pth": "vgg",
           "report_recipe.pth": "resnet"}
# Trained on Training + PublicTest with a recipe fixed beforehand: they have no PublicTest figure to reproduce.
TRAINED_ON_VAL = {"resnet_tov.pth": "resnet"}
NETWORKS = {**SHIPPED, **TRAINED_ON_VAL}  # every file in weights/ named here -> the network it holds


@pytest.mark.parametrize("name", [*SHIPPED, *TRAINED_ON_VAL, "resnet_stage1.pth"])
def test_shipped_weights_are_fp16_state_dicts_under_16_mb(name):
    path = os.path.join(ROOT, "weights", name)
    assert os.path.getsize(path) <= 16e6
    blob = weights.read_file(path)
    assert blob["model"] == NETWORKS.get(name, "resnet") and blob["classes"] == list(data.CLASSES)
    floats = [v for v in blob["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    net, _ = weights.load(path)
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
    probs = model.predict_proba(weights.load_nets([os.path.join(ROOT, "weights", name)], "cpu"), images,
                                   torch.device("cpu"))
    assert int((probs.argmax(1) == labels).sum()) == round(published["accuracy"] * published["n"])


SEEDS = sorted(f for f in os.listdir(os.path.join(ROOT, "weights", "seeds")) if f.endswith(".pth"))


@pytest.mark.parametrize("name", SEEDS)
def test_the_seed_systems_are_fp16_weights_with_their_command(name):
    path = os.path.join(ROOT, "weights", "seeds", name)
    blob = weights.read_file(path)
    assert blob["classes"] == list(data.CLASSES)
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values() if v.is_floating_point())
    assert_command_rebuilds(path, blob)
    # (report.pth is seed 000's recipe on the default resnet)
    assert blob["model"] == {"report.pth": "resnet"}.get(name, name.removesuffix(".pth"))
    net, _ = weights.load(path)
    assert net(torch.zeros(2, 1, 48, 48)).shape == (2, 7)


@pytest.mark.parametrize("name", SEEDS)
def test_the_seed_systems_reproduce_the_readme_on_publictest(name, fer2013):
    path = os.path.join(ROOT, "weights", "seeds", name)
    published = json.load(open(path.replace(".pth", "_publictest.json")))
    row = next(s for s in open(os.path.join(ROOT, "README.md")).read().splitlines()
               if s.startswith("| 00") and f"`{name}`" in s)
    assert f"| {100 * published['accuracy']:.2f}% |" in row
    images, labels = fer2013["val"]
    probs = model.predict_proba(weights.load_nets([path], "cpu"), images, torch.device("cpu"))
    assert int((probs.argmax(1) == labels).sum()) == round(published["accuracy"] * published["n"])


@pytest.mark.parametrize("name", ["vgg_nearest.pth", "vgg_nearest_s2.pth", "report_recipe.pth", "resnet_tov.pth"])
def test_weights_shipped_with_a_command_say_how_to_rebuild_them(name):
    """The files shipped by tools/ship.py carry the train.py command that made them, in the file and beside it,
    and that command builds the network the file holds."""
    path = os.path.join(ROOT, "weights", name)
    blob = weights.read_file(path)
    assert_command_rebuilds(path, blob)
    assert blob["model"] == NETWORKS[name]


@pytest.mark.parametrize("name", TRAINED_ON_VAL)
def test_weights_trained_on_publictest_publish_no_figure_there(name):
    """PublicTest faces were training faces for these files: no PublicTest score ships beside them and their
    README row says why instead of giving a figure."""
    path = os.path.join(ROOT, "weights", name)
    net, _ = weights.load(path)
    assert net.trained["train_on_val"] is True
    assert "--train-on-val" in open(path.replace(".pth", "_command.txt")).read().split()
    assert not os.path.exists(path.replace(".pth", "_publictest.json"))
    row = next(s for s in open(os.path.join(ROOT, "README.md")).read().splitlines()
               if s.startswith(f"| `weights/{name}` |"))
    assert "trained on PublicTest" in row and not re.search(r"\d+\.\d+%", row)


def assert_command_rebuilds(path, blob):
    """NAME_command.txt beside the file, and the file's own meta, hold one train.py command that builds the
    network the file holds."""
    command = open(path.replace(".pth", "_command.txt")).read().strip()
    assert command.startswith("python train.py ") and weights.load(path)[0].trained["recipe"] == command
    assert recipe_flags(*shlex.split(command)[2:])["model"] == blob["model"]


# Each shipped network's recipe is a file in recipes/, the one place the README and docs point to; another seed of
# a recipe is that file and its --seed.
RECIPES = {"report_recipe.pth": "report.txt", "resnet_stage1.pth": "resnet_stage1.txt", "resnet.pth": "resnet.txt",
           "resnet_tov.pth": "resnet_tov.txt", "vgg.pth": "vgg.txt", "vgg_nearest.pth": "vgg_nearest.txt",
           "vgg_nearest_s2.pth": "vgg_nearest.txt --seed 2",
           **{f"seeds/{n}": f"seeds/{n.removesuffix('.pth')}.txt" for n in SEEDS}}


def recipe_flags(*argv):
    """train.py's flags for a command line (recipes read in, from the clone's root as the README runs them),
    without the data's and output's places."""
    words = [w for a in map(str, argv) for w in (shlex.split(open(os.path.join(ROOT, a[1:])).read(), comments=True)
                                                 if a.startswith("@") else [a])]
    flags = vars(train.make_parser().parse_args(words))
    return {k: v for k, v in flags.items() if k not in ("data", "out")}


@pytest.mark.parametrize("name", RECIPES)
def test_every_shipped_file_has_its_recipe_and_the_recipe_is_the_command_that_made_it(name):
    path = os.path.join(ROOT, "weights", name)
    recipe, *seed = RECIPES[name].split()
    recipe = os.path.join(ROOT, "recipes", recipe)
    flags = recipe_flags("@" + recipe, *seed)
    assert flags["model"] == weights.read_file(path)["model"]
    assert f"weights/{name}" in open(recipe).read()  # the recipe names the file it made
    command = path.replace(".pth", "_command.txt")
    if os.path.exists(command):  # shipped with the command that ran: the recipe is that command's flags
        assert flags == recipe_flags(*shlex.split(open(command).read())[2:])


def test_the_readme_trains_each_main_network_from_its_recipe():
    readme = open(os.path.join(ROOT, "README.md")).read()
    for recipe in ("report.txt", "resnet_stage1.txt", "resnet.txt", "resnet_tov.txt", "vgg.txt", "vgg_nearest.txt"):
        assert f"python train.py @recipes/{recipe}" in readme, recipe


def test_every_command_in_the_readme_parses_with_its_scripts_flags(monkeypatch):
    """The README's commands run as written: every `python SCRIPT.py ...` line in its code blocks uses flags
    and values its script accepts."""
    import importlib
    import os
    import shlex

    from conftest import ROOT
    monkeypatch.chdir(ROOT)  # where the README's commands run: recipes/ is read from there
    readme = open(os.path.join(ROOT, "README.md")).read()
    blocks = readme.split("```")[1::2]
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split("  #")[0])
            script = next((w for w in words if w.endswith(".py") and not w.startswith("-")), None)
            if script and words[0] == "python":
                commands.append((script, words[words.index(script) + 1:]))
    assert len(commands) >= 12
    for script, args in commands:
        if script.startswith("tools/"):
            continue
        parser = importlib.import_module(script[:-3].replace("/", ".")).make_parser()
        parser.error = lambda msg, script=script, args=args: pytest.fail(f"{script} {' '.join(args)}: {msg}")
        parsed = parser.parse_args([w for a in args for w in (shlex.split(open(a[1:]).read(), comments=True)
                                                              if a.startswith("@") else [a])])
        # the data goes where the README puts it: a command that names another path fails as written
        assert getattr(parsed, "data", None) in (None, "data/synthetic.csv", "data/fer2013.csv"), (script, args)
