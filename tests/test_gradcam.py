"""gradcam.py: Grad-CAM by hand with hooks, checked against autograd (and captum where installed), and its figure."""

from conftest import ROOT, SYNTHETIC, one_line, run_main, run_script, user_images
import numpy as np
import pytest
import synthetic_faces
import torch

import data
import gradcam
import weights


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


def batch(n=4, seed=2):
    return next(data.batches(torch.from_numpy(synthetic_faces.synthetic_faces(n, seed=seed)[0]), n, "cpu"))


@pytest.fixture(scope="module")
def net(trained_file):
    return weights.load(str(trained_file))[0]


@pytest.mark.parametrize("script,flags,code,words", [
    ("gradcam.py", ["--layer", "head.1"], 2, ["--layer head.1", "not a spatial map", "try one of stage1.0"]),
    ("gradcam.py", ["--layer", "nope"], 2, ["--layer nope: no such module", "stage3.3"]),
    ("gradcam.py", ["--seed", "-1"], 2, ["--seed must be >= 0"]),
    ("gradcam.py", ["--device", "cuda"], 2, ["--device cuda, but PyTorch sees no CUDA GPU"]),
])
def test_gradcam_and_data_flags(tmp_path, script, flags, code, words):
    if torch.cuda.is_available() and "cuda" in flags:
        pytest.skip("this machine has a GPU")
    weights.save(tmp_path / "r.pth", weights.NETWORKS["resnet"](), "resnet")
    base = ["--weights", tmp_path / "r.pth", "--data", SYNTHETIC, "--n", "2", "--out", tmp_path / "g.png"] \
        if script == "gradcam.py" else []
    one_line(run_main(script, *base, *flags), code, *words)


def test_a_wrong_layer_on_another_network_lists_its_own_blocks(tmp_path):
    weights.save(tmp_path / "v.pth", weights.NETWORKS["cnn3"](), "cnn3")
    one_line(run_main("gradcam.py", "--weights", tmp_path / "v.pth", "--data", SYNTHETIC, "--layer",
                      "stage3.3", "--out", tmp_path / "g.png"), 2, "features.2, features.7, features.12")


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
    net, name = weights.load(f"{ROOT}/weights/{shipped}")
    layer, x = gradcam.TARGET_LAYERS[type(net)], batch(16, seed=4)
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


def test_gradcam_cli_on_a_split_and_on_user_images(trained_file, tmp_path):
    r = run_script("gradcam.py", "--weights", trained_file, "--data", SYNTHETIC, "--n", 6, "--out", tmp_path / "g.png")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("predicted") == 6 and (tmp_path / "g.png").stat().st_size > 20000
    files = user_images(tmp_path)
    r = run_script("app/photos.py", "--weights", trained_file, "--images", *files, "--class", "happy", "--layer",
                   "stage2", "--gradcam", tmp_path / "mine.png")
    assert r.returncode == 0, r.stderr
    assert "me.jpg" in r.stdout and (tmp_path / "mine.png").exists()
    r = run_script("app/photos.py", "--weights", trained_file, "--images", *files, "--layer", "nope", "--gradcam",
                   tmp_path / "g.png")
    assert r.returncode == 2 and "--layer nope: no such module" in r.stderr


def test_each_map_says_which_class_it_explains():
    faces_ = synthetic_faces.synthetic_faces(2, seed=1)[0]
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


@pytest.mark.parametrize("name", [n for n in weights.NETWORKS if n != "mlp"])
def test_every_convolutional_network_has_a_spatial_layer_to_explain_by_default(name):
    net = weights.NETWORKS[name]().eval()
    maps, logits = gradcam.gradcam(net, torch.randn(2, 1, 48, 48), gradcam.TARGET_LAYERS[type(net)])
    assert maps.shape == (2, 48, 48) and logits.shape == (2, 7)
