"""The runtime package (runtime/, fer2013_emotions: onnxruntime, no PyTorch) answers as the PyTorch path answers:
the same faces, the same boxes exactly, probabilities within 1e-5, the crop the same square. Its own behaviour
without PyTorch is specified in runtime/tests/."""
import json
import os
import subprocess
import sys

from PIL import Image
from conftest import ROOT, TOLERANCE, assert_same, crowd_photo, group_photo, needs_opencv, run_script
import numpy as np
import pytest
import synthetic_faces
import torch

from app import faces, mtcnn
import model
from tools import measure_faces
import weights

fe = pytest.importorskip("fer2013_emotions", reason="the runtime package is not installed: pip install ./runtime")
pytestmark = pytest.mark.skipif(mtcnn.weights_folder() is None,
                                reason="MTCNN's weights (facenet-pytorch) are not installed: the PyTorch path's "
                                       "finder is then another")


@pytest.fixture(scope="module")
def both():
    """(the runtime's shipped bundle, the PyTorch path with the weights it was exported from, MTCNN)."""
    return fe.Recognizer(), weights.load_nets([os.path.join(ROOT, "weights", "resnet.pth")], "cpu"), \
        mtcnn.MTCNNDetector()


def test_a_photo_with_several_faces_gets_the_pytorch_paths_answers(both):
    runtime, nets, detector = both
    photo = group_photo()
    theirs = faces.emotions(photo, nets, detector=detector)
    assert len(theirs) == 3 and theirs[2]["crop"]["angle"] != 0  # the turned face is levelled on both paths
    assert_same(runtime.emotions(photo), theirs)


def test_a_crowd_gets_the_same_answers_with_the_work_bounded_alike(both):
    """Eighty faces: bounded to 30 windows a stage, both paths keep the same 30; unbounded, the same faces too."""
    runtime, nets, _ = both
    crowd = crowd_photo()
    for bound in (30, mtcnn.CANDIDATES):
        runtime.finder.candidates = bound
        ours = runtime.emotions(crowd)
        assert_same(ours, faces.emotions(crowd, nets, detector=mtcnn.MTCNNDetector(candidates=bound)))
    runtime.finder.candidates = runtime.bundle["finder"]["candidates"]
    assert runtime.finder.candidates == mtcnn.CANDIDATES and len(ours) >= 60


def test_fer2013_faces_in_scenes_get_the_same_boxes_and_answers(both, fer2013):
    """Sixteen PublicTest faces pasted into eight textured scenes (tools/measure_faces.py's): MTCNN's candidates
    over clutter go through every stage, and the false faces must agree too."""
    runtime, nets, detector = both
    rng = np.random.default_rng(0)
    images = fer2013["val"][0].numpy()
    for scene, _, _ in measure_faces.scenes_with_faces(rng, images[rng.permutation(len(images))], 8):
        assert_same(runtime.emotions(scene), faces.emotions(scene, nets, detector=detector))


def test_publictest_faces_get_pytorchs_probabilities(both, fer2013):
    runtime, nets, _ = both
    crops = fer2013["val"][0][:512]
    theirs = model.predict_proba(nets, crops, "cpu").numpy()
    assert np.abs(runtime.classify(crops.numpy()) - theirs).max() <= TOLERANCE


def test_the_shipped_bundle_is_resnet_pths(both):
    """Re-shipping weights/resnet.pth or its calibration without exporting the bundle again fails here."""
    runtime, nets, _ = both
    assert runtime.bundle["weights"] == ["resnet.pth"]
    assert runtime.bundle["classifier"]["temperatures"] == [nets[0].temperature]
    crops = torch.from_numpy(synthetic_faces.synthetic_faces(64, seed=3)[0])
    theirs = model.predict_proba(nets, crops, "cpu").numpy()
    assert np.abs(runtime.classify(crops.numpy()) - theirs).max() <= TOLERANCE
    assert runtime.crop == {**runtime.crop, "margin": faces.MARGIN, "level_past_degrees": faces.LEVEL_PAST,
                            "whole_up_to": faces.SMALL}
    assert runtime.bundle["finder"]["min_size"] == faces.MIN_SIZE


@needs_opencv
def test_a_videos_frames_get_the_pytorch_paths_answers(both, tmp_path):
    import cv2
    runtime, nets, detector = both
    frame = cv2.cvtColor(group_photo(), cv2.COLOR_RGB2BGR)
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0]))
    for shift in (0, 5):
        writer.write(np.roll(frame, shift, axis=1))
    writer.release()
    cap, decoded = cv2.VideoCapture(path), []
    while (got := cap.read())[0]:
        decoded.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2GRAY))
    ours = list(runtime.video(path))
    assert len(ours) == len(decoded) == 2
    for answer, grey in zip(ours, decoded):
        assert_same(answer["faces"], faces.emotions(grey, nets, detector=detector))


def test_the_command_prints_what_photos_py_json_holds(both, tmp_path):
    Image.fromarray(group_photo()).save(tmp_path / "group.png")
    r = run_script("app/photos.py", "--weights", os.path.join(ROOT, "weights", "resnet.pth"), "--images",
                   tmp_path / "group.png", "--json", tmp_path / "torch.json")
    assert r.returncode == 0, r.stderr
    ours = subprocess.run([sys.executable, "-m", "fer2013_emotions", str(tmp_path / "group.png")], capture_output=True,
                          text=True)
    (mine,), (theirs,) = json.loads(ours.stdout)["images"], json.load(open(tmp_path / "torch.json"))["images"]
    assert {k: v for k, v in mine.items() if k != "faces"} == {k: v for k, v in theirs.items() if k != "faces"}
    assert_same(mine["faces"], theirs["faces"])
