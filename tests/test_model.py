"""model.py and peers.py: the report's network exactly (Appendix 1), every network's shape, and prediction with TTA."""

from conftest import one_line, run_script
import layer_table
import pytest
import synthetic_faces
import torch

import data
import model
import weights


@pytest.fixture(scope="module")
def net(trained_file):
    return weights.load(str(trained_file))[0]


def test_tta_views_are_ten_and_an_ensemble_averages(trained_file):
    x = torch.rand(2, 1, 48, 48)
    views = list(model.tta_views(x))
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x) and torch.equal(views[5], x.flip(-1))
    assert all(not torch.allclose(v, x, atol=1e-3) for v in views[1:5])  # four warps, none the identity
    net, _ = weights.load(str(trained_file))
    images = torch.from_numpy(synthetic_faces.synthetic_faces(20, seed=3)[0])
    one = model.predict_proba([net], images, "cpu")
    two = model.predict_proba([net, net], images, "cpu")
    assert torch.allclose(one, two, atol=1e-6) and torch.allclose(one.sum(1), torch.ones(20), atol=1e-5)
    tta = model.predict_proba([net], images, "cpu", tta=True)
    assert tta.shape == (20, 7) and not torch.allclose(tta, one)


def test_an_ensembles_temperature_sharpens_its_average_and_never_changes_a_class(net):
    """model.Ensemble: the average's own temperature, plain or with TTA (weights.load_nets reads them)."""
    images = torch.from_numpy(synthetic_faces.synthetic_faces(20, seed=3)[0])
    plain = model.predict_proba(model.Ensemble([net]), images, "cpu")
    assert torch.equal(plain, model.predict_proba([net], images, "cpu"))  # T = 1: the average as it is
    sharp = model.predict_proba(model.Ensemble([net], temperature=0.5), images, "cpu")
    assert torch.allclose(sharp, torch.softmax(plain.log() / 0.5, 1), atol=1e-5)
    assert torch.equal(sharp.argmax(1), plain.argmax(1)) and (sharp.max(1).values >= plain.max(1).values).all()
    only_tta = model.Ensemble([net], tta_temperature=0.5)
    assert torch.equal(model.predict_proba(only_tta, images, "cpu"), plain)
    tta = model.predict_proba([net], images, "cpu", tta=True)
    assert torch.allclose(model.predict_proba(only_tta, images, "cpu", tta=True), torch.softmax(tta.log() / 0.5, 1),
                          atol=1e-5)


def test_tta_warps_zoom_and_rotate_within_the_training_ranges_and_fill_with_black():
    """A white square on black: each view's bright area is the zoom squared (the rotations keep it), and what
    a zoom-out brings in from outside the picture is black, as the training augmentation fills it."""
    black, white = float(data.normalize(torch.zeros(()))), float(data.normalize(torch.ones(())))
    square = torch.zeros(1, 1, 48, 48)
    square[..., 16:32, 16:32] = 1
    views = list(model.tta_views(data.normalize(square)))
    area = [float((v - black).sum() / (white - black) / 256) for v in views]
    assert area == pytest.approx([1.0, 0.81, 1.21, 1.0, 1.0] * 2, abs=0.03)
    zoomed_out = list(model.tta_views(data.normalize(torch.ones(1, 1, 48, 48))))[1]
    assert zoomed_out[0, 0, 0, 0] == pytest.approx(black, abs=1e-4)
    assert zoomed_out[0, 0, 24, 24] == pytest.approx(white, abs=1e-4)


def test_tta_views_resample_as_they_are_told_nearest_keeping_the_images_grey_levels():
    x = data.normalize(torch.randint(0, 256, (2, 1, 48, 48), generator=torch.Generator().manual_seed(5)) / 255.0)
    for interpolation, only_input_levels in (("nearest", True), ("bilinear", False)):
        for view in list(model.tta_views(x, interpolation))[1:5]:  # the four warps
            for xi, vi in zip(x, view):
                levels = torch.cat([xi.flatten(), data.normalize(torch.zeros(1))])  # and black, outside
                inside = torch.isclose(vi.flatten()[:, None], levels[None], atol=1e-5).any(1)
                assert bool(inside.all()) is only_input_levels


