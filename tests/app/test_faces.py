"""Faces in photos and video: the crop geometry (with a stand-in detector: Haar cascades find no synthetic
face), app/photos.py and app/camera.py on photos and a video the tests make, and the real detector on
FER2013 faces pasted into scenes when ../shared is there."""
import json
import os
import re

from PIL import Image
from conftest import ROOT, needs_opencv, one_line, run_main
import numpy as np
import pytest
import synthetic_faces
import torch

from app import faces, mtcnn, tracking
import cli
import data
import model
from tools import measure_faces
import weights


class StandIn:
    """A detector that 'finds' the boxes it was given, whatever the picture."""
    boxes = np.zeros((0, 4), np.int64)

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, grey):
        return np.array(self.boxes, dtype=np.int64).reshape(-1, 4)


def scene_with(face, x, y, scale=3, size=(240, 320)):
    """A 48x48 face enlarged `scale` times (nearest pixel) into a mid-grey picture at (x, y)."""
    scene = np.full(size, 100, np.uint8)
    big = face.repeat(scale, 0).repeat(scale, 1)
    scene[y:y + big.shape[0], x:x + big.shape[1]] = big
    return scene


@pytest.fixture(scope="module")
def face():
    return synthetic_faces.synthetic_faces(7, seed=3)[0][3]


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "resnet.pth"
    torch.manual_seed(0)
    weights.save(path, weights.NETWORKS["resnet"](), "resnet")
    return path


def test_the_box_cut_without_margin_is_the_face_itself(face):
    grey = scene_with(face, 50, 30)
    assert np.array_equal(faces.crop(grey, (50, 30, 144, 144), margin=0.0), face)


def test_the_margin_widens_the_square_on_every_side(face):
    # 96 px face: with 25% margin the cut is 144 px, the face its middle
    grey = scene_with(face, 90, 60, scale=2)
    cut = faces.crop(grey, (90, 60, 96, 96), margin=0.25)
    assert cut.shape == (48, 48)
    small = np.asarray(Image.fromarray(face).resize((32, 32), Image.BOX)).astype(int)
    assert np.abs(cut[8:40, 8:40].astype(int) - small).mean() < 12
    assert (cut[:8] == 100).all() and (cut[:, :8] == 100).all()  # the grey around the face


def test_a_face_at_the_edge_is_padded_with_edge_pixels_not_black():
    grey = np.full((240, 320), 200, np.uint8)
    # the square reaches 20 px past the top and left edges
    cut = faces.crop(grey, (0, 0, 100, 100), margin=0.2)
    assert cut.shape == (48, 48) and (cut == 200).all()


def test_a_box_that_is_not_square_is_cut_square_around_its_centre(face):
    grey = scene_with(face, 50, 30)
    # centre (122, 102), side 144
    assert np.array_equal(faces.crop(grey, (50, 60, 144, 84), margin=0.0), face)


def test_find_says_why_a_picture_is_classified_whole_and_a_picture_without_a_face_has_none(face, monkeypatch):
    assert faces.find(face, StandIn())[1] == "a face crop already"
    boxes, how, _ = faces.find(scene_with(face, 10, 10), StandIn())
    assert how == "no face found" and len(boxes) == 0  # not classified as if it were a face
    assert "pip install -r requirements-faces.txt" in faces.find(scene_with(face, 10, 10), None)[1]
    assert "pip install --no-deps facenet-pytorch" in faces.find(scene_with(face, 10, 10), None)[1]
    monkeypatch.setattr(StandIn, "boxes", [[10, 10, 144, 144]])
    boxes, how, angles = faces.find(scene_with(face, 10, 10), StandIn())
    assert how == "faces" and boxes.tolist() == [[10, 10, 144, 144]] and angles.tolist() == [0.0]
    assert np.array_equal(faces.cut(scene_with(face, 10, 10), boxes)[0], face)


