"""model.py: the report's network exactly, and weights files that load safely or fail clearly."""
import os
import pickle

import pytest
import torch

import checkpoint
import model
from conftest import run_script


def test_resnet_has_the_reports_3817079_parameters_and_returns_logits():
    net = model.build("resnet").eval()
    assert model.count_parameters(net) == 3_817_079
    out = net(torch.randn(5, 1, 48, 48))
    assert out.shape == (5, 7)
    assert not torch.allclose(out.sum(1), torch.ones(5))  # logits, not the report's softmax outputs


def test_layer_table_matches_appendix_1():
    rows = {name: (shape, n) for name, _, shape, n in model.layer_table(model.build("resnet"))}
    assert rows["stem"] == ([1, 16, 24, 24], 0) and rows["stem.0"][1] == 144
    assert rows["stage1.0.shortcut"][1] == 4_672 and rows["stage2.0.shortcut"][1] == 18_560
    assert rows["stage3.0.shortcut"][1] == 73_984
    assert rows["stage1"][0] == [1, 32, 12, 12] and rows["stage2"][0] == [1, 64, 6, 6]
    assert rows["stage3"][0] == [1, 128, 3, 3]
    assert rows["head.1"] == ([1, 2048], 2_361_344) and rows["head.4"] == ([1, 7], 14_343)
    blocks = [n for n, m in model.build("resnet").named_modules() if isinstance(m, model.ResidualBlock)]
    assert len(blocks) == 2 + 3 + 4


def test_cli_prints_the_table_and_total():
    r = run_script("model.py")
    assert r.returncode == 0 and "Total params: 3,817,079" in r.stdout
    # Appendix 1's LeakyReLU rows: the stem's, two in each of the nine blocks, the head's
    assert r.stdout.count("(LeakyReLU)") == 1 + 2 * 9 + 1


def test_each_layer_is_one_row_of_the_table():
    """A module used twice in forward would be listed twice under one name; every row names its own layer."""
    names = [name for name, *_ in model.layer_table(model.build("resnet"))]
    assert len(names) == len(set(names))


def test_kaiming_normal_init():
    torch.manual_seed(0)
    net = model.build("resnet")
    w = net.stage3[1].conv1.weight  # 128 in x 3 x 3 fan-in
    gain = (2 / (1 + 0.01 ** 2)) ** 0.5
    assert w.std().item() == pytest.approx(gain / (128 * 9) ** 0.5, rel=0.05)
    assert torch.all(net.head[1].bias == 0)


def test_weights_round_trip_in_fp32_and_fp16(tmp_path):
    net = model.build("resnet").eval()
    x = torch.randn(3, 1, 48, 48)
    checkpoint.save_weights(tmp_path / "w.pth", net, "resnet", {"epoch": 3})
    back, name = checkpoint.load_weights(str(tmp_path / "w.pth"))
    assert name == "resnet" and not back.training
    assert torch.equal(back(x), net(x))
    checkpoint.save_weights(tmp_path / "h.pth", net, "resnet", half=True)
    half, _ = checkpoint.load_weights(str(tmp_path / "h.pth"))
    assert half.head[1].weight.dtype == torch.float32  # fp16 on disk, fp32 in memory
    assert torch.allclose(half(x), net(x), atol=0.05, rtol=0.01)
    assert os.path.getsize(tmp_path / "h.pth") < 0.55 * os.path.getsize(tmp_path / "w.pth")


def test_weights_of_another_network_are_refused_naming_what_differs(tmp_path):
    net = model.build("resnet")
    state = net.state_dict()
    state["head.4.weight"] = torch.zeros(3, 2048)
    del state["stem.1.bias"]
    torch.save({"model": "resnet", "classes": [], "state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(checkpoint.WeightsError, match=r"missing \['stem.1.bias'\].*head.4.weight \(3, 2048\)"):
        checkpoint.load_weights(str(tmp_path / "bad.pth"))
    with pytest.raises(checkpoint.WeightsError, match="holds a 'resnet' network, not 'vgg'"):
        checkpoint.save_weights(tmp_path / "ok.pth", net, "resnet")
        checkpoint.load_weights(str(tmp_path / "ok.pth"), expect="vgg")


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_weights_file_carrying_a_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": "resnet", "state_dict": {}, "x": Payload()}, path)
    with pytest.raises(checkpoint.WeightsError, match="not a usable weights file"):
        checkpoint.load_weights(str(path))
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(Payload(), f)
    with pytest.raises(checkpoint.WeightsError):
        checkpoint.load_weights(str(tmp_path / "plain.pkl"))


@pytest.mark.parametrize("content", [b"", b"not a torch file at all", None])
def test_empty_garbage_and_truncated_files_are_refused(tmp_path, content):
    path = tmp_path / "w.pth"
    if content is None:  # a real file, cut in half
        checkpoint.save_weights(path, model.build("resnet"), "resnet")
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(checkpoint.WeightsError, match="w.pth: not a usable weights file"):
        checkpoint.load_weights(str(path))


def test_an_interrupted_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    net = model.build("resnet")
    checkpoint.save_weights(path, net, "resnet", {"epoch": 1})
    before = path.read_bytes()
    real_save = torch.save

    def dies_halfway(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(1000)
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_weights(path, net, "resnet", {"epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]  # no temporary file left behind


@pytest.mark.parametrize("name", list(model.MODELS))
def test_every_network_maps_a_batch_to_seven_logits_and_round_trips(name, tmp_path):
    net = model.build(name).eval()
    x = torch.randn(2, 1, 48, 48)
    assert net(x).shape == (2, 7)
    checkpoint.save_weights(tmp_path / "w.pth", net, name)
    back, got = checkpoint.load_weights(str(tmp_path / "w.pth"), expect=name)
    assert got == name and torch.equal(back(x), net(x))
    if name in model.TARGET_LAYERS:  # Grad-CAM's default layer exists and is spatial
        kept = {}
        layer = dict(net.named_modules())[model.TARGET_LAYERS[name]]
        h = layer.register_forward_hook(lambda m, i, o: kept.update(shape=o.shape))
        net(x)
        h.remove()
        assert len(kept["shape"]) == 4 and kept["shape"][-1] >= 3
