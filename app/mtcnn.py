"""MTCNN (Zhang et al. 2016, "Joint Face Detection and Alignment Using Multitask Cascaded Convolutional
Networks"): three small CNNs in a cascade, written here in PyTorch. P-Net slides over an image pyramid and
proposes boxes, R-Net re-scores and refines each proposal at 24x24, O-Net does so again at 48x48.

The trained weights are those the `facenet-pytorch` package ships (MIT licence) as plain state dicts in
`facenet_pytorch/data/{pnet,rnet,onet}.pt`. This module reads the files from the installed package and never
imports its code (which needs torchvision). Install them with

    pip install --no-deps facenet-pytorch==2.6.0

(--no-deps: the package pins torch < 2.3, and only its weight files are used.) Without them, faces.py falls
back to OpenCV's Haar cascade.
"""
import importlib.util
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

INSTALL = "pip install --no-deps facenet-pytorch==2.6.0"
# The most windows a pyramid level passes on, and the most the cascade's later stages take, best first: a picture
# tiled with thousands of small faces (or clutter) costs bounded time and memory, not minutes and gigabytes.
CANDIDATES = 2000


class PNet(nn.Module):
    """12x12 windows, fully convolutional: a face probability and a box correction per 2-pixel step."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x)))))))
        # box corrections [B, 4, h, w], P(face) [B, h, w]
        return self.conv4_2(x), self.conv4_1(x).softmax(1)[:, 1]


def flatten_caffe(x):
    """The dense layers' weights were converted from Caffe, which flattens a feature map width-major."""
    return x.permute(0, 3, 2, 1).flatten(1)


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x):  # 24x24 crops
        x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
        x = self.prelu4(self.dense4(flatten_caffe(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), self.dense5_1(x).softmax(1)[:, 1]


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2 = nn.Linear(256, 2), nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)  # five landmarks (x then y, fractions of the box): the eyes are used

    def forward(self, x):  # 48x48 crops
        x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
        x = self.prelu4(self.conv4(self.pool3(self.prelu3(self.conv3(x)))))
        x = self.prelu5(self.dense5(flatten_caffe(x)))
        return self.dense6_2(x), self.dense6_1(x).softmax(1)[:, 1], self.dense6_3(x)


def weights_folder():
    """facenet_pytorch/data of the installed package, or None. find_spec locates it without running its
    code."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data")
    complete = all(os.path.isfile(os.path.join(folder, f"{n}.pt")) for n in ("pnet", "rnet", "onet"))
    return folder if complete else None


def nms(boxes, scores, threshold, by_min=False):
    """Greedy non-maximum suppression on [K, 4] (x1, y1, x2, y2): indices kept, best first. by_min: overlap as
    intersection / the smaller area (MTCNN's last stage), else intersection over union. In numpy: a scene of
    clutter gives P-Net thousands of candidates, and numpy's small-array steps cost a tenth of torch's."""
    b, s = boxes.numpy().astype(np.float64), scores.numpy()
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    order, keep = np.argsort(-s, kind="stable"), []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = w * h
        overlap = inter / (np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return torch.as_tensor(np.array(keep, dtype=np.int64))


def best(scores, n):
    """Indices of the n highest scores (all of them where there are fewer), in their own order: the work bound."""
    return torch.as_tensor(np.sort(np.argsort(-scores, kind="stable")[:n]))


def refine(boxes, reg, square=True):
    """Applies the networks' box corrections (fractions of the side) and, for the next network's square input,
    makes each box a square around its centre. O-Net's corrected box is the answer, as it is (not square)."""
    side = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    boxes = boxes + reg * side
    if not square:
        return boxes
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(1, keepdim=True).values / 2
    return torch.cat([centre - half, centre + half], 1)


def cut(image, boxes, size):
    """Each box's part of image [1, 3, H, W] (clipped to the picture), resized to size x size by area
    averaging, as the networks were trained: bilinear sampling of a 200-pixel face down to 24 aliases and
    costs detections."""
    h, w = image.shape[-2:]
    crops = []
    for x1, y1, x2, y2 in boxes.tolist():
        x1, y1 = min(max(int(x1), 0), w - 1), min(max(int(y1), 0), h - 1)
        x2, y2 = max(min(int(x2), w), x1 + 1), max(min(int(y2), h), y1 + 1)
        crops.append(F.interpolate(image[:, :, y1:y2, x1:x2], size=(size, size), mode="area"))
    return torch.cat(crops)


class MTCNNDetector:
    """grey uint8 [H, W] -> boxes int [K, 4] as (x, y, w, h), left to right; not square (faces.crop squares
    them). CPU, float32, no grad. Parameters as the MTCNN paper and facenet-pytorch use them: a pyramid
    step of 0.709 and stage thresholds 0.6, 0.7, 0.7; `min_size` is the smallest face side searched for, in
    pixels; `candidates` bounds the work (CANDIDATES)."""

    def __init__(self, min_size=40, thresholds=(0.6, 0.7, 0.7), factor=0.709, candidates=CANDIDATES):
        folder = weights_folder()
        if folder is None:
            raise FileNotFoundError(f"MTCNN's weights are not installed: {INSTALL}")
        self.nets = []
        for name, make in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)):
            net = make()
            net.load_state_dict(torch.load(os.path.join(folder, f"{name}.pt"), map_location="cpu",
                                           weights_only=True))
            self.nets.append(net.eval().requires_grad_(False))
        self.min_size, self.thresholds, self.factor, self.candidates = min_size, thresholds, factor, candidates

    def __call__(self, grey):
        return self.find(grey)[0]

    @torch.no_grad()
    def find(self, grey):
        """(boxes int [K, 4] as (x, y, w, h), eyes float [K, 2, 2]: each face's left and right eye (x, y) in
        the picture, as the person's left and right), left to right."""
        pnet, rnet, onet = self.nets
        image = torch.tensor(grey, dtype=torch.float32)[None, None].expand(1, 3, -1, -1)  # grey as R = G = B
        image = (image - 127.5) / 128  # the networks' input scaling
        h, w = grey.shape
        boxes, scores = [], []
        scale = 12 / self.min_size  # a face of min_size pixels becomes P-Net's 12x12 window
        while min(h, w) * scale >= 12:
            small = F.interpolate(image, size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
            reg, prob = pnet(small)[:2]
            ys, xs = torch.nonzero(prob[0] >= self.thresholds[0], as_tuple=True)
            top = best(prob[0, ys, xs].numpy(), self.candidates)
            ys, xs = ys[top], xs[top]
            if len(ys):
                corner = torch.stack([xs, ys], 1).float() * 2  # P-Net's stride is 2
                b = torch.cat([(corner + 1) / scale, (corner + 12) / scale], 1).floor()
                keep = nms(b, prob[0, ys, xs], 0.5)
                boxes.append(torch.cat([b[keep], reg[0][:, ys, xs].T[keep]], 1))
                scores.append(prob[0, ys, xs][keep])
            scale *= self.factor
        if not boxes:
            return self.result(torch.zeros(0, 4), torch.zeros(0, 10))
        boxes, scores = torch.cat(boxes), torch.cat(scores)
        top = best(scores.numpy(), self.candidates)  # before this suppression too: its cost grows as its input squared
        boxes, scores = boxes[top], scores[top]
        keep = nms(boxes[:, :4], scores, 0.7)
        boxes = refine(boxes[keep, :4], boxes[keep, 4:])
        points = torch.zeros(0, 10)
        for net, size, threshold, by_min in ((rnet, 24, self.thresholds[1], False),
                                             (onet, 48, self.thresholds[2], True)):
            if not len(boxes):
                break
            reg, prob, *marks = net(cut(image, boxes, size))
            passed = prob > threshold
            boxes, reg, prob = boxes[passed], reg[passed], prob[passed]
            if by_min:  # O-Net: correct first, then suppress by the smaller area (the paper's last step)
                side = (boxes[:, 2:] - boxes[:, :2])
                points = torch.cat([boxes[:, :1] + side[:, :1] * marks[0][passed][:, :5],
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
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).round().long().numpy().reshape(-1, 4)
        eyes = torch.stack([points[:, :2], points[:, 5:7]], 2).numpy().reshape(-1, 2, 2)  # [K, eye, (x, y)]
        order = np.argsort(xywh[:, 0], kind="stable")
        return xywh[order], eyes[order]