def test_tilted_eyes_are_levelled_before_the_cut_past_ten_degrees(face):
    """Two dark eyes 20 degrees off level come out level; a finder that sees eyes (MTCNN) turns a face only
    when they tilt past faces.LEVEL_PAST (docs/faces.md has the measurement)."""
    import math
    grey = np.full((300, 300), 100, np.uint8)
    a = math.radians(20)
    eyes = np.array([[150 - 40 * math.cos(a), 150 - 40 * math.sin(a)], [150 + 40 * math.cos(a), 150 + 40 * math.sin(a)]])
    for x, y in eyes:
        grey[int(y) - 4:int(y) + 5, int(x) - 4:int(x) + 5] = 0
    assert faces.level_angle(eyes) == pytest.approx(20)
    for angle, level in ((0.0, False), (faces.level_angle(eyes), True)):
        ys, xs = np.nonzero(faces.crop(grey, (90, 90, 120, 120), angle=angle) < 60)
        assert (abs(ys[xs < 24].mean() - ys[xs >= 24].mean()) < 1) == level

    class SeesEyes:
        def find(self, grey):
            return np.array([[90, 90, 120, 120], [10, 10, 60, 60]]), np.stack([eyes, [[20, 30], [50, 32]]])

    boxes, how, angles = faces.find(grey, SeesEyes())
    assert how == "faces" and angles[0] == pytest.approx(20) and angles[1] == 0.0  # 3.8 degrees: left as found


def test_a_small_faces_label_stays_whole_inside_the_picture():
    rgb = np.full((200, 300, 3), 255, np.uint8)
    marked = faces.label_faces(rgb, [(280, 185, 16, 14)], ["surprise 99%"])  # a tiny face in the corner
    black = (marked == 0).all(2)
    cols = np.flatnonzero(black.any(0))
    assert cols.max() - cols.min() > 60  # the whole label, shifted left to fit, not cut at the right edge
    assert black.any(1).nonzero()[0].max() < 200  # and above the face, inside the picture


def test_one_call_from_a_picture_to_its_faces_and_emotions(face, resnet_file):
    """faces.emotions: the documented call for people's own code, on a path, an array or a PIL image."""
    nets = weights.load_nets([resnet_file], "cpu")
    scene = scene_with(face, 20, 20)
    scene[20:164, 170:314] = face.repeat(3, 0).repeat(3, 1)[:, ::-1]
    finder = StandIn()
    finder.boxes = [[20, 20, 144, 144], [170, 20, 144, 144]]
    got = faces.emotions(Image.fromarray(scene).convert("RGB"), nets, detector=finder)
    assert [f["box"] for f in got] == [[20, 20, 144, 144], [170, 20, 144, 144]]
    probs = model.predict_proba(nets, torch.from_numpy(np.stack([face, face[:, ::-1].copy()])), "cpu").numpy()
    for f, p in zip(got, probs):
        assert list(f["probabilities"]) == list(data.CLASSES) and f["emotion"] == data.CLASSES[int(p.argmax())]
        assert np.allclose(list(f["probabilities"].values()), p, atol=1e-5)
    assert faces.emotions(scene, nets, detector=StandIn()) == []  # no face found: no answer
    assert faces.emotions(face, nets)[0]["box"] == [0, 0, 48, 48]  # a crop already
    with pytest.raises(TypeError, match="a path, a numpy array or a PIL image"):
        faces.emotions(42, nets)
    assert faces.emotions(face, nets[0]) == faces.emotions(face, nets)  # one network is an ensemble of one
    for wrong in ([], [resnet_file], "weights/resnet.pth"):  # what load_nets gives, not what it reads
        with pytest.raises(TypeError, match="nets: a list of networks, as weights.load_nets"):
            faces.emotions(face, wrong)
    for odd, words in ((face.astype(np.float64), "uint8 pixels"), (np.zeros((0, 5), np.uint8), "[0, 5]"),
                       (np.zeros((4, 4, 2), np.uint8), "[4, 4, 2]")):
        with pytest.raises(ValueError, match=re.escape(words)):
            faces.emotions(odd, nets)


