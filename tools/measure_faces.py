"""How the face finders, their parameters and the crop margins were chosen: FER2013 PublicTest faces pasted,
enlarged, into textured 640x480 scenes (two per scene, 90-200 px, at random places), plus harder faces: partly
covered (a hand over the mouth, dark glasses, a fringe), turned by up to 30 degrees, and small (48-60 px).

    python tools/measure_faces.py --weights weights/resnet.pth --data data/fer2013.csv --scenes 20

A face counts as found when a box's centre lies inside the pasted square and its side is 0.4-1.2 of it; every
other box is a false face. Then the faces the chosen finder found are classified as cut from the scene (at
several margins) and as their own 48x48 crops. Results: docs/faces.md.
"""
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
import data  # noqa: E402
from app import faces  # noqa: E402
import model  # noqa: E402
import weights as weights_file  # noqa: E402



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


def paste(rng, scene, face, side=None, angle=0.0, cover=None):
    """The face enlarged to `side` px (default 90-2/3 of the scene's height) at a random free place; turned by
    `angle` degrees (the corners filled from the scene); `cover` one of "hand", "glasses", "fringe".
    Returns (scene, (x, y, side))."""
    from PIL import Image
    h, w = scene.shape
    side = side or int(rng.integers(90, min(h, w) * 2 // 3))
    face = occlude(rng, face, cover) if cover else face
    big = Image.fromarray(face).resize((side, side), Image.BICUBIC)
    y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
    scene = scene.copy()
    if angle:
        mask = Image.new("L", (side, side), 255).rotate(angle, resample=Image.BILINEAR)
        big = big.rotate(angle, resample=Image.BILINEAR)
        region = Image.fromarray(scene[y:y + side, x:x + side])
        region.paste(big, (0, 0), mask)
        scene[y:y + side, x:x + side] = np.asarray(region)
    else:
        scene[y:y + side, x:x + side] = np.asarray(big)
    return scene, (x, y, side)


def occlude(rng, face, cover):
    """A FER2013 face partly covered: a skin-toned hand over the mouth and chin, dark glasses over the eyes,
    or a fringe of dark hair over the forehead."""
    face = face.copy()
    if cover == "hand":
        face[30:48, int(rng.integers(4, 14)):int(rng.integers(30, 44))] = int(np.median(face[10:30, 10:38]))
    elif cover == "glasses":
        face[14:24, 6:22] = 25
        face[14:24, 26:42] = 25
        face[16:19, 22:26] = 40
    elif cover == "fringe":
        face[0:14, 0:48] = 35
    return face


def scenes_with_faces(rng, images, n_scenes, per_scene=2, size=(480, 640), **kind):
    """n_scenes scenes with per_scene faces each (not overlapping): [(scene, [truth, ...], [face index,
    ...])]."""
    out, k = [], 0
    for _ in range(n_scenes):
        scene, truths, which = textured_scene(rng, *size), [], []
        while len(truths) < per_scene:
            side = kind.get("side") or int(rng.integers(90, 200))
            placed, truth = paste(rng, scene, images[k % len(images)], side, kind.get("angle", 0.0) *
                                  rng.choice([-1, 1]), kind.get("cover"))
            near = [abs(truth[0] - t[0]) < max(side, t[2]) and abs(truth[1] - t[1]) < max(side, t[2])
                    for t in truths]
            if any(near):
                continue  # overlaps a face already there: draw another place
            scene = placed
            truths.append(truth)
            which.append(k % len(images))
            k += 1
        out.append((scene, truths, which))
    return out


def count(detect, scenes):
    """(faces found, false faces, ms per scene, the box found for each face or None)."""
    found, false, boxes_per_face = 0, 0, []
    t = time.perf_counter()
    results = [detect(scene) for scene, _, _ in scenes]
    ms = 1000 * (time.perf_counter() - t) / len(scenes)
    for boxes, (_, truths, _) in zip(results, scenes):
        hits = [next((b for b in boxes if matches(b, truth)), None) for truth in truths]
        found += sum(h is not None for h in hits)
        false += sum(not any(matches(b, truth) for truth in truths) for b in boxes)
        boxes_per_face += hits
    return found, false, ms, boxes_per_face


def matches(box, truth):
    bx, by, bw, bh = box
    x, y, side = truth
    cx, cy = bx + bw / 2, by + bh / 2
    return x <= cx <= x + side and y <= cy <= y + side and 0.4 <= bw / side <= 1.2


def detectors():
    """The candidates: (name, detector)."""
    from app import mtcnn
    out = [(f"Haar {c}, scale 1.1, {k} neighbours",
            faces.HaarDetector(f"haarcascade_frontalface_{c}.xml", 1.1, k))
           for c, k in (("default", 5), ("alt2", 5), ("alt2", 3))]
    if mtcnn.weights_folder():
        out += [(f"MTCNN, min face {m} px", mtcnn.MTCNNDetector(min_size=m)) for m in (40, 80)]
    return out


def measure(weights, val, n_scenes=20, margins=(0.0, 0.05, 0.1, 0.15, 0.2), seed=0):
    images, labels = val[0].numpy(), val[1]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(labels), len(labels), replace=False)
    images, labels = images[pick], labels[pick]
    plain = scenes_with_faces(rng, images, n_scenes)
    hard = {"hand": scenes_with_faces(rng, images[200:], 5, cover="hand"),
            "glasses": scenes_with_faces(rng, images[300:], 5, cover="glasses"),
            "fringe": scenes_with_faces(rng, images[400:], 5, cover="fringe"),
            "turned 30 deg": scenes_with_faces(rng, images[500:], 5, angle=30.0),
            "small, 48-60 px": scenes_with_faces(rng, images[600:], 5, side=int(rng.integers(48, 61)))}
    n = n_scenes * 2
    print(f"{n} PublicTest faces in {n_scenes} textured 640x480 scenes, two per scene (seed {seed}); "
          f"hard cases: 10 faces each in 5 scenes")
    print("| finder | found | false | ms/scene | " + " | ".join(hard) + " |")
    print("| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in hard) + " |")
    chosen = None
    for name, detect in detectors():
        found, false, ms, boxes = count(detect, plain)
        extra = [count(detect, s) for s in hard.values()]
        print(f"| {name} | {found}/{n} | {false} | {ms:.0f} | " +
              " | ".join(f"{f}/10 ({x} false)" for f, x, _, _ in extra) + " |")
        if type(detect).__name__ == type(faces.best_detector()).__name__ and chosen is None:
            chosen = (name, boxes)
    name, boxes = chosen
    nets = weights_file.load_nets(weights, "cpu")
    hit = [(i, j, b) for i, (scene, truths, which) in enumerate(plain) for j, b in
           enumerate(boxes[2 * i:2 * i + 2]) if b is not None]
    y = torch.stack([labels[plain[i][2][j]] for i, j, _ in hit])
    crops = torch.from_numpy(np.stack([images[plain[i][2][j]] for i, j, _ in hit]))
    acc = (model.predict_proba(nets, crops, "cpu").argmax(1) == y).float().mean()
    sides = np.array([plain[i][1][j][2] / b[2] for i, j, b in hit])
    print(f"\n{name}: {len(hit)} faces found; pasted square / box side: median {np.median(sides):.2f} "
          f"(a margin of {(np.median(sides) - 1) / 2:+.2f} cuts FER2013's crop)")
    print(f"{'the same faces as their 48x48 FER2013 crops':<48}{acc:>8.2%}")
    for m in margins:
        cut = torch.from_numpy(np.stack([faces.crop(plain[i][0], b, m) for i, _, b in hit]))
        acc = (model.predict_proba(nets, cut, "cpu").argmax(1) == y).float().mean()
        print(f"{f'found in the scene, cut with margin {m:+.2f}':<48}{acc:>8.2%}")


def measure_levelling(weights, val, n_scenes=20, angles=(0.0, 15.0, 30.0), past=(5.0, 10.0), seed=1):
    """Whether levelling the eyes (MTCNN's landmarks) before the cut helps: the same PublicTest faces pasted
    turned by each angle (either way), found by MTCNN, cut as found and cut levelled, and classified."""
    from app import mtcnn
    images, labels = val[0].numpy(), val[1]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(labels), len(labels), replace=False)
    images, labels = images[pick], labels[pick]
    nets = weights_file.load_nets(weights, "cpu")
    detect = mtcnn.MTCNNDetector(min_size=faces.MIN_SIZE)
    print(f"{2 * n_scenes} PublicTest faces, the same ones at each angle, in {n_scenes} scenes (seed {seed}); "
          f"MTCNN; {', '.join(os.path.basename(w) for w in weights)}")
    print("| faces turned by | found | as their FER2013 crops | cut as found | eyes levelled | levelled where "
          + " | levelled where ".join(f"tilted over {m:.0f} deg" for m in past) + " |")
    print("| ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(past))
    for angle in angles:
        scenes = scenes_with_faces(np.random.default_rng(seed), images, n_scenes, angle=angle)
        cuts, own, y = {}, [], []
        for scene, truths, which in scenes:
            boxes, eyes = detect.find(scene)
            for truth, k in zip(truths, which):
                hit = next((j for j, b in enumerate(boxes) if matches(b, truth)), None)
                if hit is None:
                    continue
                tilt = faces.level_angle(eyes[hit])
                for m in (None, 0.0, *past):  # None: as found
                    turn = 0.0 if m is None or abs(tilt) < m else tilt
                    cuts.setdefault(m, []).append(faces.crop(scene, boxes[hit], angle=turn))
                own.append(images[k])
                y.append(int(labels[k]))
        y = torch.tensor(y)
        acc = [(model.predict_proba(nets, torch.from_numpy(np.stack(c)), "cpu").argmax(1) == y).float().mean()
               for c in (own, *cuts.values())]
        print(f"| {angle:.0f} deg | {len(y)}/{2 * n_scenes} | " + " | ".join(f"{a:.2%}" for a in acc) + " |")


def main(argv=None):
    p = cli.parser("measure_faces.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="the network(s) that classify the faces found")
    p.add_argument("--data", required=True, help="a FER2013 file with PublicTest rows")
    p.add_argument("--scenes", type=int, default=20, help="scenes of two faces each (1 to 200)")
    p.add_argument("--levelling", action="store_true", help="measure only whether levelling the eyes (MTCNN's "
                   "landmarks) before the cut helps, on faces turned by 0, 15 and 30 degrees")
    args = p.parse_args(argv)
    if not 1 <= args.scenes <= 200:
        p.error(f"--scenes must be 1 to 200, got {args.scenes}")
    splits = data.load(args.data)
    if "val" not in splits or len(splits["val"][1]) < 700:
        p.error(f"--data {args.data}: needs a validation split of at least 700 faces (FER2013's PublicTest)")
    if args.levelling:
        measure_levelling(args.weights, splits["val"], args.scenes)
    else:
        measure(args.weights, splits["val"], args.scenes)


if __name__ == "__main__":
    cli.run(main, "measure_faces.py")
