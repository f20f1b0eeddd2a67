"""The networks, and saving/loading their weights.

`resnet` is the report's network exactly (its Appendix 1, the layer table):
3,817,079 parameters, LeakyReLU, Kaiming-normal init. One change: it returns logits. The report ended in
a Softmax and then used CrossEntropyLoss, which applies log-softmax again; the double softmax squashes the
gradients and slows learning, so the Softmax is gone (predictions are the same argmax).

`python model.py [--model NAME]` prints the layer table with output shapes and parameter counts.
"""
import os
import re
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import augment
import cli
import data
import files


def conv3x3(cin, cout):
    # No bias: a BatchNorm follows every conv (the report's 144 = 1*16*9 stem parameters say so too).
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """conv-BN-LeakyReLU-conv-BN, plus the shortcut, then LeakyReLU. The first block of a stage changes the
    width, so its shortcut is a 3x3 conv + BN projection (4,672 = 16*32*9 + 2*32 parameters in Appendix 1)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.shortcut = nn.Sequential(conv3x3(cin, cout), nn.BatchNorm2d(cout)) if cin != cout else \
            nn.Identity()
        self.conv1, self.bn1 = conv3x3(cin, cout), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.act = nn.LeakyReLU()

    def forward(self, x):
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.shortcut(x))


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


def kaiming_init(model):
    """Kaiming-normal weights as the report, except the output layer, which starts at zero. Without the
    report's final Softmax, a Kaiming-initialised output layer starts with logits so large that the loss is
    ~9 instead of ln 7 = 1.95, and the network spends its first epochs only shrinking them
    (docs/differences.md)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.zeros_(output_layer(model).weight)


def output_layer(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def kaiming_output_layer(model):
    """The report's own start for the output layer, Kaiming-normal like every other layer: with its Softmax
    before the loss (train.py --head softmax) the large first logits are squashed, not a loss of ~9."""
    nn.init.kaiming_normal_(output_layer(model).weight, nonlinearity="leaky_relu")


# ------------------------------------------------------------------------------------------------------------
# The peer reports' networks, rebuilt from their descriptions for the comparison table,
# and one stronger network of our own. Where a report leaves a size out, the choice is said in a comment.

def conv_bn_relu(cin, cout, k=3):
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGGBase(nn.Module):
    """Seed 001's "base CNN": VGG-like 64,64,pool,128,pool,256x3,pool,512x3,pool, Dense 128, Dropout 0.3,
    ReLU, no BatchNorm (Keras defaults: biases, 'same' padding). 64.5% with augmentation in that report.
    Initialised as Keras initialises it (Glorot-uniform weights, zero biases), not with PyTorch's default
    (Kaiming-uniform with a=sqrt(5), i.e. weights ~3x smaller in variance for ReLU), under which this
    10-conv network without BatchNorm answered "happy" from epoch 1 (docs/results.md)."""

    def __init__(self, num_classes=7):
        super().__init__()
        plan = [64, 64, "M", 128, "M", 256, 256, 256, "M", 512, 512, 512, "M"]
        layers, cin = [], 1
        for v in plan:
            layers += [nn.MaxPool2d(2)] if v == "M" else \
                [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v if v != "M" else cin
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(512 * 3 * 3, 128), nn.ReLU(inplace=True),
                                  nn.Dropout(0.3), nn.Linear(128, num_classes))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.head(self.features(x))


class CNN3(nn.Module):
    """Seed 004: three convs 64/128/256 (3x3) with BatchNorm, ReLU, 2x2 max-pool and Dropout 0.2, then FC 256.
    The report pools with stride 1, which would leave a 256x45x45 map (a 132M-weight FC layer); stride 2 is
    used. 60.2% validation accuracy after 200 epochs of SGD in that report."""

    def __init__(self, num_classes=7):
        super().__init__()
        layers, cin = [], 1
        for cout in (64, 128, 256):
            layers += [*conv_bn_relu(cin, cout), nn.MaxPool2d(2), nn.Dropout(0.2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(256 * 6 * 6, 256), nn.ReLU(inplace=True),
                                  nn.Dropout(0.2), nn.Linear(256, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class CNN2(nn.Module):
    """Seed 002: conv 5x5 -> 64, conv 4x4 -> 32, then three dense layers with ReLU. The report gives no
    pooling or dense sizes: 2x2 max-pool after each conv and dense 256 -> 128 -> 7 are our choice. 51.8% in
    that report."""

    def __init__(self, num_classes=7):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 64, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 44 -> 22
                                      nn.Conv2d(64, 32, 4), nn.ReLU(inplace=True), nn.MaxPool2d(2))  # 19 -> 9
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 9 * 9, 256), nn.ReLU(inplace=True),
                                  nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class MLP(nn.Module):
    """Seed 003's standard-ML baseline: scikit-learn's MLPClassifier(hidden_layer_sizes=(128, 64)), ReLU."""

    def __init__(self, num_classes=7):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 128), nn.ReLU(inplace=True),
                                 nn.Linear(128, 64), nn.ReLU(inplace=True), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.net(x)


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


# name -> constructor. Every network takes a batch of normalised grey 48x48 images [B, 1, 48, 48] and returns
# logits [B, 7]. TARGET_LAYERS: Grad-CAM's default layer, the last convolutional block before the classifier.
MODELS = {"resnet": ResNet, "vgg": VGG, "vgg_base": VGGBase, "cnn3": CNN3, "cnn2": CNN2, "mlp": MLP}
TARGET_LAYERS = {"resnet": "stage3.3", "vgg": "features.26", "vgg_base": "features.20", "cnn3": "features.12",
                 "cnn2": "features.4"}  # the MLP has no spatial layer to explain


def build(name):
    if name not in MODELS:
        raise WeightsError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]()


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------------------
# Weights files. A weights file is a dict of tensors and plain types only, so torch.load(weights_only=True)
# reads it and no code in it can run: {"model": name, "classes": [...], "state_dict": {...}, "meta": {...}}.

