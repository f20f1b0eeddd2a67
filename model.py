"""The report's network and ours, and prediction with them. Each network takes normalised grey 48x48 faces
[B, 1, 48, 48] and returns logits [B, 7]; the peer reports' networks are in peers.py.

`ResNet` is the report's network exactly (its Appendix 1, the layer table): 3,817,079 parameters, LeakyReLU,
Kaiming-normal init. One change: it returns logits. The report ended in a Softmax and then used
CrossEntropyLoss, which applies log-softmax again; the double softmax squashes the gradients and slows
learning, so the Softmax is gone (predictions are the same argmax; train.py --double-softmax puts it back).
`VGG` is ours, the strongest single network here. Its layer table, as Appendix 1 prints it: tools/layer_table.py.
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import data


def conv3x3(cin, cout):
    # No bias: a BatchNorm follows every conv (the report's 144 = 1*16*9 stem parameters say so too).
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """conv-BN-LeakyReLU-conv-BN, plus the shortcut, then LeakyReLU. The first block of a stage changes the
    width, so its shortcut is a 3x3 conv + BN projection (4,672 = 16*32*9 + 2*32 parameters in Appendix 1).
    Two LeakyReLU modules, as Appendix 1 lists them (neither holds a parameter)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.shortcut = nn.Sequential(conv3x3(cin, cout), nn.BatchNorm2d(cout)) if cin != cout else \
            nn.Identity()
        self.conv1, self.bn1, self.act1 = conv3x3(cin, cout), nn.BatchNorm2d(cout), nn.LeakyReLU()
        self.conv2, self.bn2, self.act2 = conv3x3(cout, cout), nn.BatchNorm2d(cout), nn.LeakyReLU()

    def forward(self, x):
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act2(y + self.shortcut(x))


def stage(cin, cout, blocks):
    layers = [ResidualBlock(cin if i == 0 else cout, cout) for i in range(blocks)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class ResNet(nn.Module):
    """Appendix 1: 48x48 -> stem 16 @24 -> 32 @12 -> 64 @6 -> 128 @3 -> 1152 -> 2048 -> 7.
    The report gives no dropout rates, so PyTorch's defaults (0.5) are used."""

    def __init__(self, num_classes=7, widths=(16, 32, 64, 128), blocks=(2, 3, 4), hidden=2048):
        super().__init__()
        self.stem = nn.Sequential(conv3x3(1, widths[0]), nn.BatchNorm2d(widths[0]), nn.LeakyReLU(),
                                  nn.MaxPool2d(2))
        self.stage1 = stage(widths[0], widths[1], blocks[0])
        self.stage2 = stage(widths[1], widths[2], blocks[1])
        self.stage3 = nn.Sequential(*stage(widths[2], widths[3], blocks[2]), nn.Dropout2d())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(widths[3] * 3 * 3, hidden), nn.LeakyReLU(),
                                  nn.Dropout(), nn.Linear(hidden, num_classes))
        kaiming_init(self)

    def forward(self, x):
        return self.head(self.stage3(self.stage2(self.stage1(self.stem(x)))))


