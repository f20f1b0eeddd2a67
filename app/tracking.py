"""Faces followed through the frames of a video, for camera.py and serve.py: found every DETECT_EVERY-th
frame on a half-size copy, followed in between by matching each face's last look (a small grey template)
around its last place, which costs about a millisecond.

Labels do not flicker: at each detection a face keeps its track when its new box overlaps its last one
(intersection over union >= 0.3), and what is shown is an exponential moving average of its probabilities,
p <- SMOOTH * p + (1 - SMOOTH) * p_frame; at 30 frames/s, SMOOTH = 0.7 forgets a frame's answer within ~0.3 s.
"""

SMOOTH = 0.7
DETECT_EVERY = 5  # frames: at 30 frames/s a new face is found within 1/6 s
DETECT_SCALE = 0.5  # faces are found on a copy this size (the finders' minimum face shrinks alike)
TEMPLATE = 24  # pixels: a followed face is matched as a template this wide (and as tall as its box's shape says)


def iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


class Tracker:
    """The faces of a video: found every `every`-th frame (on a copy scaled by `scale`), followed in between
    by template matching; each with a track number (1, 2, ... in order of appearance) and its smoothed
    probabilities. `boxes(grey)` gives this frame's boxes, then `classified(probs)` takes the network's
    probabilities for them and returns the smoothed ones; `ids` are the boxes' track numbers."""

    def __init__(self, cv2, detect, every=DETECT_EVERY, scale=DETECT_SCALE, keep=SMOOTH):
        self.cv2, self.detect, self.every, self.scale, self.keep = cv2, detect, every, scale, keep
        self.tracks, self.templates, self.frame = [], [], 0  # tracks: [(box, smoothed probs or None, id)]
        self.last_id, self.shape = 0, None

    def boxes(self, grey):
        if grey.shape != self.shape:  # another camera, or a phone turned: nothing carries over
            self.tracks, self.templates, self.frame, self.shape = [], [], 0, grey.shape
        if min(grey.shape[:2]) * self.scale < 1:  # too small to hold a face, or to be scaled down
            self.tracks, self.templates = [], []
        elif self.frame % self.every == 0:
            small = self.cv2.resize(grey, None, fx=self.scale, fy=self.scale,
                                    interpolation=self.cv2.INTER_AREA)
            found = [tuple(int(round(v / self.scale)) for v in b) for b in self.detect(small)]
            self.tracks = [(box, p, track or self.new_id()) for box, p, track in match(self.tracks, found)]
            self.templates = [self.template(grey, box) for box, _, _ in self.tracks]
        else:
            self.tracks = [(self.follow(grey, box, t), p, i)
                           for (box, p, i), t in zip(self.tracks, self.templates)]
        self.frame += 1
        return [box for box, _, _ in self.tracks]

    @property
    def ids(self):
        return [i for _, _, i in self.tracks]

    def new_id(self):
        self.last_id += 1
        return self.last_id

    def classified(self, probs):
        self.tracks = [(box, p if old is None else self.keep * old + (1 - self.keep) * p, i)
                       for (box, old, i), p in zip(self.tracks, probs)]
        return [p for _, p, _ in self.tracks]

    @staticmethod
    def scale_of(box):
        """The template's size for a box, and the factors that take the box there: its proportions kept, so a
        face taller than wide is matched as one (a square template squashed it, and the box slid down)."""
        w, h = max(1, box[2]), max(1, box[3])
        size = (TEMPLATE, max(1, round(TEMPLATE * h / w)))
        return size, size[0] / w, size[1] / h

    def template(self, grey, box):
        x, y, w, h = box
        patch = grey[max(0, y):y + h, max(0, x):x + w]
        if patch.shape[:2] != (h, w):  # partly outside the picture: followed by detections only
            return None
        return self.cv2.resize(patch, self.scale_of(box)[0], interpolation=self.cv2.INTER_AREA)

    def follow(self, grey, box, template):
        """The box moved to where its template matches best within half a box of where it was."""
        x, y, w, h = box
        if template is None:
            return box
        (tw, th), fx, fy = self.scale_of(box)  # the search window is scaled as the template was
        x0, y0 = max(0, x - w // 2), max(0, y - h // 2)
        window = grey[y0:y + h + h // 2, x0:x + w + w // 2]
        if window.shape[0] < h or window.shape[1] < w:
            return box
        size = (max(tw, round(window.shape[1] * fx)), max(th, round(window.shape[0] * fy)))
        small = self.cv2.resize(window, size, interpolation=self.cv2.INTER_AREA)
        scores = self.cv2.matchTemplate(small, template, self.cv2.TM_CCOEFF_NORMED)
        _, best, _, (dx, dy) = self.cv2.minMaxLoc(scores)
        return (x0 + round(dx / fx), y0 + round(dy / fy), w, h) if best > 0.5 else box


def match(tracks, boxes, threshold=0.3):
    """This detection's boxes, each with the smoothed probabilities and the number of the track it overlaps
    most ((box, None, None): a new face)."""
    out = []
    for box in boxes:
        best = max(tracks, key=lambda t: iou(t[0], box), default=None)
        out.append((box, *best[1:]) if best is not None and iou(best[0], box) >= threshold else
                   (box, None, None))
    return out
