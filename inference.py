"""Trained networks in use: the weights file they travel in, loading one (any class order, someone else's
state_dict), and batched prediction with TTA and ensembles.

A weights file is a dict of tensors and plain types only, so torch.load(weights_only=True) reads it and no code
in it can run: {"model": name, "classes": [...], "state_dict": {...}, "meta": {...}}.
"""
import os
import re
import sys

import torch
import torch.nn.functional as F

import augment
import cli
import data
import files
import model

class WeightsError(cli.UserError):
    """A weights or checkpoint file the user gave cannot be used; the message says why in one line."""


def atomic_save(obj, path):
    """torch.save through files.atomic_write: a crash or a full disk mid-write leaves the previous file
    intact."""
    files.atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_weights(path, net, name, meta=None, half=False):
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    if half:  # shipped weights: fp16 halves the file; float buffers only, BN's counter stays an integer
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    atomic_save({"model": name, "classes": list(data.CLASSES), "state_dict": state, "meta": meta or {}}, path)


# Shipped files that were renamed (in weights/): a command or script naming the old file still loads it.
RENAMED = {"best.pth": "vgg.pth"}


def read_file(path):
    """torch.load with weights_only=True, turning every way a file can be unusable into a WeightsError."""
    if os.path.isdir(path):
        raise WeightsError(f"{path}: is a folder; give the weights file inside it (model.pth)")
    folder, name = os.path.split(path)
    new = os.path.join(folder, RENAMED.get(name, name))
    if not os.path.exists(path) and os.path.basename(os.path.abspath(folder)) == "weights" and \
            os.path.isfile(new):
        print(f"note: {path} is now called {new}", file=sys.stderr)
        path = new
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
    """Returns (network in eval mode on `device`, its name). `expect` is the --model the user asked for.
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
        fitting = [k for k in inner if len(model.fitting_networks(strip_wrappers(blob[k]))) == 1]
        if len(fitting) != 1:
            which = "none" if not fitting else " and ".join(fitting)
            raise WeightsError(f"{path}: not a weights file of this project (keys {list(blob)[:6]}; "
                               f"{which} of them hold weights of a network here)")
        blob = {"model": network_of(blob[fitting[0]], path), "state_dict": blob[fitting[0]]}
    if not isinstance(blob, dict) or "state_dict" not in blob or "model" not in blob:
        raise WeightsError(f"{path}: not a weights file of this project (no 'model'/'state_dict' entries)")
    name = blob["model"]
    if not isinstance(name, str) or name not in model.MODELS:
        raise WeightsError(f"{path}: holds an unknown network {name!r} (this code knows "
                           f"{', '.join(model.MODELS)})")
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
    net = model.build(name)
    load_state(net, blob["state_dict"], path)
    if classes != list(data.CLASSES):
        rows = torch.tensor([classes.index(c) for c in data.CLASSES])
        with torch.no_grad():
            for p in model.output_layer(net).parameters():
                p.copy_(p[rows])
    net.meta = blob.get("meta") or {}
    return net.to(device).eval(), name


def strip_wrappers(state):
    """Keys as the bare network names them: without DistributedDataParallel's "module." or torch.compile's
    "_orig_mod." in front."""
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in state.items()}


def network_of(state, path):
    """The one network whose parameter names and shapes are exactly those of a bare state_dict."""
    fits = model.fitting_networks(strip_wrappers(state))
    if len(fits) != 1:
        which = "none" if not fits else " and ".join(fits)
        raise WeightsError(f"{path}: a bare state_dict that fits {which} of "
                           f"the networks here ({', '.join(model.MODELS)})")
    return fits[0]


def load_state(net, state, path):
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or extra or shapes:
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "",
                 f"shapes differ: {shapes[:3]}" if shapes else ""]
        raise WeightsError(f"{path}: weights do not fit the {type(net).__name__} network: "
                           + "; ".join(p for p in parts if p))
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


# ------------------------------------------------------------------------------------------------------------
# Batched prediction, with TTA and ensembles

def load_nets(paths, device):
    """Weights files -> networks in eval mode, channels_last (the fast layout for these convolutions)."""
    return [load_weights(p, device)[0].to(memory_format=torch.channels_last) for p in paths]


def trained_interpolation(net):
    """How the network's training resampled its warped faces (train.py --interpolation): its TTA views are
    resampled the same way. Files from before the flag, and from elsewhere, read bilinear: this project's
    runs before the flag were, and a file without its training's configuration cannot say otherwise (nor one
    whose configuration names something else)."""
    config = getattr(net, "meta", {}).get("config")
    interpolation = config.get("interpolation") if isinstance(config, dict) else None
    return interpolation if interpolation in ("bilinear", "nearest") else "bilinear"


def predict_proba(nets, images, device, tta=False, batch_size=512, autocast=False, progress=False):
    """Class probabilities [N, 7] in data.CLASSES order for uint8 images [N, 48, 48], averaged over the
    networks (an ensemble) and, with tta, over augment.tta_views' ten views, each network's resampled as it
    trained (trained_interpolation). Batched on the device; one copy back per batch. `autocast`: bf16 on the
    CPU (AMX) or CUDA, about twice as fast, for live video. `progress`: a bar (TTA over a data set takes
    minutes on a CPU)."""
    from tqdm import tqdm
    device = torch.device(device)
    interpolations = [trained_interpolation(net) for net in nets]
    out = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for x in tqdm(data.batches(images, batch_size, device), total=-(-len(images) // batch_size),
                      leave=False, disable=not progress or None, desc="predicting", dynamic_ncols=True,
                      file=sys.stdout):
            views = {i: list(augment.tta_views(x, i)) if tta else [x] for i in set(interpolations)}
            probs = [F.softmax(net(v).float(), 1) for net, i in zip(nets, interpolations) for v in views[i]]
            out.append((sum(probs) / len(probs)).cpu())
    return torch.cat(out) if out else torch.zeros(0, len(data.CLASSES))


# ------------------------------------------------------------------------------------------------------------
# A teacher's probabilities for distillation (tools/teacher.py writes them, train.py --teacher reads them):
# {"weights": [...], "tta": bool, "train": {"id": fingerprint, "probs": fp16 [N, 7]}, "val": {...}}

def teacher_file(nets, splits, device, tta, names):
    """Each training and validation face's probabilities under `nets` (averaged, with TTA if asked), with each
    split's fingerprint, so the file is refused for other faces."""
    blob = {"weights": names, "tta": tta}
    for split in ("train", "val"):
        images, labels = splits[split]
        probs = predict_proba(nets, images, device, tta, progress=True)
        blob[split] = {"id": data.fingerprint(images, labels), "probs": probs.half()}
    return blob


def teacher_probabilities(path, splits, parts):
    """The probabilities a teacher file holds for the faces of `parts` (train, or train and val), in that
    order; refused in one line if the file holds them for other faces."""
    blob = read_file(path)
    if not isinstance(blob, dict) or any(not isinstance(blob.get(s), dict) for s in parts):
        raise data.DataError(f"{path}: not a teacher file of tools/teacher.py")
    for s in parts:
        if blob[s].get("id") != data.fingerprint(*splits[s]):
            raise data.DataError(f"{path}: the teacher's probabilities are for other {s} faces than --data "
                                 f"gives; make them with tools/teacher.py --data on this data")
    return torch.cat([blob[s]["probs"] for s in parts])

