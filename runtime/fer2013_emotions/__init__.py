"""Emotions of the faces in pictures, video and numpy frames, with the networks of the FER2013 reproduction
exported to ONNX: onnxruntime, numpy and Pillow, no PyTorch (OpenCV only for video files).

    import fer2013_emotions
    for face in fer2013_emotions.emotions("group.jpg"):       # a path, a numpy array or a PIL image
        print(face["box"], face["emotion"], face["probabilities"]["happy"])

Each face's answer is the project's one answer shape: "box" ([x, y, w, h] in the picture's pixels, from the face
finder), "emotion" (the likeliest of CLASSES), "probabilities" (class -> probability, summing to 1, calibrated) and
"crop" (the square the network saw: its centre, side and the angle it was turned by to level the eyes). The bundle
inside the package is the project's weights/resnet.pth with MTCNN as the face finder; another bundle, written by
the project's `python app/export.py --weights W... --out FOLDER`, is loaded with Recognizer(FOLDER).
"""
import json
import os
import warnings

import numpy as np

from fer2013_emotions.finder import MTCNN

__all__ = ["Recognizer", "emotions", "video_emotions", "read_grey", "as_grey", "PictureError", "BUNDLE", "CLASSES"]
BUNDLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundle")
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
DEEP_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # Pillow's 16- and 32-bit grey modes


class PictureError(ValueError):
    """A picture, video or bundle that cannot be used; the message is one line naming it."""


class Recognizer:
    """A bundle loaded once: `emotions(image)` for each picture or frame, `video(path)` for a video file."""

    def __init__(self, bundle=BUNDLE):
        import onnxruntime
        try:
            with open(os.path.join(bundle, "bundle.json")) as f:
                self.bundle = json.load(f)
            files = [self.bundle["classifier"]["file"], *[self.bundle["finder"]["files"][n]
                                                         for n in ("pnet", "rnet", "onet")]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PictureError(f"{bundle}: not a bundle of app/export.py ({type(e).__name__}: {e})") from None
        if tuple(self.bundle["classes"]) != CLASSES or self.bundle.get("format") != 1:
            raise PictureError(f"{bundle}: a bundle of another format or class order than this runtime reads")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's notes on the graph are not the app's business
        sessions = []
        for f in files:
            try:
                sessions.append(onnxruntime.InferenceSession(os.path.join(bundle, f), options,
                                                             providers=["CPUExecutionProvider"]))
            except Exception as e:  # noqa: BLE001 (onnxruntime's several kinds for a missing or damaged file)
                first = (str(e).splitlines() or [type(e).__name__])[0][:160]
                raise PictureError(f"{os.path.join(bundle, f)}: not an ONNX file onnxruntime can load ({first})") \
                    from None
        self.classifier, self.finder = sessions[0], MTCNN(sessions[1:], self.bundle["finder"])
        self.crop = self.bundle["crop"]

    def emotions(self, image):
        """One answer per face in `image` (a path, a numpy array grey [H, W] or RGB [H, W, 3] uint8, or a PIL
        image), left to right; [] where no face is found. A picture of crop["whole_up_to"] (96) pixels or less
        is taken as one face crop already."""
        return self.answer(as_grey(image))[0]

    def answer(self, grey):
        """(answers, how): how is "faces", "no face found" or "a face crop already"."""
        h, w = grey.shape
        if max(h, w) <= self.crop["whole_up_to"]:
            boxes, angles, how = np.array([[0, 0, w, h]]), np.zeros(1), "a face crop already"
        else:
            boxes, eyes = self.finder(grey)
            (x0, y0), (x1, y1) = eyes[:, 0].T, eyes[:, 1].T
            angles = np.array([round(float(a), 2) for a in np.degrees(np.arctan2(y1 - y0, x1 - x0))])  # as answered
            angles[np.abs(angles) < self.crop["level_past_degrees"]] = 0.0
            how = "faces" if len(boxes) else "no face found"
        probs = self.classify(np.stack([crop(grey, b, self.crop, a) for b, a in zip(boxes, angles)])
                              if len(boxes) else np.zeros((0, 48, 48), np.uint8))
        return [answer(b, p, a, self.crop["margin"]) for b, p, a in zip(boxes, probs, angles)], how

    def classify(self, faces):
        """The seven probabilities [K, 7] (CLASSES order) of uint8 face crops [K, 48, 48]."""
        if len(faces) == 0:
            return np.zeros((0, len(CLASSES)), np.float32)
        return self.classifier.run(None, {"pixels": faces[:, None].astype(np.float32)})[0]

    def video(self, path, every=1):
        """Each `every`-th frame of a video file: {"frame", "seconds", "faces": answers}, as emotions() answers
        that frame (every frame's faces found afresh; nothing carried between frames). Needs OpenCV."""
        try:
            import cv2
        except ImportError:
            raise PictureError(f"{path}: reading video needs OpenCV: pip install opencv-python-headless") from None
        if not os.path.isfile(str(path)):
            raise PictureError(f"{path}: no such video file")
        cap = cv2.VideoCapture(str(path))
        fps, frame = cap.get(cv2.CAP_PROP_FPS) or 30.0, 0
        try:
            while True:
                ok, picture = cap.read()
                if not ok:
                    break
                if frame % every == 0:
                    grey = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY)
                    yield {"frame": frame, "seconds": round(frame / fps, 3), "faces": self.answer(grey)[0]}
                frame += 1
        finally:
            cap.release()
        if frame == 0:
            raise PictureError(f"{path}: no frame could be read as video")


