"""evaluate.py's figures and files, app/photos.py's answers for a user's own images, and Grad-CAM against autograd."""
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import augment
import checkpoint
import data
import gradcam
import inference
import metrics
import model
import synthetic
from conftest import ROOT, run_script


@pytest.fixture(scope="module")
def weights(trained, tmp_path_factory):
    """The shared short run's network (its predictions are not all one class), in a folder of its own:
    evaluate.py writes its figures beside the weights."""
    path = tmp_path_factory.mktemp("w") / "model.pth"
    shutil.copy(trained[0] / "model.pth", path)
    return path


def test_evaluate_prints_metrics_and_writes_the_confusion_matrix_and_json(weights, tmp_path):
    r = run_script("evaluate.py", "--weights", weights, "--data", "synthetic", "--out", tmp_path,
                   "--json", tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    assert "on test" in r.stdout and "precision" in r.stdout and "surprise" in r.stdout
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 10000
    m = json.loads((tmp_path / "m.json").read_text())
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == m["n"] == 300
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert set(m["per_class"]) == set(data.CLASSES) and m["split"] == "test"


def test_evaluate_takes_other_splits_and_writes_nothing_unasked(weights):
    r = run_script("evaluate.py", "--weights", weights, "--data", "synthetic", "--split", "val")
    assert r.returncode == 0, r.stderr
    assert "on val" in r.stdout and not (weights.parent / "confusion_matrix.png").exists()


def test_evaluate_piped_into_head_stops_without_a_traceback(weights):
    import subprocess
    import sys
    cmd = f"'{sys.executable}' evaluate.py --weights '{weights}' --data synthetic | head -1"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=ROOT)
    assert "accuracy" in r.stdout and r.stdout.count("\n") == 1
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_metrics_match_a_hand_count():
    labels = torch.tensor([0, 0, 1, 3, 3, 3])
    probs = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 3, 3, 0]), 7).float()
    m = metrics.metrics(labels, probs)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["happy"]["recall"] == pytest.approx(2 / 3)
    assert m["per_class"]["angry"]["precision"] == pytest.approx(1 / 2)
    assert m["confusion_matrix"][3][0] == 1


def test_tta_views_are_ten_and_an_ensemble_averages(weights):
    x = torch.rand(2, 1, 48, 48)
    views = list(augment.tta_views(x))
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x) and torch.equal(views[5], x.flip(-1))
    assert all(not torch.allclose(v, x, atol=1e-3) for v in views[1:5])  # four warps, none the identity
    net, _ = checkpoint.load_weights(str(weights))
    images = torch.from_numpy(synthetic.synthetic_faces(20, seed=3)[0])
    one = inference.predict_proba([net], images, "cpu")
    two = inference.predict_proba([net, net], images, "cpu")
    assert torch.allclose(one, two, atol=1e-6) and torch.allclose(one.sum(1), torch.ones(20), atol=1e-5)
    tta = inference.predict_proba([net], images, "cpu", tta=True)
    assert tta.shape == (20, 7) and not torch.allclose(tta, one)


def test_tta_warps_zoom_and_rotate_within_the_training_ranges_and_fill_with_black():
    """A white square on black: each view's bright area is the zoom squared (the rotations keep it), and what
    a zoom-out brings in from outside the picture is black, as the training augmentation fills it."""
    black, white = float(data.normalize(torch.zeros(()))), float(data.normalize(torch.ones(())))
    square = torch.zeros(1, 1, 48, 48)
    square[..., 16:32, 16:32] = 1
    views = list(augment.tta_views(data.normalize(square)))
    area = [float((v - black).sum() / (white - black) / 256) for v in views]
    assert area == pytest.approx([1.0, 0.81, 1.21, 1.0, 1.0] * 2, abs=0.03)
    zoomed_out = list(augment.tta_views(data.normalize(torch.ones(1, 1, 48, 48))))[1]
    assert zoomed_out[0, 0, 0, 0] == pytest.approx(black, abs=1e-4)
    assert zoomed_out[0, 0, 24, 24] == pytest.approx(white, abs=1e-4)


def test_tta_views_resample_as_they_are_told_nearest_keeping_the_images_grey_levels():
    x = data.normalize(torch.randint(0, 256, (2, 1, 48, 48), generator=torch.Generator().manual_seed(5)) / 255.0)
    for interpolation, only_input_levels in (("nearest", True), ("bilinear", False)):
        for view in list(augment.tta_views(x, interpolation))[1:5]:  # the four warps
            for xi, vi in zip(x, view):
                levels = torch.cat([xi.flatten(), data.normalize(torch.zeros(1))])  # and black, outside
                inside = torch.isclose(vi.flatten()[:, None], levels[None], atol=1e-5).any(1)
                assert bool(inside.all()) is only_input_levels


