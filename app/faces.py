"""Faces in photos and video frames: find them, and cut each one out as FER2013 cut its faces.

FER2013's faces are tight, square, upright crops, 48x48 grey, with a little margin around the face. A face
found in a photo is cut the same way: the square around the detector's box, widened by MARGIN on each side,
grey (the same luminance as readers.read_grey), resized to 48x48 with area averaging.

Two face finders, both optional extras; everything else in this project works without them. MTCNN (mtcnn.py,
its weights from `pip install --no-deps facenet-pytorch==2.6.0`) finds more faces with fewer false ones and is
used where it is installed; OpenCV's Haar cascade (`pip install -r requirements-faces.txt`) otherwise. The
cascade, the parameters and the margins were chosen by measurement (tools/measure_faces.py, docs/faces.md).
"""
import os
import warnings

import numpy as np
import torch

import data
import cli
import model
from app import mtcnn
import readers

INSTALL = f"pip install -r requirements-faces.txt (OpenCV), and for better finding {mtcnn.INSTALL} (MTCNN)"
SMALL = 96  # an image this size or smaller is taken as a face crop already (FER2013's are 48x48)

# Chosen by measurement (tools/measure_faces.py): FER2013 faces pasted into scenes, and scenes with no face.
CASCADE = "haarcascade_frontalface_alt2.xml"
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
MIN_SIZE = 40  # pixels: smaller "faces" are mostly texture, and too small to classify anyway
# Of the box's side, on each side: both finders' boxes, squared, are about FER2013's crop already.
MARGIN = 0.0
# Where MTCNN's eyes tilt more than this (degrees), the face is turned level before it is cut. Past it,
# levelling gains; under it, it costs, since FER2013's own faces tilt a little and the networks learnt them so
# (the measurement: docs/faces.md).
LEVEL_PAST = 10.0


def best_detector(min_size=MIN_SIZE):
    """The best face finder installed, built once per call: MTCNN, else the Haar cascade, else None (pictures
    are then classified whole, with a line saying how to install one). `min_size`: the smallest face,
    pixels."""
    try:
        return mtcnn.MTCNNDetector(min_size=min_size)
    except FileNotFoundError:
        pass
    try:
        return HaarDetector(min_size=min_size)
    except cli.DataError:
        return None


class HaarDetector:
    """grey uint8 [H, W] -> boxes int [K, 4] as (x, y, w, h), left to right. Needs OpenCV."""

    def __init__(self, cascade=CASCADE, scale_factor=SCALE_FACTOR, min_neighbors=MIN_NEIGHBORS,
                 min_size=MIN_SIZE):
        cv2 = opencv()
        self.cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, cascade))
        if self.cascade.empty():
            raise cli.DataError(f"OpenCV has no cascade {cascade!r} in {cv2.data.haarcascades}")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size

    def __call__(self, grey):
        boxes = self.cascade.detectMultiScale(grey, scaleFactor=self.scale_factor,
                                              minNeighbors=self.min_neighbors,
                                              minSize=(self.min_size, self.min_size))
        boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        return boxes[np.argsort(boxes[:, 0], kind="stable")]


def opencv():
    try:
        import cv2
    except ImportError:
        raise cli.DataError(f"finding faces needs OpenCV, an optional extra: {INSTALL}") from None
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise cli.DataError(f"this OpenCV ({cv2.__version__}) has no Haar cascades; {INSTALL} installs one "
                             "that has (4.x)")
    return cv2


def crop(grey, box, margin=MARGIN, angle=0.0):
    """The square around `box` (x, y, w, h), widened by `margin` x its side on each side, as a 48x48 uint8
    face. Outside the picture is filled with the nearest edge pixels, so a face at the border is not cut by
    black. `angle` (degrees, from level_angle): the square is turned by it first, so tilted eyes come out
    level."""
    from PIL import Image
    cx, cy, side = square(box, margin)
    reach = side * (0.75 if angle else 0.5)  # a turned square's corners reach out to side / sqrt(2)
    left, top = int(round(cx - reach)), int(round(cy - reach))
    size = max(1, int(round(2 * reach)))
    rows = np.clip(np.arange(top, top + size), 0, grey.shape[0] - 1)
    cols = np.clip(np.arange(left, left + size), 0, grey.shape[1] - 1)
    patch = Image.fromarray(grey[rows[:, None], cols[None, :]])
    if angle:
        inner = (size - side) / 2
        patch = patch.rotate(angle, resample=Image.BILINEAR).crop((inner, inner, inner + side, inner + side))
    return np.array(patch.resize((data.SIZE, data.SIZE), Image.BOX))