def test_evaluate_images_gives_every_face_its_box_and_top_three(tmp_path, monkeypatch, face, resnet_file):
    scene = scene_with(face, 20, 20)
    scene[20:164, 170:314] = face.repeat(3, 0).repeat(3, 1)[:, ::-1]  # a second face, mirrored
    Image.fromarray(scene).convert("RGB").save(tmp_path / "two.jpg", quality=95)
    Image.fromarray(face).save(tmp_path / "crop.png")
    monkeypatch.setattr(faces, "best_detector", StandIn)
    monkeypatch.setattr(StandIn, "boxes", [[20, 20, 144, 144], [170, 20, 144, 144]])
    code, out, err = run_main("app/photos.py", "--weights", resnet_file, "--images", tmp_path / "two.jpg",
                              tmp_path / "crop.png", "--out", tmp_path / "marked", "--json", tmp_path / "f.json")
    assert code == 0, err
    assert out.count("faces found by StandIn") == 1  # which finder ran, said once
    assert "two.jpg: 2 faces" in out and "face 2 at x=170 y=20 w=144 h=144: " in out
    assert "crop.png (classified whole: a face crop already): " in out
    found = json.loads((tmp_path / "f.json").read_text())["images"]
    assert [f["box"] for f in found[0]["faces"]] == [[20, 20, 144, 144], [170, 20, 144, 144]]
    assert found[1]["whole"] and found[1]["faces"][0]["box"] == [0, 0, 48, 48]
    probs = found[0]["faces"][0]["probabilities"]  # one answer shape everywhere (faces.answer)
    assert list(probs) == list(data.CLASSES) and abs(sum(probs.values()) - 1) < 1e-4
    assert found[0]["faces"][0]["emotion"] == max(probs, key=probs.get)
    marked = np.asarray(Image.open(tmp_path / "marked" / "two_faces.png"))
    green = (marked[:, :, 1] > 200) & (marked[:, :, 0] < 60) & (marked[:, :, 2] < 60)
    assert marked.shape == (240, 320, 3) and green[40:160, 20].mean() > 0.9  # the photo, with a green box


def test_without_a_face_finder_a_photo_is_classified_whole_and_says_how_to_install(tmp_path, monkeypatch, face,
                                                                                    resnet_file):
    def missing():
        raise cli.DataError("finding faces needs OpenCV, an optional extra: pip install -r requirements-faces.txt")

    monkeypatch.setattr(faces, "opencv", missing)
    monkeypatch.setattr(mtcnn, "weights_folder", lambda: None)
    Image.fromarray(scene_with(face, 20, 20)).save(tmp_path / "photo.png")
    code, out, err = run_main("app/photos.py", "--weights", resnet_file, "--images", tmp_path / "photo.png")
    assert code == 0 and f"(classified whole: no face finder installed: {faces.INSTALL})" in out, err
    monkeypatch.setattr(faces, "_shared", [])  # the Python call gives an app no whole-photo answer: it says why
    nets = weights.load_nets([resnet_file], "cpu")
    with pytest.raises(cli.DataError, match="needs a face finder, and none is installed"):
        faces.emotions(tmp_path / "photo.png", nets)
    assert faces.emotions(face, nets)[0]["box"] == [0, 0, 48, 48]  # a crop still needs none
    code, _, err = run_main("app/camera.py", "--weights", resnet_file, "--source", "x.mp4", "--out",
                            tmp_path / "a.mp4")
    assert code == 1 and err.strip() == "camera.py: finding faces needs OpenCV, an optional extra: pip install " \
                                        "-r requirements-faces.txt"


