"""weights.py: weights files save and load exactly, and every file that cannot be used is refused in one line;
tools/adopt_weights.py turns someone else's file into one."""
import os
import pickle

from conftest import FAST, SYNTHETIC, one_line, run_main, run_script
import pytest
import synthetic_faces
import torch

import data
import model
import weights


class Pickled:  # a weights file carrying code: refused by weights_only loading
    pass


def train_history(out, *args):
    assert run_main("train.py", *FAST, "--epochs", "1", "--out", out, *args)[0] == 0
    return [line.split(",")[:-1] for line in (out / "history.csv").read_text().splitlines()]  # not seconds


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_weights_cast_to_whole_numbers_are_refused_not_scored(tmp_path):
    state = {k: v.to(torch.int8) if v.is_floating_point() else v for k, v in weights.NETWORKS["mlp"]().state_dict().items()}
    torch.save({"model": "mlp", "state_dict": state}, tmp_path / "int8.pth")
    one_line(run_main("evaluate.py", "--weights", tmp_path / "int8.pth", "--data", SYNTHETIC), 1,
             "int8.pth: holds whole numbers (torch.int8)", "use the float file")


def test_weights_of_an_unknown_network_name_the_file(tmp_path):
    torch.save({"model": "alexnet", "state_dict": {}}, tmp_path / "alex.pth")
    one_line(run_main("app/photos.py", "--weights", tmp_path / "alex.pth", "--images", "x.png"), 1,
             "alex.pth", "unknown network 'alexnet'")


def test_pickled_code_is_refused_without_terminal_colour_codes(tmp_path):
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"model": Pickled()}, f)
    torch.save({"x": Pickled()}, tmp_path / "evil2.pth")
    for name in ("evil.pth", "evil2.pth"):
        result = run_main("app/photos.py", "--weights", tmp_path / name, "--images", "x.png")
        one_line(result, 1, name, "not a usable weights file", "refused for safety")
        assert "\x1b" not in result[2]


def test_someone_elses_state_dict_is_adopted_once_then_loads(tmp_path):
    """A bare state_dict (DDP's "module." prefix too), or a dict holding one, is refused with the command that
    converts it; tools/adopt_weights.py writes it as a weights file of this project."""
    net = weights.NETWORKS["cnn2"]()
    for name, blob in (("bare.pth", net.state_dict()), ("ddp.pth", {f"module.{k}": v for k, v in net.state_dict().items()}),
                       ("theirs.pt", {"epoch": 3, "model_state_dict": net.state_dict(), "optimizer_state_dict": {}})):
        torch.save(blob, tmp_path / name)
        one_line(run_main("evaluate.py", "--weights", tmp_path / name, "--data", SYNTHETIC), 1, name,
                 "python tools/adopt_weights.py")
        code, out, err = run_main("tools/adopt_weights.py", tmp_path / name, tmp_path / f"ours_{name}")
        assert code == 0 and "a cnn2 network" in out, err
        loaded, got = weights.load(tmp_path / f"ours_{name}")
        assert got == "cnn2" and all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    torch.save({"w": torch.zeros(3)}, tmp_path / "other.pth")
    torch.save({"a": net.state_dict(), "b": net.state_dict()}, tmp_path / "two.pt")
    one_line(run_main("tools/adopt_weights.py", tmp_path / "other.pth", tmp_path / "o.pth"), 1, "no state_dict that fits")
    one_line(run_main("tools/adopt_weights.py", tmp_path / "two.pt", tmp_path / "o.pth"), 1, "more than one")


def test_another_class_order_is_adopted_into_fer2013s_and_nan_weights_refused(tmp_path):
    net = weights.NETWORKS["mlp"]().eval()
    order = [6, 5, 4, 3, 2, 1, 0]
    head = net.net[-1]
    permuted = weights.NETWORKS["mlp"]().eval()
    permuted.load_state_dict(net.state_dict())
    with torch.no_grad():  # the same network with its outputs in another order, saved under that order
        permuted.net[-1].weight.copy_(head.weight[order])
        permuted.net[-1].bias.copy_(head.bias[order])
    weights.save(tmp_path / "a.pth", net, "mlp")
    blob = {"model": "mlp", "classes": [data.CLASSES[i].title() for i in order], "state_dict": permuted.state_dict()}
    torch.save(blob, tmp_path / "b.pth")
    with pytest.raises(weights.WeightsError, match="are not FER2013's in order"):
        weights.load(tmp_path / "b.pth")
    assert run_main("tools/adopt_weights.py", tmp_path / "b.pth", tmp_path / "b2.pth")[0] == 0
    images = torch.from_numpy(synthetic_faces.synthetic_faces(20, seed=2)[0])
    a, b = (model.predict_proba(weights.load_nets([tmp_path / n], "cpu"), images, "cpu") for n in ("a.pth", "b2.pth"))
    assert torch.allclose(a, b, atol=1e-6)
    blob["state_dict"] = {k: v * float("nan") for k, v in net.state_dict().items()}
    blob["classes"] = list(data.CLASSES)
    torch.save(blob, tmp_path / "nan.pth")
    one_line(run_main("evaluate.py", "--weights", tmp_path / "nan.pth", "--data", SYNTHETIC), 1,
             "nan.pth", "NaN or infinite weights")