class WeightsError(cli.UserError):
    """A weights or checkpoint file the user gave cannot be used; the message says why in one line."""


def atomic_save(obj, path):
    """torch.save through files.atomic_write: a crash or a full disk mid-write leaves the previous file
    intact."""
    files.atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_weights(path, model, name, meta=None, half=False):
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:  # shipped weights: fp16 halves the file; float buffers only, BN's counter stays an integer
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    atomic_save({"model": name, "classes": list(data.CLASSES), "state_dict": state, "meta": meta or {}}, path)


def read_file(path):
    """torch.load with weights_only=True, turning every way a file can be unusable into a WeightsError."""
    if os.path.isdir(path):
        raise WeightsError(f"{path}: is a folder; give the weights file inside it (model.pth)")
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holds objects that are not plain data
        # torch colours parts of its message for terminals
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        raise WeightsError(f"{path}: not a usable weights file ({first[:160]})") from None


def is_state_dict(obj):
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_weights(path, device="cpu", expect=None):
    """Returns (model in eval mode on `device`, model name). `expect` is the --model the user asked for.
    Besides this project's weights files it takes a bare state_dict (what torch.save(net.state_dict())
    writes, and what the report shipped), or a dict that holds one (under "model_state_dict" or any other
    key), whose keys and shapes fit exactly one of the networks here. A file trained with another class
    order (its "classes" list) has its output layer's rows put in data.CLASSES order here, so every user of
    a loaded network (prediction, Grad-CAM, fine-tuning) reads output i as data.CLASSES[i]."""
    blob = read_file(path)
    if isinstance(blob, dict) and "optimizer" in blob and "config" in blob and "epoch" in blob:
        raise WeightsError(f"{path}: a training checkpoint (for --resume), not weights; use model.pth or "
                           f"last.pth in the same folder")
    if is_state_dict(blob):
        blob = {"model": network_of(blob, path), "state_dict": blob}
    elif isinstance(blob, dict) and "state_dict" not in blob:  # someone else's: {"model_state_dict": ...}
        inner = [k for k, v in blob.items() if is_state_dict(v)]
        fitting = [k for k in inner if fits_one(blob[k])]
        if len(fitting) != 1:
            which = "none" if not fitting else " and ".join(fitting)
            raise WeightsError(f"{path}: not a weights file of this project (keys {list(blob)[:6]}; "
                               f"{which} of them hold weights of a network here)")
        blob = {"model": network_of(blob[fitting[0]], path), "state_dict": blob[fitting[0]]}
    if not isinstance(blob, dict) or "state_dict" not in blob or "model" not in blob:
        raise WeightsError(f"{path}: not a weights file of this project (no 'model'/'state_dict' entries)")
    name = blob["model"]
    if not isinstance(name, str) or name not in MODELS:
        raise WeightsError(f"{path}: holds an unknown network {name!r} (this code knows {', '.join(MODELS)})")
    kinds = {"state_dict": dict, "classes": (list, tuple, type(None)), "meta": (dict, type(None))}
    wrong = [k for k, kind in kinds.items() if k in blob and not isinstance(blob[k], kind)]
    if wrong or not is_state_dict(blob["state_dict"]):
        raise WeightsError(f"{path}: not a usable weights file ({(wrong or ['state_dict'])[0]!r} holds a "
                           f"{type(blob[(wrong or ['state_dict'])[0]]).__name__}, not what train.py writes)")
    classes = [data.CLASSES[data.class_index(str(c))] if data.class_index(str(c)) is not None else str(c)
               for c in blob.get("classes") or data.CLASSES]  # "Anger", "HAPPY": as class folders name them
    if sorted(classes) != sorted(data.CLASSES):
        raise WeightsError(f"{path}: its classes {classes} are not FER2013's seven "
                           f"({', '.join(data.CLASSES)})")
    blob["state_dict"] = strip_wrappers(blob["state_dict"])
    if expect is not None and expect != name:
        raise WeightsError(f"{path}: holds a {name!r} network, not {expect!r}")
    bad = [k for k, v in blob["state_dict"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        more = ", ..." if len(bad) > 1 else ""
        raise WeightsError(f"{path}: holds NaN or infinite weights ({bad[0]}{more}): "
                           f"the run that wrote it diverged")
    model = build(name)
    load_state(model, blob["state_dict"], path)
    if classes != list(data.CLASSES):
        rows = torch.tensor([classes.index(c) for c in data.CLASSES])
        with torch.no_grad():
            for p in output_layer(model).parameters():
                p.copy_(p[rows])
    model.meta = blob.get("meta") or {}
    return model.to(device).eval(), name


def fits_one(state):
    shapes = {k: tuple(v.shape) for k, v in strip_wrappers(state).items()}
    return sum({k: tuple(v.shape) for k, v in make().state_dict().items()} == shapes
               for make in MODELS.values()) == 1


def strip_wrappers(state):
    """Keys as the bare network names them: without DistributedDataParallel's "module." or torch.compile's
    "_orig_mod." in front."""
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in state.items()}


def network_of(state, path):
    """The one network whose parameter names and shapes are exactly those of a bare state_dict."""
    state = strip_wrappers(state)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    fits = [name for name, make in MODELS.items()
            if {k: tuple(v.shape) for k, v in make().state_dict().items()} == shapes]
    if len(fits) != 1:
        which = "none" if not fits else " and ".join(fits)
        raise WeightsError(f"{path}: a bare state_dict that fits {which} of "
                           f"the networks here ({', '.join(MODELS)})")
    return fits[0]


def load_state(model, state, path):
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or extra or shapes:
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "",
                 f"shapes differ: {shapes[:3]}" if shapes else ""]
        raise WeightsError(f"{path}: weights do not fit the {type(model).__name__} network: "
                           + "; ".join(p for p in parts if p))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