def test_tta_resamples_each_network_as_it_trained(weights, tmp_path):
    """A network trained with --interpolation nearest sees its TTA views resampled nearest (views resampled
    the other way cost 2-3 points: docs/results.md); files whose configuration names none (from before the
    flag, or from elsewhere) read bilinear; in an ensemble each network sees its own views, equally weighted."""
    net, name = checkpoint.load_weights(str(weights))
    assert net.trained["interpolation"] == "nearest"  # the shared run ran the default
    checkpoint.save_weights(tmp_path / "bilinear.pth", net, name, {**net.trained, "interpolation": "bilinear"})
    blurred, _ = checkpoint.load_weights(str(tmp_path / "bilinear.pth"))
    assert blurred.trained["interpolation"] == "bilinear"
    checkpoint.save_weights(tmp_path / "plain.pth", net, name)  # a file that does not say
    assert checkpoint.load_weights(str(tmp_path / "plain.pth"))[0].trained["interpolation"] == "bilinear"
    for odd in ({"config": "not a dict"}, {"config": {"interpolation": "cubic"}}):  # format 1, someone else's
        torch.save({"model": name, "state_dict": net.state_dict(), "meta": odd}, tmp_path / "odd.pth")
        assert checkpoint.load_weights(str(tmp_path / "odd.pth"))[0].trained["interpolation"] == "bilinear"

    images = torch.from_numpy(synthetic.synthetic_faces(20, seed=3)[0])
    x = next(data.batches(images, 512, "cpu"))

    def by_hand(network, interpolation):
        with torch.no_grad():
            return sum(torch.softmax(network(v), 1) for v in augment.tta_views(x, interpolation)) / 10

    got = inference.predict_proba([net], images, "cpu", tta=True)
    assert torch.allclose(got, by_hand(net, "nearest"), atol=1e-5)
    assert not torch.allclose(got, by_hand(net, "bilinear"), atol=1e-3)
    both = inference.predict_proba([net, blurred], images, "cpu", tta=True)
    assert torch.allclose(both, (by_hand(net, "nearest") + by_hand(blurred, "bilinear")) / 2, atol=1e-5)


def user_images(tmp_path):
    """A colour JPEG of another size and a grey PNG, as a user would bring."""
    faces = synthetic.synthetic_faces(2, seed=9)[0]
    big = np.asarray(Image.fromarray(faces[0]).resize((160, 160)).convert("RGB"))
    Image.fromarray(big).save(tmp_path / "me.jpg")
    Image.fromarray(faces[1]).save(tmp_path / "you.png")
    return [tmp_path / "me.jpg", tmp_path / "you.png"]


def test_evaluate_images_prints_the_top_three_emotions(weights, tmp_path):
    files = user_images(tmp_path)
    r = run_script("app/photos.py", "--weights", weights, "--images", *files)
    assert r.returncode == 0, r.stderr
    # The 160-px picture may or may not hold a face for the face finder (then it says "no face found"), or
    # no finder may be installed (then it is classified whole); the 48x48 one is a crop already. Either way
    # every scored line is a top three.
    assert r.stdout.startswith(str(files[0])) and f"{files[1]} (classified whole: a face crop already)" in r.stdout
    scored = [line for line in r.stdout.splitlines() if "%" in line]
    assert len(scored) >= 1 + ("no face found" not in r.stdout)
    for line in scored:
        percents = [float(p) for p in re.findall(r" (\d+\.\d)%", line)]
        assert len(percents) == 3 and percents == sorted(percents, reverse=True) and sum(percents) <= 100.1, line


# ------------------------------------------------------------------------------------------------------------
# Grad-CAM

@pytest.fixture(scope="module")
def net(weights):
    return checkpoint.load_weights(str(weights))[0]


def batch(n=4, seed=2):
    return next(data.batches(torch.from_numpy(synthetic.synthetic_faces(n, seed=seed)[0]), n, "cpu"))


def reference_cam(net, x, layer, cls):
    """The same quantity computed independently: autograd.grad of the class logit w.r.t. the layer output."""
    module = dict(net.named_modules())[layer]
    store = {}
    h = module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    with torch.enable_grad():
        logits = net(x)
        h.remove()
        grad, = torch.autograd.grad(logits[:, cls].sum(), store["a"])
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * store["a"]).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=(48, 48), mode="bilinear", align_corners=False)[:, 0]
    return cam / cam.flatten(1).max(1).values.clamp(min=1e-12)[:, None, None]


@pytest.mark.parametrize("layer", ["stage3.3", "stage2.2", "stage1"])
def test_gradcam_matches_autograd(net, layer):
    x = batch()
    maps, logits = gradcam.gradcam(net, x, layer, classes=3)
    assert maps.shape == (4, 48, 48) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert torch.allclose(maps, reference_cam(net.eval(), x, layer, 3), atol=1e-5)


@pytest.mark.parametrize("shipped", ["resnet.pth", "vgg.pth"])
def test_gradcam_matches_captum_where_it_is_installed(shipped):
    """An implementation we did not write: captum's LayerGradCam. captum is a test-only tool that .ci/run
    installs (`pip install --no-deps captum==0.9.0`); elsewhere this skips."""
    captum = pytest.importorskip("captum.attr")
    net, name = checkpoint.load_weights(f"{ROOT}/weights/{shipped}")
    layer, x = model.TARGET_LAYERS[name], batch(16, seed=4)
    maps, logits = gradcam.gradcam(net, x, layer)
    assert (maps.flatten(1).amax(1) > 0).sum() >= 8  # maps with something in them, or agreeing says little
    theirs = captum.LayerGradCam(net, dict(net.named_modules())[layer]).attribute(
        x, target=logits.argmax(1), relu_attributions=True)
    theirs = captum.LayerAttribution.interpolate(theirs, (48, 48), interpolate_mode="bilinear")[:, 0]
    assert torch.allclose(maps, theirs / theirs.flatten(1).max(1).values.clamp(min=1e-12)[:, None, None], atol=1e-5)


