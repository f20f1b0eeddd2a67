"""fer2013_emotions, the runtime package: installed alone (onnxruntime, numpy, Pillow; no PyTorch) it answers
pictures, numpy frames, PIL images and video files in the project's one answer shape, with one-line errors.
Its answers equal the PyTorch path's: tests/app/test_runtime.py, where both are installed."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

fe = pytest.importorskip("fer2013_emotions", reason="the runtime package is not installed: pip install ./runtime")
from PIL import Image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "weights", "faces_example.jpg")  # a portrait, one face


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """A photo with three faces: the portrait, a smaller copy, and a copy turned 18 degrees (levelled before it is
    classified)."""
    face = Image.open(EXAMPLE).convert("RGB")
    canvas = Image.new("RGB", (900, 420), (90, 110, 130))
    canvas.paste(face, (0, 0))
    canvas.paste(face.resize((face.width * 6 // 10, face.height * 6 // 10), Image.BILINEAR), (face.width + 10, 60))
    canvas.paste(face.rotate(18, resample=Image.BILINEAR, fillcolor=(90, 110, 130)), (face.width * 16 // 10 + 20, 20))
    path = tmp_path_factory.mktemp("photos") / "group.png"
    canvas.save(path)
    return path


def run(*args):
    return subprocess.run([sys.executable, "-m", "fer2013_emotions", *map(str, args)], capture_output=True, text=True)


def test_a_photo_with_several_faces_gets_one_answer_per_face_left_to_right(group):
    answers = fe.emotions(group)
    assert len(answers) == 3
    assert [a["box"][0] for a in answers] == sorted(a["box"][0] for a in answers)
    for a in answers:
        assert set(a) == {"box", "emotion", "probabilities", "crop"}
        assert list(a["probabilities"]) == list(fe.CLASSES)
        assert abs(sum(a["probabilities"].values()) - 1) < 1e-4
        assert a["emotion"] == max(a["probabilities"], key=a["probabilities"].get)
        x, y, w, h = a["box"]
        assert a["crop"]["center"] == [x + w / 2, y + h / 2] and a["crop"]["side"] == max(w, h)
    assert [a["crop"]["angle"] != 0 for a in answers] == [False, False, True]  # the turned face, levelled


def test_a_numpy_frame_a_pil_image_and_a_path_are_answered_alike(group):
    rgb = np.asarray(Image.open(group).convert("RGB"))
    by_path = fe.emotions(group)
    assert fe.emotions(rgb) == by_path
    assert fe.emotions(Image.open(group)) == by_path
    grey = np.asarray(Image.open(group).convert("L"))
    assert fe.emotions(grey) == by_path


def test_a_face_crop_is_classified_whole_and_a_picture_without_a_face_has_no_answer():
    crop = np.asarray(Image.open(EXAMPLE).convert("L").resize((48, 48)))
    (answer,) = fe.emotions(crop)
    assert answer["box"] == [0, 0, 48, 48]
    assert fe.emotions(np.full((300, 400), 128, np.uint8)) == []


def test_what_cannot_be_a_picture_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"\[H, W\] grey or \[H, W, 3\] colour"):
        fe.emotions(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="uint8 pixels"):
        fe.emotions(np.zeros((200, 200), np.float32))
    with pytest.raises(TypeError, match="a path, a numpy array or a PIL image"):
        fe.emotions(b"bytes")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(fe.PictureError, match="broken.jpg: unreadable image"):
        fe.emotions(tmp_path / "broken.jpg")
    with pytest.raises(fe.PictureError, match="missing.jpg: no such file"):
        fe.emotions(tmp_path / "missing.jpg")
    with pytest.raises(fe.PictureError, match="not a bundle of app/export.py"):
        fe.Recognizer(str(tmp_path))


def test_the_command_prints_photos_py_json_and_goes_on_past_an_unreadable_file(group, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    r = run(group, tmp_path / "broken.png")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "1 of 2 files could not be read" in r.stderr and "Traceback" not in r.stderr
    first, second = json.loads(r.stdout)["images"]
    assert first == {"file": str(group), "whole": False, "note": "faces", "faces": fe.emotions(group)}
    assert set(second) == {"file", "error"}
    r = run(tmp_path / "nowhere.jpg", "--bundle", tmp_path)
    assert r.returncode == 1 and "not a bundle" in r.stderr and "Traceback" not in r.stderr


def test_a_damaged_bundle_and_a_bad_flag_are_one_line(group, tmp_path):
    import shutil
    shutil.copytree(fe.BUNDLE, tmp_path / "bundle")
    (tmp_path / "bundle" / "classifier.onnx").write_bytes(b"not a network")
    with pytest.raises(fe.PictureError, match="classifier.onnx: not an ONNX file onnxruntime can load"):
        fe.Recognizer(str(tmp_path / "bundle"))
    r = run(group, "--bundle", tmp_path / "bundle")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "classifier.onnx" in r.stderr, r.stderr
    r = run(group, "--every", "0")
    assert r.returncode == 2 and "--every must be >= 1" in r.stderr and "Traceback" not in r.stderr


def test_a_folder_means_its_pictures(group):
    r = run(group.parent)
    assert r.returncode == 0, r.stderr
    assert [i["file"] for i in json.loads(r.stdout)["images"]] == [str(group)]


def test_a_video_is_answered_frame_by_frame(group, tmp_path):
    cv2 = pytest.importorskip("cv2", reason="video needs OpenCV: pip install ./runtime[video]")
    frame = cv2.imread(str(group))
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0]))
    for shift in (0, 4, 8):
        writer.write(np.roll(frame, shift, axis=1))
    writer.release()
    frames = fe.video_emotions(path)
    assert [f["frame"] for f in frames] == [0, 1, 2] and frames[1]["seconds"] == 0.1
    assert [len(f["faces"]) for f in frames] == [3, 3, 3]
    assert frames[2]["faces"][0]["box"][0] - frames[0]["faces"][0]["box"][0] in range(6, 11)  # it moved 8 px
    assert [f["frame"] for f in fe.video_emotions(path, every=2)] == [0, 2]
    r = run(path)
    assert r.returncode == 0 and len(json.loads(r.stdout)["images"][0]["frames"]) == 3, r.stderr


def test_it_runs_without_pytorch(group):
    """The package never imports torch, wherever torch is installed."""
    code = ("import sys, fer2013_emotions as fe; fe.emotions(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'app', 'model', 'data')))")
    r = subprocess.run([sys.executable, "-c", code, str(group)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


@pytest.mark.parametrize("readme", ["README.md", "runtime/README.md", "docs/export.md"])
def test_the_lines_in_the_readmes_run_as_written(readme, group, tmp_path, monkeypatch):
    import re
    import shutil
    text = open(os.path.join(HERE, "..", "..", readme)).read()
    code = next(b for b in re.findall(r"```(?:python)?\n(.*?)```", text, re.S) if "import fer2013_emotions" in b)
    shutil.copy(group, tmp_path / "group.jpg")
    monkeypatch.chdir(tmp_path)
    if "clip.mp4" in code:  # a video as the lines name it
        cv2 = pytest.importorskip("cv2", reason="video needs OpenCV: pip install ./runtime[video]")
        frame = cv2.imread("group.jpg")
        writer = cv2.VideoWriter("clip.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 10, frame.shape[1::-1])
        writer.write(frame)
        writer.release()
    if "my_bundle/" in code:
        shutil.copytree(fe.BUNDLE, "my_bundle")
    printed = []
    exec(code.replace("    ...", "    printed.append(frame)"), {"print": lambda *a: printed.append(a),
                                                                  "printed": printed})
    assert printed and printed[0][1] in fe.CLASSES