def test_gradcam_explains_every_face_in_a_photo(tmp_path, monkeypatch, face, resnet_file):
    Image.fromarray(scene_with(face, 20, 20)).save(tmp_path / "photo.png")
    monkeypatch.setattr(faces, "best_detector", StandIn)
    monkeypatch.setattr(StandIn, "boxes", [[20, 20, 144, 144], [200, 100, 100, 100]])
    shipped = os.path.join(ROOT, "weights", "resnet.pth")  # a trained network: TTA changes its answers
    code, out, err = run_main("app/photos.py", "--weights", shipped, "--images", tmp_path / "photo.png",
                              "--gradcam", tmp_path / "cam.png", "--tta")
    assert code == 0, err
    assert "photo.png #1: predicted" in out and "photo.png #2: predicted" in out and (tmp_path / "cam.png").exists()
    for k in (1, 2):  # the figure shows the answer given above it, TTA and all
        answer = re.search(rf"face {k} at .*?: (\w+ \d+\.\d%)", out).group(1)
        assert f"photo.png #{k}: predicted {answer}" in out


@needs_opencv
def test_between_detections_a_moving_face_keeps_its_box_and_its_smoothed_label(face):
    """The tracker finds faces every 3rd frame here; in between it follows the face by template matching, and
    the label it shows is the moving average of the face's probabilities over all frames, across
    detections."""
    import cv2
    calls = []

    def detect(small):  # 'finds' the face where it is, on the half-size copy
        calls.append(small.shape)
        return np.array([[x0 // 2, 15, 72, 72]])

    tracker = tracking.Tracker(cv2, detect, every=3, scale=0.5)
    a, b = np.eye(7)[3], np.eye(7)[4]
    shown = None
    for k in range(6):
        x0 = 20 + 6 * k  # the face moves 6 pixels right every frame
        boxes = tracker.boxes(scene_with(face, x0, 30))
        assert len(boxes) == 1
        # followed, not left behind
        assert abs(boxes[0][0] - x0) <= 2 and abs(boxes[0][1] - 30) <= 2, (k, boxes)
        shown = tracker.classified([a if k < 3 else b])
    assert len(calls) == 2 and calls[0] == (120, 160)  # frames 0 and 3, each on a half-size copy
    expected = a
    for k in range(1, 6):
        expected = tracking.SMOOTH * expected + (1 - tracking.SMOOTH) * (a if k < 3 else b)
    assert np.allclose(shown[0], expected)  # one track throughout: the average spans the detection at frame 3


@needs_opencv
@pytest.mark.parametrize("step", [0, 5])
def test_a_box_taller_than_wide_stays_on_a_still_or_moving_face_between_detections(face, step):
    """Face finders give boxes of any proportions; the box followed between detections keeps the detected
    box's place on the face (a square template of a tall box slid it 28 px down on 4 frames of 5)."""
    import cv2
    where = {}

    def detect(small):  # the finder's box: as wide as the face, a fifth taller
        return np.array([[where["x"] // 2, 15, 72, 90]])

    tracker = tracking.Tracker(cv2, detect, every=5, scale=0.5)
    for k in range(10):
        where["x"] = 20 + step * k
        (x, y, w, h), = tracker.boxes(scene_with(face, where["x"], 30))
        assert (w, h) == (144, 180) and abs(x - where["x"]) <= 3 and abs(y - 30) <= 3, (k, x, y)


@needs_opencv
def test_a_new_frame_size_starts_the_tracking_afresh(face):
    import cv2
    tracker = tracking.Tracker(cv2, lambda small: np.array([[10, 10, 40, 40]]) if small.shape[1] > 100 else
                               np.zeros((0, 4), int), every=5, scale=0.5)
    assert len(tracker.boxes(scene_with(face, 20, 30))) == 1  # 320 x 240: found
    small = np.full((120, 160), 100, np.uint8)  # another camera: detected at once, nothing carried over
    assert tracker.boxes(small) == [] and tracker.frame == 1
    assert tracker.boxes(np.full((1, 1), 100, np.uint8)) == []  # a frame too small to scale: no face, no error
    assert len(tracker.boxes(scene_with(face, 20, 30))) == 1


def moving_face_video(path, face, frames):
    """A 320x240 video at 10 frames/s of the face moving 4 pixels right each frame."""
    import cv2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for k in range(frames):
        writer.write(cv2.cvtColor(scene_with(face, 20 + 4 * k, 30), cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


@needs_opencv
def test_camera_annotates_a_video_frame_by_frame(tmp_path, monkeypatch, face, resnet_file):
    import cv2
    video = moving_face_video(tmp_path / "clip.avi", face, 8)
    monkeypatch.setattr(faces, "best_detector", StandIn)
    monkeypatch.setattr(StandIn, "boxes", [[40, 30, 144, 144]])
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, out, err = run_main("app/camera.py", "--weights", resnet_file, "--source", video, "--out",
                              tmp_path / "out.avi")
    assert code == 0, err
    assert "8 frames of 320x240" in out and "frames/s (finding faces" in out and "classifying" in out
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    ok, frame = cap.read()
    assert ok and frame.shape == (240, 320, 3)
    code, _, err = run_main("app/camera.py", "--weights", resnet_file, "--source", video)
    assert code == 2 and "no display" in err and "--out" in err and len(err.strip().splitlines()) == 1


@needs_opencv
def test_a_video_is_analysed_into_a_table_and_a_plot_of_each_faces_emotions(tmp_path, monkeypatch, face, resnet_file):
    import csv
    video = moving_face_video(tmp_path / "clip.avi", face, 12)
    monkeypatch.setattr(faces, "best_detector", StandIn)
    monkeypatch.setattr(StandIn, "boxes", [[40, 30, 144, 144], [200, 20, 90, 90]])  # two faces, every frame
    code, out, err = run_main("app/camera.py", "--weights", resnet_file, "--source", video, "--csv", tmp_path / "e.csv",
                              "--plot", tmp_path / "e.png")
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp_path / "e.csv")))
    assert len(rows) == 24 and "24 rows, 2 face track(s)" in out
    assert list(rows[0])[:8] == ["frame", "seconds", "track", "x", "y", "w", "h", "emotion"]
    assert list(rows[0])[8:] == list(data.CLASSES)
    assert all(r["emotion"] == max(data.CLASSES, key=lambda c: float(r[c])) for r in rows)
    assert {r["track"] for r in rows} == {"1", "2"} and float(rows[-1]["seconds"]) == 1.1  # frame 11 at 10 frames/s
    assert all(abs(sum(float(r[c]) for c in data.CLASSES) - 1) < 1e-3 for r in rows)
    assert (tmp_path / "e.png").stat().st_size > 10000
    one_line(run_main("app/camera.py", "--weights", resnet_file, "--source", video, "--out", tmp_path / "x.avi", "--csv",
                      tmp_path / "x.avi"), 2, "name the same file")


@needs_opencv
def test_the_haar_detector_finds_fer2013_faces_pasted_into_scenes(fer2013):
    images, _ = fer2013["val"]
    rng = np.random.default_rng(0)
    detect = faces.HaarDetector()
    found, false = 0, 0
    for k in range(16):
        scene, truth = measure_faces.paste(rng, measure_faces.textured_scene(rng, 240, 320), images[k * 37].numpy())
        boxes = detect(scene)
        found += any(measure_faces.matches(b, truth) for b in boxes)
        false += sum(not measure_faces.matches(b, truth) for b in boxes)
    assert found >= 5 and false <= 4, (found, false)  # measured at n=16: docs/faces.md


@pytest.mark.skipif(mtcnn.weights_folder() is None, reason="MTCNN's weights (facenet-pytorch) are not installed")
def test_mtcnn_finds_34_of_40_fer2013_faces_in_scenes_with_at_most_2_false(fer2013):
    """docs/faces.md's table, on the same scenes: 40 PublicTest faces, two per textured 640x480 scene."""
    images, _ = fer2013["val"]
    rng = np.random.default_rng(0)
    images = images.numpy()[rng.choice(len(images), len(images), replace=False)]
    found, false, _, _ = measure_faces.count(mtcnn.MTCNNDetector(min_size=faces.MIN_SIZE),
                                             measure_faces.scenes_with_faces(rng, images, 20))
    assert found >= 34 and false <= 2, (found, false)  # measured: 37 found, 2 false


@pytest.mark.skipif(mtcnn.weights_folder() is None, reason="MTCNN's weights (facenet-pytorch) are not installed")
def test_mtcnns_work_per_picture_is_bounded():
    """However many windows pass P-Net, each pyramid level passes on at most `candidates` and R-Net and O-Net take
    at most that many, best first: a picture of thousands of small faces or of clutter costs bounded time and
    memory (docs/errors.md)."""
    from conftest import crowd_photo
    grey = faces.as_grey(crowd_photo())
    taken = {}
    for bound in (30, 10 ** 9):
        detector = mtcnn.MTCNNDetector(candidates=bound)
        batches = taken.setdefault(bound, [])
        for net in detector.nets[1:]:
            net.register_forward_hook(lambda module, args, out, batches=batches: batches.append(len(args[0])))
        boxes = detector(grey)
    assert max(taken[30]) <= 30 and max(taken[10 ** 9]) > 30  # the bound holds, and here it binds
    assert len(boxes) >= 60  # unbounded, most of the 80 faces are found
    assert mtcnn.CANDIDATES == 2000


def test_the_readmes_python_call_runs_from_another_folder(tmp_path, monkeypatch, face):
    """The README's snippet as a user runs it: from their own folder, the clone put on the path, the shipped
    weights named as the README names them."""
    import os
    import re

    from conftest import ROOT
    readme = open(os.path.join(ROOT, "README.md")).read()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    Image.fromarray(face).save(tmp_path / "group.jpg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))  # the snippet's insert is undone after
    printed = []
    exec(code.replace("path/to/fer2013-resnet", ROOT), {"print": lambda *a: printed.append(a)})
    (box, emotion, happy), = printed
    assert box == [0, 0, 48, 48] and emotion in data.CLASSES and 0 <= happy <= 1


def test_a_video_without_faces_plots_no_face_found_without_a_warning(tmp_path):
    import warnings

    from app import camera
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warned of an empty legend
        camera.plot_emotions(tmp_path / "e.png", [], "clip.mp4")
    assert (tmp_path / "e.png").stat().st_size > 1000


@needs_opencv
def test_a_videos_answers_are_one_call_away_as_the_csvs_table(tmp_path, monkeypatch, face, resnet_file):
    import pandas as pd
    video = moving_face_video(tmp_path / "clip.avi", face, 12)
    monkeypatch.setattr(faces, "best_detector", StandIn)
    monkeypatch.setattr(StandIn, "boxes", [[40, 30, 144, 144], [200, 20, 90, 90]])
    nets = weights.load_nets([resnet_file], "cpu")
    table = faces.video_emotions(video, nets)
    assert list(table.columns) == list(faces.VIDEO_COLUMNS) and len(table) == 24
    assert run_main("app/camera.py", "--weights", resnet_file, "--source", video, "--csv", tmp_path / "e.csv")[0] == 0
    csv = pd.read_csv(tmp_path / "e.csv")
    assert (csv[["frame", "track", "x", "y", "w", "h", "emotion"]] == table[["frame", "track", "x", "y", "w", "h",
                                                                            "emotion"]]).all().all()
    assert np.allclose(csv[list(data.CLASSES)], table[list(data.CLASSES)], atol=1e-5)
    with pytest.raises(cli.DataError, match="nothing.avi: no such video file"):
        faces.video_emotions(tmp_path / "nothing.avi", nets)