def test_gradcam_defaults_to_the_predicted_class(net):
    x = batch()
    maps, logits = gradcam.gradcam(net, x, "stage3.3")
    pred = logits.argmax(1)
    for i in range(4):  # the reference runs one face at a time: rounding as in the test below
        assert torch.allclose(maps[i], reference_cam(net, x[i:i + 1], "stage3.3", int(pred[i]))[0], atol=1e-4)


def test_batch_gives_the_same_maps_as_one_by_one(net):
    x = batch(6)
    maps, _ = gradcam.gradcam(net, x, "stage3.3", classes=5)
    singles = torch.cat([gradcam.gradcam(net, x[i:i + 1], "stage3.3", classes=5)[0] for i in range(6)])
    # A batch of 6 and a batch of 1 run different convolution kernels, so the sums round differently (up to
    # 1.4e-5 on maps scaled to [0, 1], seen on an AVX2 CPU); faces leaking into each other would differ by ~0.1.
    assert torch.allclose(maps, singles, atol=1e-4)


def test_gradcam_leaves_the_model_as_it_found_it(net):
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    gradcam.gradcam(net, batch(), "stage3.3")
    assert net.training  # restored
    net.eval()
    gradcam.gradcam(net, batch(), "stage3.3")
    assert not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN statistics too
    assert all(p.grad is None for p in net.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in net.modules())  # hooks removed


def test_gradcam_restores_each_submodules_own_mode(net):
    net.train()
    net.head[3].eval()  # a dropout deliberately off while the rest trains
    gradcam.gradcam(net, batch(), "stage3.3")
    assert net.training and net.stage1.training and not net.head[3].training
    net.eval()


def test_gradcam_works_inside_inference_mode_and_stops_backward_at_the_layer(net):
    x = batch()
    expected, _ = gradcam.gradcam(net, x, "stage2.2")
    with torch.inference_mode():
        maps, logits = gradcam.gradcam(net, x.clone(), "stage2.2")
    assert torch.allclose(maps, expected, atol=1e-6)
    seen = []  # backward must not reach the stem, below the explained layer
    hook = net.stem[0].register_full_backward_hook(lambda *a: seen.append(1))
    gradcam.gradcam(net, x, "stage2.2")
    hook.remove()
    assert seen == []


def test_gradcam_cli_on_a_split_and_on_user_images(weights, tmp_path):
    r = run_script("gradcam.py", "--weights", weights, "--data", "synthetic", "--n", 6, "--out", tmp_path / "g.png")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("predicted") == 6 and (tmp_path / "g.png").stat().st_size > 20000
    files = user_images(tmp_path)
    r = run_script("app/photos.py", "--weights", weights, "--images", *files, "--class", "happy", "--layer",
                   "stage2", "--gradcam", tmp_path / "mine.png")
    assert r.returncode == 0, r.stderr
    assert "me.jpg" in r.stdout and (tmp_path / "mine.png").exists()
    r = run_script("app/photos.py", "--weights", weights, "--images", *files, "--layer", "nope", "--gradcam",
                   tmp_path / "g.png")
    assert r.returncode == 2 and "--layer nope: no such module" in r.stderr


def test_each_map_says_which_class_it_explains():
    faces_ = synthetic.synthetic_faces(2, seed=1)[0]
    probs = np.array([[0.1, 0, 0, 0.2, 0.7, 0, 0], [0, 0, 0, 0.9, 0.1, 0, 0]])
    maps = np.ones((2, 48, 48))
    fig = gradcam.figure(faces_, maps, probs, ["a", "b"], "stage3.3", explained=[3, 3])  # --class happy
    titles = [ax.get_title() for ax in fig.axes]
    assert "map: happy 20%\npred sad 70%" in titles  # the asked class, beside the answer
    assert "pred happy 90%" in titles  # where the two agree, said once
    assert "class happy" in fig.axes[len(faces_) + 1].get_ylabel()
    fig = gradcam.figure(faces_, maps, probs, ["a", "b"], "stage3.3")
    assert "predicted class" in fig.axes[len(faces_) + 1].get_ylabel()


def test_pick_mixes_right_and_wrong_predictions():
    labels = np.array([0] * 10 + [1] * 10)
    pred = np.array([0] * 10 + [0] * 10)  # first 10 right, last 10 wrong
    idx = gradcam.pick(labels, pred, 8, seed=0)
    assert len(set(idx)) == 8 and (idx < 10).sum() == 4
    assert np.array_equal(idx, gradcam.pick(labels, pred, 8, seed=0))
