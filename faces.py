"""Faces in photos and video frames: find them, and cut each one out as FER2013 cut its faces.

FER2013's faces are tight, square, upright crops, 48x48 grey, with a little margin around the face. A face found
in a photo is cut the same way: the detector's square box, widened by MARGIN on each side, grey (the same
luminance as data.read_image), resized to 48x48 with area averaging. Finding faces uses OpenCV's Haar cascades,
an optional extra (`pip install -r requirements-faces.txt`); everything else in this project works without it.
The cascade, its parameters and the margin were chosen by measurement (README, "Your photos and camera").
"""
import os

import numpy as np

import data

INSTALL = "pip install -r requirements-faces.txt"
SMALL = 96  # an image this size or smaller is taken as a face crop already (FER2013's are 48x48)

# Chosen by measurement (README, "Your photos and camera"): FER2013 faces pasted into scenes, and scenes with no face.
CASCADE = "haarcascade_frontalface_alt2.xml"
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
MIN_SIZE = 40  # pixels: smaller "faces" are mostly texture, and too small to classify anyway
MARGIN = 0.0  # of the box's side, on each side


class HaarDetector:
    """grey uint8 [H, W] -> boxes int [K, 4] as (x, y, w, h), left to right. Needs OpenCV."""

    def __init__(self, cascade=CASCADE, scale_factor=SCALE_FACTOR, min_neighbors=MIN_NEIGHBORS, min_size=MIN_SIZE):
        cv2 = opencv()
        self.cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, cascade))
        if self.cascade.empty():
            raise data.DataError(f"OpenCV has no cascade {cascade!r} in {cv2.data.haarcascades}")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size

    def __call__(self, grey):
        boxes = self.cascade.detectMultiScale(grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(self.min_size, self.min_size))
        boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        return boxes[np.argsort(boxes[:, 0], kind="stable")]


def opencv():
    try:
        import cv2
    except ImportError:
        raise data.DataError(f"finding faces needs OpenCV, an optional extra: {INSTALL}") from None
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise data.DataError(f"this OpenCV ({cv2.__version__}) has no Haar cascades; {INSTALL} installs one "
                             "that has (4.x)")
    return cv2


def crop(grey, box, margin=MARGIN):
    """The square around `box` (x, y, w, h), widened by `margin` x its side on each side, as a 48x48 uint8 face.
    Outside the picture is filled with the nearest edge pixels, so a face at the border is not cut by black."""
    from PIL import Image
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    size = max(1, int(round(side)))
    rows = np.clip(np.arange(top, top + size), 0, grey.shape[0] - 1)
    cols = np.clip(np.arange(left, left + size), 0, grey.shape[1] - 1)
    square = grey[rows[:, None], cols[None, :]]
    return np.array(Image.fromarray(square).resize((data.SIZE, data.SIZE), Image.BOX))


def find(grey, detector):
    """(boxes [K, 4], crops uint8 [K, 48, 48], how): every face in a grey picture; how is "faces" when faces were
    found, or why the picture is classified whole instead: "a face crop already" (small), "no face found", or,
    with detector None (no OpenCV), how to install face finding."""
    h, w = grey.shape
    whole = np.array([[0, 0, w, h]], dtype=np.int64)
    if max(h, w) <= SMALL:
        return whole, crop(grey, whole[0], 0.0)[None], "a face crop already"
    if detector is None:
        return whole, crop(grey, whole[0], 0.0)[None], f"no face finding without OpenCV: {INSTALL}"
    boxes = detector(grey)
    if len(boxes) == 0:
        return whole, crop(grey, whole[0], 0.0)[None], "no face found"
    return boxes, np.stack([crop(grey, b) for b in boxes]), "faces"


def find_in_files(paths, detector=None):
    """(path, grey, boxes, crops, how) for each image file, as find() gives them. The detector is built once,
    when the first picture too big to be a crop needs it; without OpenCV those pictures are classified whole."""
    built = {"detector": detector}
    for path in paths:
        grey = data.read_grey(path)
        if max(grey.shape) > SMALL and "tried" not in built:
            built["tried"] = True
            if built["detector"] is None:
                try:
                    built["detector"] = HaarDetector()
                except data.DataError:
                    pass  # said on each picture's line instead
        yield (path, grey, *find(grey, built["detector"]))


def label_faces(rgb, boxes, texts):
    """rgb uint8 [H, W, 3] with each box drawn and its text above it (below, at the top edge); a new array."""
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
        ty = y - (bottom - top) - 7 if y - (bottom - top) - 7 >= 0 else y + h + 1  # above the box, or below
        pen.rectangle([x, ty, x + (right - left) + 6, ty + (bottom - top) + 6], fill=(0, 0, 0))
        pen.text((x + 3, ty + 3 - (top - y)), text, fill=(255, 255, 255), font=font)
    return np.asarray(im)


def read_rgb(path):
    """The picture in colour, upright as data.read_grey turns it, for drawing on."""
    from PIL import Image, ImageOps
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


# ---------------------------------------------------------------------------------------------------------------
# python faces.py --weights W --data fer2013.csv: how the cascade, its parameters and MARGIN were chosen.
# PublicTest faces are pasted, enlarged, into textured scenes at random places; a face counts as found when a box's
# centre lies inside the pasted square and its side is 0.4-1.2 of it. False faces: boxes that are not the pasted
# face, and boxes in as many scenes with no face at all.