def kaiming_init(net):
    """Kaiming-normal weights as the report (BatchNorm's start is PyTorch's: 1 and 0), but the output layer at
    zero: without the report's final Softmax, a Kaiming output layer starts with logits so large that the loss
    is ~9, not ln 7 = 1.95, and the first epochs only shrink them (docs/differences.md)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    nn.init.zeros_(output_layer(net).weight)


def output_layer(net):
    return [m for m in net.modules() if isinstance(m, nn.Linear)][-1]


def conv_bn_relu(cin, cout, k=3):
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGG(nn.Module):
    """Ours, after Khaireddin & Chen (2021, 73.28% single network from scratch): four stages of two 3x3 conv +
    BN + ReLU and a max-pool (64, 128, 256, 512), then two FC layers with dropout. Their FC layers are 4096
    wide; 512 keeps this at 7.3M parameters, so the shipped fp16 weights stay under 16 MB."""

    def __init__(self, num_classes=7, hidden=512):
        super().__init__()
        layers, cin = [], 1
        for cout in (64, 128, 256, 512):
            layers += [*conv_bn_relu(cin, cout), *conv_bn_relu(cout, cout), nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(512 * 3 * 3, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(0.2), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(0.2), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


MODELS = {"resnet": ResNet, "vgg": VGG}


def count_parameters(net):
    return sum(p.numel() for p in net.parameters())


# ------------------------------------------------------------------------------------------------------------
# Prediction: batched on the device, averaged over networks (an ensemble) and views (TTA)

TTA_WARPS = ((0.0, 0.9), (0.0, 1.1), (-6.0, 1.0), (6.0, 1.0))  # (degrees, zoom) besides the face as it is


def tta_views(x, interpolation="bilinear"):
    """Ten views of a normalised batch [B, 1, 48, 48]: the face and its mirror, each as it is, zoomed out and
    in by 10% and turned by -6 and +6 degrees, inside the training augmentation's ranges and, as there, black
    outside the picture. Resampled as the network trained (`interpolation`): the other way costs 2-3 points.
    On PublicTest these views beat flip x 2-pixel shifts by about a point (docs/results.md)."""
    black = data.normalize(torch.zeros((), device=x.device))
    degrees, zooms = (torch.tensor(v, device=x.device) for v in zip(*TTA_WARPS))
    angle = degrees * torch.pi / 180
    cos, sin, zero = torch.cos(angle) / zooms, torch.sin(angle) / zooms, torch.zeros_like(zooms)
    thetas = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    for img in (x, x.flip(-1)):
        yield img
        for theta in thetas:
            grid = F.affine_grid(theta.expand(len(x), 2, 3).to(x.dtype), list(x.shape), align_corners=False)
            yield F.grid_sample(img - black, grid, mode=interpolation, padding_mode="zeros",
                                align_corners=False) + black


class Ensemble(nn.ModuleList):
    """Networks answering together (one or several; weights.load_nets makes it). Each network's logits are divided
    by its own temperature; the average over networks and TTA views then gets one of its own (plain or with TTA,
    fitted by tools/calibrate.py): an average is less sure than it is right, and a T below 1 sharpens it back."""

    def __init__(self, nets, temperature=1.0, tta_temperature=1.0):
        super().__init__(nets)
        self.temperature, self.tta_temperature = temperature, tta_temperature


def sharpen(probs, temperature):
    """softmax(log p / T) of averaged probabilities [N, 7]; T = 1 leaves them as they are."""
    return probs if temperature == 1 else F.softmax(probs.clamp_min(1e-30).log() / temperature, 1)


def predict_proba(nets, images, device, tta=False, batch_size=512, autocast=False, progress=False):
    """Class probabilities [N, 7] in data.CLASSES order for uint8 faces [N, 48, 48], averaged over `nets` and,
    with tta, over each network's ten views (resampled as its weights file says it trained), each calibrated, then
    the average's temperature where `nets` is an Ensemble. `autocast`: bf16, about twice as fast, for live video.
    `progress`: a bar (TTA over a data set takes minutes on a CPU)."""
    from tqdm import tqdm
    device = torch.device(device)
    interpolations = [net.trained["interpolation"] for net in nets]
    temperature = getattr(nets, "tta_temperature" if tta else "temperature", 1.0)
    out = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for x in tqdm(data.batches(images, batch_size, device), total=-(-len(images) // batch_size),
                      leave=False, disable=not progress or None, desc="predicting", file=sys.stdout):
            views = {i: list(tta_views(x, i)) if tta else [x] for i in set(interpolations)}
            probs = [F.softmax(net(v).float() / getattr(net, "temperature", 1.0), 1)  # calibrated (weights.py)
                     for net, i in zip(nets, interpolations) for v in views[i]]
            out.append(sharpen(sum(probs) / len(probs), temperature).cpu())
    return torch.cat(out) if out else torch.zeros(0, len(data.CLASSES))
