"""export.py: networks (and an ensemble, as one graph) to ONNX; the file gives PyTorch's answers in
onnxruntime, says what it takes and returns, and the lines for an app in docs/export.md run as written."""
import builtins
import json
import os
import re

from conftest import ROOT, one_line, run_here
import numpy as np
import pytest
import synthetic_faces
import torch

from app import export
import data
import model
import weights


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """Two different small networks saved as weights files (the mlp exports in seconds)."""
    folder = tmp_path_factory.mktemp("w")
    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = weights.NETWORKS["mlp"]()
        with torch.no_grad():
            model.output_layer(net).weight.normal_(0, 0.05)  # not the zero start: answers that differ
        weights.save(folder / f"m{seed}.pth", net, "mlp")
        paths.append(folder / f"m{seed}.pth")
    (folder / "m2_calibration.json").write_text('{"temperature": 2.5}')  # the graph applies it too
    (folder / "m1_calibration.json").write_text(json.dumps({  # and the pair's own, on their average
        "temperature": 1.0, "ensembles": {"m1.pth + m2.pth": {"temperature": 0.5, "tta_temperature": 0.4}}}))
    return paths


def test_an_ensemble_exports_as_one_graph_with_pytorchs_probabilities(tmp_path, nets):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    r = run_here(export, "--weights", *nets, "--out", tmp_path / "pair.onnx")
    assert r.returncode == 0, r.stderr
    assert "same class for 100.0%" in r.stdout and "ms (onnxruntime)" in r.stdout, r.stdout
    assert r.stderr == ""  # the exporter's own notes are not the user's business
    session = ort.InferenceSession(str(tmp_path / "pair.onnx"))
    faces = torch.from_numpy(synthetic_faces.synthetic_faces(5, seed=9)[0])
    expected = model.predict_proba(weights.load_nets(nets, "cpu"), faces, "cpu").numpy()
    averaged = model.predict_proba(list(weights.load_nets(nets, "cpu")), faces, "cpu").numpy()  # no pair's T
    assert np.abs(expected - averaged).max() > 0.01
    for batch in (faces[:1], faces):  # any number of faces
        got = session.run(None, {"pixels": batch[:, None].float().numpy()})[0]
        assert np.allclose(got, expected[:len(batch)], atol=1e-5)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["classes"].split(",") == list(data.CLASSES)
    assert "0-255" in meta["input"] and "m1.pth, m2.pth" == meta["weights"]