def textured_scene(rng, h, w):
    """Grey clutter a cascade can mistake for a face: smoothed noise at several scales, a gradient, bars and
    blocks of random contrast."""
    from PIL import Image
    scene = np.zeros((h, w))
    for cells in (4, 16, 64):  # noise blobs of three sizes, upsampled smoothly
        small = rng.uniform(0, 1, (max(2, h * cells // w), cells))
        scene += np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)) / 3
    scene += np.linspace(-40, 40, w)[None, :] * rng.uniform(-1, 1)
    for _ in range(rng.integers(3, 9)):
        y, x = rng.integers(0, h), rng.integers(0, w)
        scene[y:y + rng.integers(5, h // 2), x:x + rng.integers(5, w // 2)] += rng.uniform(-80, 80)
    return np.clip(scene + rng.normal(0, 6, scene.shape), 0, 255).astype(np.uint8)


def paste(rng, scene, face):
    from PIL import Image
    h, w = scene.shape
    side = int(rng.integers(90, min(h, w) * 2 // 3))
    big = np.asarray(Image.fromarray(face).resize((side, side), Image.BICUBIC))
    y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
    scene = scene.copy()
    scene[y:y + side, x:x + side] = big
    return scene, (x, y, side)


def matches(box, truth):
    bx, by, bw, bh = box
    x, y, side = truth
    cx, cy = bx + bw / 2, by + bh / 2
    return x <= cx <= x + side and y <= cy <= y + side and 0.4 <= bw / side <= 1.2


def measure(weights, data_path, n=300, size=(300, 400), margins=(-0.05, 0.0, 0.05, 0.1, 0.2), seed=0):
    import time
    import torch
    import model as models

    def predict(images):  # plain argmax of the averaged probabilities, fp32 on the CPU
        with torch.no_grad():
            return torch.cat([sum(net(x).softmax(1) for net in nets).argmax(1)
                              for x in data.batches(torch.from_numpy(images), 512, "cpu")])
    images, labels = data.load(data_path)["val"]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(labels), n, replace=False)
    faces_, labels = images[pick].numpy(), labels[pick]
    scenes = [paste(rng, textured_scene(rng, *size), f) for f in faces_]
    empty = [textured_scene(rng, *size) for _ in range(n)]
    grid = [(c, 1.1, k) for c in ("default", "alt", "alt2") for k in (3, 5, 7)]  # alt_tree found 5% in a trial
    grid += [("default", s, 5) for s in (1.05, 1.2)]
    print(f"{n} PublicTest faces pasted at 90-{min(size) * 2 // 3} px into {size[1]}x{size[0]} textured scenes, "
          f"and {n} scenes without a face (seed {seed})")
    print(f"{'cascade':<10}{'scale':>7}{'neigh':>7}{'found':>9}{'false in face scenes':>22}{'false in empty':>16}"
          f"{'ms/scene':>10}")
    results = {}
    for cascade, scale, neighbours in grid:
        detect = HaarDetector(f"haarcascade_frontalface_{cascade}.xml", scale, neighbours)
        t = time.perf_counter()
        boxes = [detect(s) for s, _ in scenes]
        ms = 1000 * (time.perf_counter() - t) / n
        found = [next((b for b in bs if matches(b, truth)), None) for bs, (_, truth) in zip(boxes, scenes)]
        false_in = sum(sum(not matches(b, truth) for b in bs) for bs, (_, truth) in zip(boxes, scenes))
        false_empty = sum(len(detect(s)) for s in empty)
        results[(cascade, scale, neighbours)] = found
        print(f"{cascade:<10}{scale:>7}{neighbours:>7}{sum(f is not None for f in found) / n:>9.1%}{false_in:>22}"
              f"{false_empty:>16}{ms:>10.1f}")
    found = results[(CASCADE[len("haarcascade_frontalface_"):-4], SCALE_FACTOR, MIN_NEIGHBORS)]
    hit = [i for i, f in enumerate(found) if f is not None]
    nets = [models.load_weights(w)[0] for w in weights]
    y = labels[hit]
    crops_acc = (predict(faces_[hit]) == y).float().mean()
    sides = np.array([scenes[i][1][2] / found[i][2] for i in hit])
    print(f"\nchosen detector ({CASCADE}, {SCALE_FACTOR}, {MIN_NEIGHBORS}): {len(hit)} faces found; pasted square / "
          f"box side: median {np.median(sides):.2f} (a margin of {(np.median(sides) - 1) / 2:+.2f} cuts the FER crop)")
    print(f"{'the same faces as their 48x48 FER2013 crops':<48}{crops_acc:>8.2%}")
    for m in margins:
        cut = np.stack([crop(scenes[i][0], found[i], m) for i in hit])
        acc = (predict(cut) == y).float().mean()
        print(f"{f'found in the scene, cut with margin {m:+.2f}':<48}{acc:>8.2%}")


if __name__ == "__main__":
    import argparse
    import sys
    p = argparse.ArgumentParser(description="Measure face finding and cropping on FER2013 faces pasted into scenes.")
    p.add_argument("--weights", nargs="+", required=True)
    p.add_argument("--data", required=True, help="a FER2013 file with PublicTest rows")
    p.add_argument("--n", type=int, default=300)
    args = p.parse_args()
    import model as models
    try:
        measure(args.weights, args.data, args.n)
    except (data.DataError, models.WeightsError) as e:
        sys.exit(f"faces.py: {e}")