def square(box, margin=MARGIN):
    """(centre x, centre y, side) of the square crop() cuts around `box` (x, y, w, h)."""
    x, y, w, h = (float(v) for v in box)
    return x + w / 2, y + h / 2, max(w, h) * (1 + 2 * margin)


def level_angle(eyes):
    """The angle (degrees) that levels a face's eyes [2, 2] ((x, y) of each): crop(..., angle=it). To a hundredth
    of a degree, as the answer states it: the crop an answer describes is the one the network saw."""
    (x0, y0), (x1, y1) = eyes
    return round(float(np.degrees(np.arctan2(y1 - y0, x1 - x0))), 2)


def find(grey, detector):
    """(boxes [K, 4], how, angles [K]): the faces in a grey picture, how they were found, and the angle that
    levels each one's eyes (0 unless MTCNN saw them tilt past LEVEL_PAST). how is "faces"; or the picture is
    taken whole as one face, "a face crop already" (small) or, with detector None (none installed), how to
    install face finding; or "no face found", with no box: a picture without a face is not classified as if
    it were one."""
    h, w = grey.shape
    whole = np.array([[0, 0, w, h]], dtype=np.int64)
    if max(h, w) <= SMALL:
        return whole, "a face crop already", np.zeros(1)
    if detector is None:
        return whole, f"no face finder installed: {INSTALL}", np.zeros(1)
    if hasattr(detector, "find"):  # MTCNN: the eyes too
        boxes, eyes = detector.find(grey)
        angles = np.array([level_angle(e) for e in eyes])
        angles[np.abs(angles) < LEVEL_PAST] = 0.0
    else:
        boxes = detector(grey)
        angles = np.zeros(len(boxes))
    if len(boxes) == 0:
        return np.zeros((0, 4), np.int64), "no face found", np.zeros(0)
    return boxes, "faces", angles


def cut(grey, boxes, angles=None):
    """Each box's face cut as FER2013 cut its faces (crop), turned by its angle: uint8 [K, 48, 48]."""
    if len(boxes) == 0:
        return np.zeros((0, data.SIZE, data.SIZE), np.uint8)
    angles = np.zeros(len(boxes)) if angles is None else angles
    return np.stack([crop(grey, b, angle=a) for b, a in zip(boxes, angles)])


def classify(grey, boxes, nets, device="cpu", tta=False, autocast=False, angles=None):
    """The seven probabilities [K, 7] (data.CLASSES order) of the faces at `boxes`, cut (levelled by
    `angles`) and classified in one batch. Every answer this project gives about a picture comes from here:
    photos.py, camera.py's followed faces, serve.py and emotions()."""
    return model.predict_proba(nets, torch.from_numpy(cut(grey, boxes, angles)), device, tta,
                                autocast=autocast).numpy()


def find_in_files(paths, detector=None):
    """(path, grey, boxes, how, angles, finder) for each image file, as find() gives them, and the name of the
    finder that searched it (None where none did). The detector is built once, when the first picture too big to
    be a crop needs it; with none installed those pictures are classified whole. A file that cannot be read comes
    back with grey None and `how` saying why, so the work goes on past it."""
    tried = detector is not None
    for path in paths:
        try:
            grey = readers.read_grey(path)
        except cli.DataError as e:
            yield path, None, np.zeros((0, 4), np.int64), str(e), np.zeros(0), None
            continue
        if max(grey.shape) > SMALL and not tried:
            detector, tried = best_detector(), True
        searched = max(grey.shape) > SMALL and detector is not None
        yield (path, grey, *find(grey, detector), finder_name(detector) if searched else None)


def finder_name(detector):
    """How a face finder is named to the user: which one ran."""
    return {mtcnn.MTCNNDetector: "MTCNN", HaarDetector: "OpenCV's Haar cascade"}.get(type(detector),
                                                                                    type(detector).__name__)