_shared = []  # the package's own bundle, loaded on the first call


def default():
    if not _shared:
        _shared.append(Recognizer())
    return _shared[0]


def emotions(image):
    """The faces in a picture and their emotions, with the package's bundle: Recognizer().emotions(image)."""
    return default().emotions(image)


def video_emotions(path, every=1):
    """Each `every`-th frame of a video file and its faces' emotions: a list of Recognizer().video(path)'s."""
    return list(default().video(path, every))


def answer(box, probs, angle=0.0, margin=0.0):
    x, y, w, h = (float(v) for v in box)
    return {"box": [int(v) for v in box], "emotion": CLASSES[int(np.argmax(probs))],
            "probabilities": {c: round(float(v), 6) for c, v in zip(CLASSES, probs)},
            "crop": {"center": [round(x + w / 2, 2), round(y + h / 2, 2)],
                     "side": round(max(w, h) * (1 + 2 * margin), 2), "angle": round(float(angle), 2)}}


def crop(grey, box, settings, angle=0.0):
    """The square around `box` (x, y, w, h), widened by the margin on each side, turned by `angle` (degrees) to
    level the eyes, as a size x size uint8 face; outside the picture filled with the nearest edge pixels."""
    from PIL import Image
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1 + 2 * settings["margin"])
    cx, cy = x + w / 2, y + h / 2
    reach = side * (0.75 if angle else 0.5)  # a turned square's corners reach out to side / sqrt(2)
    left, top = int(round(cx - reach)), int(round(cy - reach))
    size = max(1, int(round(2 * reach)))
    rows = np.clip(np.arange(top, top + size), 0, grey.shape[0] - 1)
    cols = np.clip(np.arange(left, left + size), 0, grey.shape[1] - 1)
    square = Image.fromarray(grey[rows[:, None], cols[None, :]])
    if angle:
        inner = (size - side) / 2
        square = square.rotate(angle, resample=Image.BILINEAR).crop((inner, inner, inner + side, inner + side))
    return np.array(square.resize((settings["size"], settings["size"]), Image.BOX))


def read_grey(path):
    """An image file as uint8 grey [H, W], turned upright as its EXIF orientation tag says."""
    from PIL import Image, ImageOps
    path = str(path)
    if not os.path.exists(path):
        raise PictureError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise PictureError(f"{path}: not a picture file (a folder, pipe or device)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            return grey_of(ImageOps.exif_transpose(im))
    except Image.DecompressionBombError as e:
        raise PictureError(f"{path}: image too large ({str(e).splitlines()[0][:100]})") from None
    except Exception as e:  # noqa: BLE001 (Pillow's decoders raise many kinds for a damaged file)
        first = (str(e).splitlines() or [type(e).__name__])[0][:100]
        raise PictureError(f"{path}: unreadable image ({first})") from None


def grey_of(im):
    """A PIL image as uint8 grey [H, W]: 16- and 32-bit grey scaled to 8 bits, a NaN pixel black, colour by
    Pillow's luminance."""
    if im.mode in DEEP_GREY:
        values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)
        peak = values.max()
        if im.mode == "F":  # floats: 0-1, 0-255, or any other range, scaled by its own peak
            top = 1.0 if peak <= 1 else 255.0 if peak <= 255 else peak
        else:  # integers: 8-, 16- or signed 32-bit range, whichever the values use
            top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else 2.0 ** 31 - 1
        return np.clip(np.round(values * (255 / top)), 0, 255).astype(np.uint8)
    return np.asarray(im.convert("L"), dtype=np.uint8).copy()


def as_grey(image):
    """A path, a numpy array or a PIL image as uint8 grey [H, W]."""
    from PIL import Image, ImageOps
    if isinstance(image, (str, os.PathLike)):
        return read_grey(image)
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
        return grey_of(ImageOps.exif_transpose(image))
    raise TypeError(f"an image is a path, a numpy array or a PIL image, not {type(image).__name__}")