# ------------------------------------------------------------------------------------------------------------
# Running networks: the device, and batched prediction with TTA and ensembles

def pick_device(name):
    """--device auto|cpu|cuda -> a torch.device; auto takes a CUDA GPU where PyTorch sees one."""
    if name == "cuda" and not torch.cuda.is_available():
        raise cli.FlagError("--device cuda, but PyTorch sees no CUDA GPU (use --device cpu or auto)")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def fast_amp(device):
    """The mixed precision that speeds `device` up: bf16 on a CUDA GPU that has it (fp16 on one that has
    not) and on a CPU with native bf16 (AVX512-BF16 or AMX), fp32 ("off") on other CPUs, where bf16 is
    emulated and slower than fp32 (docs/performance.md)."""
    if torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native else "off"


def load_nets(paths, device):
    """Weights files -> networks in eval mode, channels_last (the fast layout for these convolutions)."""
    return [load_weights(p, device)[0].to(memory_format=torch.channels_last) for p in paths]


def predict_proba(nets, images, device, tta=False, batch_size=512, autocast=False, progress=False):
    """Class probabilities [N, 7] in data.CLASSES order for uint8 images [N, 48, 48], averaged over the
    networks (an ensemble) and, with tta, over augment.tta_views' ten views. Batched on the device; one
    copy back per batch. `autocast`: bf16 on the CPU (AMX) or CUDA, about twice as fast, for live video.
    `progress`: a bar (TTA over a data set takes minutes on a CPU)."""
    from tqdm import tqdm
    device = torch.device(device)
    out = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for x in tqdm(data.batches(images, batch_size, device), total=-(-len(images) // batch_size),
                      leave=False, disable=not progress or None, desc="predicting", dynamic_ncols=True,
                      file=sys.stdout):
            views = list(augment.tta_views(x)) if tta else [x]
            p = sum(F.softmax(net(v).float(), 1) for net in nets for v in views)
            out.append((p / (len(nets) * len(views))).cpu())
    return torch.cat(out) if out else torch.zeros(0, len(data.CLASSES))


# ------------------------------------------------------------------------------------------------------------

def layer_table(model, input_size=(1, 1, 48, 48)):
    """Rows of (indented name, type, output shape, parameters held directly), like the report's Appendix 1."""
    rows, hooks = [], []
    for name, m in model.named_modules():
        if name == "":
            continue
        def hook(mod, inp, out, name=name):
            direct = sum(p.numel() for p in mod.parameters(recurse=False))
            if isinstance(mod, nn.Sequential):  # the report counts a projection shortcut as one row
                direct = count_parameters(mod) if name.endswith("shortcut") else 0
            rows.append((name, type(mod).__name__, list(out.shape), direct))
        hooks.append(m.register_forward_hook(hook))
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    with torch.no_grad():
        model.eval()(torch.zeros(input_size))
    for h in hooks:
        h.remove()
    rows.sort(key=lambda r: order[r[0]])
    return rows


def main(argv=None):
    p = cli.parser("model.py", "Print a network's layer table and parameter count.")
    p.add_argument("--model", default="resnet", choices=list(MODELS))
    args = p.parse_args(argv)
    model = build(args.model)
    print(f"{'Layer (type)':<44}{'Output shape':>20}{'Param #':>14}")
    for name, kind, shape, n in layer_table(model):
        if "shortcut." in name or kind == "Identity":  # counted in the shortcut's own row / holds nothing
            continue
        indent = "  " * name.count(".")
        print(f"{indent + name.split('.')[-1] + ' (' + kind + ')':<44}{str(shape):>20}{n:>14,}")
    print(f"Total params: {count_parameters(model):,}")


if __name__ == "__main__":
    cli.run(main, "model.py")
