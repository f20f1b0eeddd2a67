"""MTCNN, the bundle's face finder, in numpy and onnxruntime: the same steps, in the same float32 arithmetic, as
the project's PyTorch MTCNN (app/mtcnn.py), so that both find the same boxes. P-Net slides over an image pyramid
and proposes boxes, R-Net re-scores and refines each proposal at 24x24, O-Net does so again at 48x48 and marks
the eyes."""
import numpy as np


def area_resize(image, height, width):
    """image float32 [H, W] -> [height, width], each pixel the mean of the input pixels its area covers, with
    PyTorch's bins (its "area" interpolation: adaptive average pooling), one axis at a time."""
    for axis, size in ((0, height), (1, width)):
        n = image.shape[axis]
        i = np.arange(size)
        start, end = (i * n) // size, -((-(i + 1) * n) // size)
        sums = np.cumsum(np.moveaxis(image, axis, 0), axis=0, dtype=np.float64)
        sums = np.concatenate([np.zeros((1, *sums.shape[1:])), sums])
        image = np.moveaxis(((sums[end] - sums[start]) / (end - start)[:, None]).astype(np.float32), 0, axis)
    return image


def nms(boxes, scores, threshold, by_min=False):
    """Greedy non-maximum suppression on [K, 4] (x1, y1, x2, y2): indices kept, best first. by_min: overlap as
    intersection / the smaller area (MTCNN's last stage), else intersection over union."""
    b = boxes.astype(np.float64)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = w * h
        overlap = inter / (np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.array(keep, dtype=np.int64)


def best(scores, n):
    """Indices of the n highest scores (all of them where there are fewer), in their own order: the work bound."""
    return np.sort(np.argsort(-scores, kind="stable")[:n])


def refine(boxes, reg, square=True):
    """The networks' box corrections (fractions of the side) applied; for the next network's square input, each
    box made a square around its centre."""
    boxes = boxes + reg * np.tile(boxes[:, 2:] - boxes[:, :2], 2)
    if not square:
        return boxes
    centre = (boxes[:, :2] + boxes[:, 2:]) / np.float32(2)
    half = (boxes[:, 2:] - boxes[:, :2]).max(1, keepdims=True) / np.float32(2)
    return np.concatenate([centre - half, centre + half], 1)


def cut(image, boxes, size):
    """Each box's part of image [H, W] (clipped to the picture), resized to size x size by area averaging, as
    [K, 3, size, size] (grey as R = G = B)."""
    h, w = image.shape
    crops = []
    for x1, y1, x2, y2 in boxes.tolist():
        x1, y1 = min(max(int(x1), 0), w - 1), min(max(int(y1), 0), h - 1)
        x2, y2 = max(min(int(x2), w), x1 + 1), max(min(int(y2), h), y1 + 1)
        crops.append(area_resize(image[y1:y2, x1:x2], size, size))
    return np.ascontiguousarray(np.repeat(np.stack(crops)[:, None], 3, axis=1))


class MTCNN:
    """grey uint8 [H, W] -> (boxes int [K, 4] as (x, y, w, h), eyes float [K, 2, 2]: each face's left and right
    eye (x, y)), left to right. `sessions`: onnxruntime sessions of P-Net, R-Net and O-Net; `settings`: the
    bundle's "finder" (min_size, thresholds, factor, candidates: the most windows a pyramid level passes on and the
    later stages take, best first)."""

    def __init__(self, sessions, settings):
        self.pnet, self.rnet, self.onet = sessions
        self.min_size, self.thresholds = settings["min_size"], settings["thresholds"]
        self.factor, self.candidates = settings["factor"], settings["candidates"]

    def __call__(self, grey):
        image = (grey.astype(np.float32) - np.float32(127.5)) / np.float32(128)  # the networks' input scaling
        h, w = grey.shape
        boxes, scores = [], []
        scale = 12 / self.min_size  # a face of min_size pixels becomes P-Net's 12x12 window
        while min(h, w) * scale >= 12:
            small = area_resize(image, int(h * scale + 1), int(w * scale + 1))
            reg, prob = self.pnet.run(None, {"image": np.repeat(small[None, None], 3, axis=1)})[:2]
            ys, xs = np.nonzero(prob[0] >= self.thresholds[0])
            top = best(prob[0, ys, xs], self.candidates)
            ys, xs = ys[top], xs[top]
            if len(ys):
                corner = np.stack([xs, ys], 1).astype(np.float32) * np.float32(2)  # P-Net's stride is 2
                b = np.floor(np.concatenate([(corner + np.float32(1)) / np.float32(scale),
                                             (corner + np.float32(12)) / np.float32(scale)], 1))
                keep = nms(b, prob[0, ys, xs], 0.5)
                boxes.append(np.concatenate([b[keep], reg[0][:, ys, xs].T[keep]], 1))
                scores.append(prob[0, ys, xs][keep])
            scale *= self.factor
        if not boxes:
            return self.result(np.zeros((0, 4), np.float32), np.zeros((0, 10), np.float32))
        boxes, scores = np.concatenate(boxes), np.concatenate(scores)
        top = best(scores, self.candidates)  # before this suppression too: its cost grows as its input squared
        boxes, scores = boxes[top], scores[top]
        keep = nms(boxes[:, :4], scores, 0.7)
        boxes = refine(boxes[keep, :4], boxes[keep, 4:])
        points = np.zeros((0, 10), np.float32)
        for net, size, threshold, last in ((self.rnet, 24, self.thresholds[1], False),
                                           (self.onet, 48, self.thresholds[2], True)):
            if not len(boxes):
                break
            reg, prob, *marks = net.run(None, {"image": cut(image, boxes, size)})
            passed = prob > threshold
            boxes, reg, prob = boxes[passed], reg[passed], prob[passed]
            if last:  # O-Net: correct first, then suppress by the smaller area (the paper's last step)
                side = boxes[:, 2:] - boxes[:, :2]
                points = np.concatenate([boxes[:, :1] + side[:, :1] * marks[0][passed][:, :5],
                                         boxes[:, 1:2] + side[:, 1:] * marks[0][passed][:, 5:]], 1)
                boxes = refine(boxes, reg, square=False)
                keep = nms(boxes, prob, 0.7, by_min=True)
                boxes, points = boxes[keep], points[keep]
            else:
                keep = nms(boxes, prob, 0.7)
                boxes = refine(boxes[keep], reg[keep])
        return self.result(boxes, points)

    @staticmethod
    def result(boxes, points):
        xywh = np.round(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)).astype(np.int64)
        eyes = np.stack([points[:, :2], points[:, 5:7]], 2).reshape(-1, 2, 2)  # [K, eye, (x, y)]
        order = np.argsort(xywh[:, 0], kind="stable")
        return xywh.reshape(-1, 4)[order], eyes[order]