def test_the_lines_for_an_app_in_the_docs_run_as_written(tmp_path, nets, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from PIL import Image
    assert run_here(export, "--weights", nets[0], "--out", tmp_path / "resnet.onnx").returncode == 0
    Image.fromarray(synthetic_faces.synthetic_faces(1, seed=4)[0][0]).resize((120, 120)).save(tmp_path / "face.png")
    doc = open(f"{ROOT}/docs/export.md").read()
    code = next(b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "onnxruntime" in b)
    monkeypatch.chdir(tmp_path)
    printed = []
    exec(code, {"print": printed.append})
    assert printed and printed[0] in data.CLASSES


def test_without_the_extras_it_says_what_to_install(tmp_path, nets, monkeypatch):
    real = builtins.__import__

    def no_onnx(name, *a, **k):
        if name.startswith("onnx"):
            raise ImportError(name=name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    one_line(run_here(export, "--weights", nets[0], "--out", tmp_path / "x.onnx"), 1,
             "pip install -r requirements-export.txt")
    one_line(run_here(export, "--weights", nets[0], "--out", tmp_path / "x.pt"), 2, "name an .onnx file")


def test_an_export_leaves_only_its_file(tmp_path):
    """The exporter puts a network's weights in a TMP.data file beside its graph (15-49 MB for the shipped
    networks); export.py writes one self-contained file and leaves nothing beside it."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    weights.save(tmp_path / "r.pth", weights.NETWORKS["resnet"](), "resnet")
    r = run_here(export, "--weights", tmp_path / "r.pth", "--out", tmp_path / "out" / "r.onnx")
    assert r.returncode == 0, r.stderr
    assert os.listdir(tmp_path / "out") == ["r.onnx"]


def test_data_without_a_val_split_checks_the_file_on_its_scored_split(tmp_path, nets):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    images, labels = synthetic_faces.synthetic_faces(14, seed=2)
    synthetic_faces.write_csv(tmp_path / "test.csv", images, labels, ["PrivateTest"] * 14)
    r = run_here(export, "--weights", nets[0], "--out", tmp_path / "m.onnx", "--data", tmp_path / "test.csv")
    assert r.returncode == 0 and "14 faces of test (PrivateTest)" in r.stdout, r.stderr
    r = run_here(export, "--weights", nets[0], "--out", tmp_path / "n.onnx", "--data", tmp_path / "none.csv")
    assert r.returncode == 1 and "no such file" in r.stderr and not (tmp_path / "n.onnx").exists()


@pytest.mark.skipif(__import__("app.mtcnn").mtcnn.weights_folder() is None,
                    reason="MTCNN's weights (facenet-pytorch) are not installed: the bundle's face finder")
def test_a_bundle_holds_the_classifier_the_face_finder_and_what_they_need(tmp_path, nets):
    """--out FOLDER: classifier.onnx, MTCNN's three networks with their licence, and bundle.json naming them with
    the finder's and the crop's settings; the runtime package, where installed, answers with it as PyTorch does."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from app import faces
    r = run_here(export, "--weights", *nets, "--out", tmp_path / "bundle")
    assert r.returncode == 0 and "wrote the bundle" in r.stdout and r.stderr == "", r.stderr
    assert sorted(os.listdir(tmp_path / "bundle")) == ["LICENSE-MTCNN.md", "bundle.json", "classifier.onnx",
                                                       "onet.onnx", "pnet.onnx", "rnet.onnx"]
    bundle = json.load(open(tmp_path / "bundle" / "bundle.json"))
    assert bundle["classes"] == list(data.CLASSES) and bundle["weights"] == ["m1.pth", "m2.pth"]
    assert bundle["classifier"]["temperatures"] == [1.0, 2.5] and bundle["classifier"]["average_temperature"] == 0.5
    assert bundle["crop"]["margin"] == faces.MARGIN and bundle["finder"]["min_size"] == faces.MIN_SIZE
    fe = pytest.importorskip("fer2013_emotions")
    crops = torch.from_numpy(synthetic_faces.synthetic_faces(6, seed=5)[0])
    expected = model.predict_proba(weights.load_nets(nets, "cpu"), crops, "cpu").numpy()
    assert np.allclose(fe.Recognizer(str(tmp_path / "bundle")).classify(crops.numpy()), expected, atol=1e-5)


def test_fp16_weights_are_stored_as_fp16_in_the_file(tmp_path):
    """The shipped weights files hold fp16 values, so the ONNX file stores them as fp16 too: half the size, the
    same numbers (a cast as it loads)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    net = weights.NETWORKS["resnet"]()
    weights.save(tmp_path / "r.pth", net, "resnet", half=True)
    assert run_here(export, "--weights", tmp_path / "r.pth", "--out", tmp_path / "r.onnx").returncode == 0
    graph = onnx.load(str(tmp_path / "r.onnx"))
    stored = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert sum(np.prod(t.dims) for t in stored) >= model.count_parameters(net)
    assert os.path.getsize(tmp_path / "r.onnx") < 2.2 * model.count_parameters(net)


def test_a_bundle_without_mtcnns_weights_says_what_to_install(tmp_path, nets, monkeypatch):
    pytest.importorskip("onnxscript")
    from app import mtcnn
    monkeypatch.setattr(mtcnn, "weights_folder", lambda: None)
    one_line(run_here(export, "--weights", nets[0], "--out", tmp_path / "bundle"), 1, "facenet-pytorch")
    assert not (tmp_path / "bundle").exists()
    one_line(run_here(export, "--weights", nets[0], "--out", tmp_path / "x.pt"), 2, "or a folder for the bundle")
    (tmp_path / "notes").write_text("mine")  # a file without an extension is not a bundle folder to write into
    one_line(run_here(export, "--weights", nets[0], "--out", tmp_path / "notes"), 2, "or a folder for the bundle")
    assert (tmp_path / "notes").read_text() == "mine"