@pytest.mark.parametrize("change", [{"meta": "hello"}, {"state_dict": [1, 2]}, {"classes": 7},
                                    {"state_dict": {"w": "x"}}], ids=["meta", "list", "classes", "strings"])
def test_a_weights_file_with_other_kinds_of_values_is_one_line(tmp_path, change):
    blob = {"model": "mlp", "classes": list(data.CLASSES), "state_dict": weights.NETWORKS["mlp"]().state_dict(),
            "meta": {}, **change}
    torch.save(blob, tmp_path / "w.pth")
    one_line(run_main("evaluate.py", "--weights", tmp_path / "w.pth", "--data", SYNTHETIC), 1,
             "w.pth: not a usable weights file", repr(next(iter(change))))


@pytest.mark.parametrize("script", ["evaluate.py", "gradcam.py"])
def test_bad_weights_files_are_one_line(tmp_path, script):
    (tmp_path / "junk.pth").write_bytes(b"junk")
    out = ["--out", tmp_path / "g.png"] if script == "gradcam.py" else []  # gradcam.py writes only where told
    one_line(run_script(script, "--weights", tmp_path / "junk.pth", "--data", SYNTHETIC, *out), 1,
                   "junk.pth", "not a usable weights file")
    one_line(run_script(script, "--weights", tmp_path / "absent.pth", "--data", SYNTHETIC, *out), 1,
                   "absent.pth: no such file")


def test_weights_round_trip_in_fp32_and_fp16(tmp_path):
    net = weights.NETWORKS["resnet"]().eval()
    x = torch.randn(3, 1, 48, 48)
    weights.save(tmp_path / "w.pth", net, "resnet", {"epoch": 3})
    back, name = weights.load(str(tmp_path / "w.pth"))
    assert name == "resnet" and not back.training
    assert torch.equal(back(x), net(x))
    weights.save(tmp_path / "h.pth", net, "resnet", half=True)
    half, _ = weights.load(str(tmp_path / "h.pth"))
    assert half.head[1].weight.dtype == torch.float32  # fp16 on disk, fp32 in memory
    assert torch.allclose(half(x), net(x), atol=0.05, rtol=0.01)
    assert os.path.getsize(tmp_path / "h.pth") < 0.55 * os.path.getsize(tmp_path / "w.pth")


def test_weights_of_another_network_are_refused_naming_what_differs(tmp_path):
    net = weights.NETWORKS["resnet"]()
    state = net.state_dict()
    state["head.4.weight"] = torch.zeros(3, 2048)
    del state["stem.1.bias"]
    torch.save({"model": "resnet", "classes": [], "state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(weights.WeightsError, match=r"missing \['stem.1.bias'\].*head.4.weight \(3, 2048\)"):
        weights.load(str(tmp_path / "bad.pth"))
    with pytest.raises(weights.WeightsError, match="holds a 'resnet' network, not 'vgg'"):
        weights.save(tmp_path / "ok.pth", net, "resnet")
        weights.load(str(tmp_path / "ok.pth"), expect="vgg")


def test_a_weights_file_carrying_a_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": "resnet", "state_dict": {}, "x": Payload()}, path)
    with pytest.raises(weights.WeightsError, match="not a usable weights file"):
        weights.load(str(path))
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(Payload(), f)
    with pytest.raises(weights.WeightsError):
        weights.load(str(tmp_path / "plain.pkl"))


@pytest.mark.parametrize("content", [b"", b"not a torch file at all", None])
def test_empty_garbage_and_truncated_files_are_refused(tmp_path, content):
    path = tmp_path / "w.pth"
    if content is None:  # a real file, cut in half
        weights.save(path, weights.NETWORKS["resnet"](), "resnet")
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(weights.WeightsError, match="w.pth: not a usable weights file"):
        weights.load(str(path))


def test_an_interrupted_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    net = weights.NETWORKS["resnet"]()
    weights.save(path, net, "resnet", {"epoch": 1})
    before = path.read_bytes()
    real_save = torch.save

    def dies_halfway(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(1000)
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        weights.save(path, net, "resnet", {"epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]  # no temporary file left behind


def test_an_onnx_file_given_as_weights_is_named_as_one(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    one_line(run_main("evaluate.py", "--weights", tmp_path / "model.onnx", "--data", SYNTHETIC), 1,
             "model.onnx: an ONNX file", "the .pth it was exported from")