def answer(box, probs, track=None, angle=0.0):
    """One face's answer, the one shape every output gives (photos.py --json, emotions(), the page's JSON, the
    runtime package's; the video CSV's columns are its fields): {"box": [x, y, w, h] in the picture's pixels,
    "emotion": the likeliest class, "probabilities": {class: probability} in data.CLASSES order, "crop": the
    square the network saw, {"center": [x, y], "side": pixels, "angle": degrees it was turned by to level the
    eyes}}, and "track" (a followed face's number) where there is one."""
    cx, cy, side = square(box)
    out = {"box": [int(v) for v in box], "emotion": data.CLASSES[int(np.argmax(probs))],
           "probabilities": {c: round(float(v), 6) for c, v in zip(data.CLASSES, probs)},
           "crop": {"center": [round(cx, 2), round(cy, 2)], "side": round(side, 2), "angle": round(float(angle), 2)}}
    if track is not None:
        out["track"] = int(track)
    return out


# A video's answers as a table: a row per frame and face, the answer's fields flattened (camera.py --csv, video_emotions).
VIDEO_COLUMNS = ("frame", "seconds", "track", "x", "y", "w", "h", "emotion", *data.CLASSES)


def video_row(frame, seconds, track, box, probs):
    a = answer(box, probs, track)
    return {"frame": frame, "seconds": round(seconds, 3), "track": a["track"], **dict(zip("xywh", a["box"])),
            "emotion": a["emotion"], **a["probabilities"]}


def video_emotions(path, nets, device="cpu", tta=False, detector=None):
    """Every face in every frame of a video file, as a pandas DataFrame of VIDEO_COLUMNS: the rows camera.py --csv
    writes, its faces followed between detections (tracking.py) and classified frame by frame (not smoothed).

        table = faces.video_emotions("clip.mp4", nets)
        table.groupby("track")["emotion"].agg(lambda e: e.mode()[0])      # each face's commonest emotion
    """
    import pandas as pd
    from app import tracking
    cv2 = opencv()
    detector = detector or best_detector(min_size=round(MIN_SIZE * tracking.DETECT_SCALE))
    if detector is None:
        raise cli.DataError(f"no face finder is installed: {INSTALL}")
    if not os.path.isfile(str(path)):
        raise cli.DataError(f"{path}: no such video file")
    cap = cv2.VideoCapture(str(path))
    fps, tracker, rows, frame = cap.get(cv2.CAP_PROP_FPS) or 30.0, tracking.Tracker(cv2, detector), [], 0
    try:
        while True:
            ok, picture = cap.read()
            if not ok:
                break
            grey = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY)
            boxes = tracker.boxes(grey)
            probs = classify(grey, boxes, nets, device, tta)
            tracker.classified(probs)
            rows += [video_row(frame, frame / fps, i, box, p) for i, box, p in zip(tracker.ids, boxes, probs)]
            frame += 1
    finally:
        cap.release()
    if frame == 0:
        raise cli.DataError(f"{path}: no frame could be read as video")
    return pd.DataFrame(rows, columns=list(VIDEO_COLUMNS))


# Each class's colour wherever classes are drawn: the page's bars and legend, camera.py's plot over time.
PALETTE = ("#d62728", "#8c564b", "#9467bd", "#2ca02c", "#1f77b4", "#ff7f0e", "#7f7f7f")  # data.CLASSES order

_shared = []  # emotions()'s face finder, built on its first use