def test_tta_resamples_each_network_as_it_trained(trained_file, tmp_path):
    """A network trained with --interpolation nearest sees its TTA views resampled nearest (views resampled
    the other way cost 2-3 points: docs/results.md); files whose configuration names none (from before the
    flag, or from elsewhere) read bilinear; in an ensemble each network sees its own views, equally weighted."""
    net, name = weights.load(str(trained_file))
    assert net.trained["interpolation"] == "nearest"  # the shared run ran the default
    weights.save(tmp_path / "bilinear.pth", net, name, {**net.trained, "interpolation": "bilinear"})
    blurred, _ = weights.load(str(tmp_path / "bilinear.pth"))
    assert blurred.trained["interpolation"] == "bilinear"
    weights.save(tmp_path / "plain.pth", net, name)  # a file that does not say
    assert weights.load(str(tmp_path / "plain.pth"))[0].trained["interpolation"] == "bilinear"
    for odd in ({"config": "not a dict"}, {"config": {"interpolation": "cubic"}}):  # format 1, someone else's
        torch.save({"model": name, "state_dict": net.state_dict(), "meta": odd}, tmp_path / "odd.pth")
        assert weights.load(str(tmp_path / "odd.pth"))[0].trained["interpolation"] == "bilinear"

    images = torch.from_numpy(synthetic_faces.synthetic_faces(20, seed=3)[0])
    x = next(data.batches(images, 512, "cpu"))

    def by_hand(network, interpolation):
        with torch.no_grad():
            return sum(torch.softmax(network(v), 1) for v in model.tta_views(x, interpolation)) / 10

    got = model.predict_proba([net], images, "cpu", tta=True)
    assert torch.allclose(got, by_hand(net, "nearest"), atol=1e-5)
    assert not torch.allclose(got, by_hand(net, "bilinear"), atol=1e-3)
    both = model.predict_proba([net, blurred], images, "cpu", tta=True)
    assert torch.allclose(both, (by_hand(net, "nearest") + by_hand(blurred, "bilinear")) / 2, atol=1e-5)


def test_resnet_has_the_reports_3817079_parameters_and_returns_logits():
    net = weights.NETWORKS["resnet"]().eval()
    assert model.count_parameters(net) == 3_817_079
    out = net(torch.randn(5, 1, 48, 48))
    assert out.shape == (5, 7)
    assert not torch.allclose(out.sum(1), torch.ones(5))  # logits, not the report's softmax outputs


def test_layer_table_matches_appendix_1():
    rows = {name: (shape, n) for name, _, shape, n in layer_table.layer_table(weights.NETWORKS["resnet"]())}
    assert rows["stem"] == ([1, 16, 24, 24], 0) and rows["stem.0"][1] == 144
    assert rows["stage1.0.shortcut"][1] == 4_672 and rows["stage2.0.shortcut"][1] == 18_560
    assert rows["stage3.0.shortcut"][1] == 73_984
    assert rows["stage1"][0] == [1, 32, 12, 12] and rows["stage2"][0] == [1, 64, 6, 6]
    assert rows["stage3"][0] == [1, 128, 3, 3]
    assert rows["head.1"] == ([1, 2048], 2_361_344) and rows["head.4"] == ([1, 7], 14_343)
    blocks = [n for n, m in weights.NETWORKS["resnet"]().named_modules() if isinstance(m, model.ResidualBlock)]
    assert len(blocks) == 2 + 3 + 4


def test_cli_prints_the_table_and_total():
    r = run_script("tools/layer_table.py")
    assert r.returncode == 0 and "Total params: 3,817,079" in r.stdout
    # Appendix 1's LeakyReLU rows: the stem's, two in each of the nine blocks, the head's
    assert r.stdout.count("(LeakyReLU)") == 1 + 2 * 9 + 1


def test_cli_names_an_unknown_network_in_one_line():
    one_line(run_script("tools/layer_table.py", "--model", "resnet50"), 2, "--model", "resnet50")


def test_each_layer_is_one_row_of_the_table():
    """A module used twice in forward would be listed twice under one name; every row names its own layer."""
    names = [name for name, *_ in layer_table.layer_table(weights.NETWORKS["resnet"]())]
    assert len(names) == len(set(names))


def test_kaiming_normal_init():
    torch.manual_seed(0)
    net = weights.NETWORKS["resnet"]()
    w = net.stage3[1].conv1.weight  # 128 in x 3 x 3 fan-in
    gain = (2 / (1 + 0.01 ** 2)) ** 0.5
    assert w.std().item() == pytest.approx(gain / (128 * 9) ** 0.5, rel=0.05)
    assert torch.all(net.head[1].bias == 0)


@pytest.mark.parametrize("name", list(weights.NETWORKS))
def test_every_network_maps_a_batch_to_seven_logits_and_round_trips(name, tmp_path):
    net = weights.NETWORKS[name]().eval()
    x = torch.randn(2, 1, 48, 48)
    assert net(x).shape == (2, 7)
    weights.save(tmp_path / "w.pth", net, name)
    back, got = weights.load(str(tmp_path / "w.pth"), expect=name)
    assert got == name and torch.equal(back(x), net(x))