def emotions(image, nets, device="cpu", tta=False, detector=None):
    """The faces in a picture and their emotions, for your own code (run it from the repository):

        import weights
        from app import faces
        nets = weights.load_nets(["weights/resnet.pth"], "cpu")      # once; several files = an ensemble
        for face in faces.emotions("group.jpg", nets):
            print(face["box"], face["emotion"], face["probabilities"]["happy"])

    `image`: a file path, a numpy array (grey [H, W] or RGB [H, W, 3], uint8) or a PIL image. Returns one
    answer per face, left to right: "box" ([x, y, w, h] in pixels of the picture), "emotion" (the likeliest
    class) and "probabilities" (class -> probability, the seven summing to 1). A picture of 96 px or less is taken
    as one face crop; a picture with no face found gives []; a larger picture with no face finder installed is a
    DataError saying how to install one (app/photos.py classifies it whole and says so). `detector`: a face finder to use (default: the best installed)."""
    if isinstance(nets, torch.nn.Module) and not isinstance(nets, torch.nn.ModuleList):
        nets = [nets]
    if not isinstance(nets, (list, tuple, torch.nn.ModuleList)) or not nets or \
            not all(isinstance(n, torch.nn.Module) for n in nets):
        raise TypeError(f"nets: a list of networks, as weights.load_nets(['weights/resnet.pth'], 'cpu') gives "
                        f"(several make an ensemble), not {type(nets).__name__}"
                        f"{' of ' + type(nets[0]).__name__ if isinstance(nets, (list, tuple)) and nets else ''}")
    grey = as_grey(image)
    if detector is None and max(grey.shape) > SMALL:
        if not _shared:
            _shared.append(best_detector())
        detector = _shared[0]
        if detector is None:  # a whole photo read as one face is a confident wrong answer: an app must not get one
            raise cli.DataError(f"a picture of {grey.shape[1]}x{grey.shape[0]} needs a face finder, and none is "
                                f"installed: {INSTALL} (or pass a face crop of {SMALL} px or less)")
    boxes, _, angles = find(grey, detector)
    probs = classify(grey, boxes, nets, device, tta, angles=angles)
    return [answer(box, p, angle=a) for box, p, a in zip(boxes, probs, angles)]


def as_grey(image):
    """A path, a numpy array or a PIL image as uint8 grey [H, W], read as readers.read_grey reads files."""
    from PIL import Image
    if isinstance(image, (str, os.PathLike)):
        return readers.read_grey(str(image))
    if isinstance(image, np.ndarray):
        if image.ndim == 2 and image.dtype == np.uint8 and min(image.shape) > 0:
            return image
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))) or min(image.shape[:2]) < 1:
            raise ValueError(f"an image array is [H, W] grey or [H, W, 3] colour, not {list(image.shape)}")
        if image.dtype != np.uint8:
            raise ValueError(f"an image array holds uint8 pixels (0-255), not {image.dtype}: "
                             f"np.clip(a, 0, 255).astype(np.uint8) makes one")
        image = Image.fromarray(image)
    if isinstance(image, Image.Image):  # upright as its EXIF tag says, as a file by its path is read
        from PIL import ImageOps
        return readers.grey_of(ImageOps.exif_transpose(image))
    raise TypeError(f"an image is a path, a numpy array or a PIL image, not {type(image).__name__}")


def label_faces(rgb, boxes, texts):
    """rgb uint8 [H, W, 3] with each box drawn and its text above it (below, at the top edge), the label kept
    whole inside the picture however small the face or near the edge; a new array."""
    from PIL import Image, ImageDraw, ImageFont
    im = Image.fromarray(rgb)
    pen = ImageDraw.Draw(im)
    size = max(12, min(im.size) // 30)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one small bitmap font
        font = ImageFont.load_default()
    for (x, y, w, h), text in zip(boxes, texts):
        x, y, w, h = int(x), int(y), int(w), int(h)
        pen.rectangle([x, y, x + w - 1, y + h - 1], outline=(0, 230, 0), width=max(2, size // 6))
        left, top, right, bottom = pen.textbbox((x, y), text, font=font)
        tw, th = (right - left) + 6, (bottom - top) + 6
        ty = y - th - 1 if y - th - 1 >= 0 else y + h + 1  # above the box, or below
        ty = min(ty, im.height - th)  # a face at the bottom edge: the label inside the picture
        tx = max(0, min(x, im.width - tw))  # a small face near the right edge: the whole label shown
        pen.rectangle([tx, ty, tx + tw, ty + th], fill=(0, 0, 0))
        pen.text((tx + 3, ty + 3 - (top - y)), text, fill=(255, 255, 255), font=font)
    return np.asarray(im)


def read_rgb(path):
    """The picture in colour, upright as readers.read_grey turns it, for drawing on. Deep grey (16-bit, float)
    is scaled as readers.read_grey scales it: Pillow's convert("RGB") would clip it to white."""
    from PIL import Image, ImageOps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # as readers.read_grey
        im = Image.open(path)
    with im:
        if im.mode in readers.DEEP_GREY:
            return np.repeat(readers.read_grey(path)[..., None], 3, axis=2)
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
