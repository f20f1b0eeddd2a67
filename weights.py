"""The weights file (model.pth, last.pth, weights/*.pth), written and read here and nowhere else: a dict of
tensors and plain types, so torch.load(weights_only=True) reads it and no code in it can run.

    {"format": 2, "model": "resnet", "classes": ["angry", ..., "neutral"], "state_dict": {...},
     "trained": {"recipe": "python train.py @recipes/resnet.txt", "interpolation": "nearest", "train_on_val": False,
                 "data": "data/fer2013.csv", "data_id": "3f2a...", "epoch": 219, "val_loss": 0.95, "val_acc": 0.6757}}

`trained`: the recipe that made it, how its training resampled warped faces (TTA resamples its views so), whether
it trained on the validation faces, and which faces (a fingerprint). The shipped files are format 1, whose "meta"
held the same facts: `trained_of` reads them. NAME_calibration.json beside NAME.pth holds its temperatures
(tools/calibrate.py). Someone else's file: tools/adopt_weights.py converts it once.
"""
import json
import os
import re

import torch

import cli
import data
import model
import peers

FORMAT = 2
NETWORKS = {**model.MODELS, **peers.MODELS}  # every network a file can name
ROOT = os.path.dirname(os.path.abspath(__file__))  # weights/NAME.pth is found here from any working folder
TRAINED = {"recipe": None, "interpolation": "bilinear", "train_on_val": False, "data": None, "data_id": None,
           "epoch": None, "val_loss": None, "val_acc": None}  # what a file that does not say reads as
RUN_FILES = ("checkpoint.pth", "model.pth", "last.pth", "history.csv", "config.json")  # train.py's, in its --out


class WeightsError(cli.UserError):
    """A weights or checkpoint file the user gave cannot be used; the message says why in one line."""


def save(path, net, name, trained=None, half=False):
    """`trained`: the fields of TRAINED this file can tell. half: fp16 float tensors (shipped files)."""
    trained = trained or {}
    assert set(trained) <= set(TRAINED), set(trained) - set(TRAINED)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    cli.atomic_write(path, lambda tmp: torch.save({"format": FORMAT, "model": name, "classes": list(data.CLASSES),
                                                   "state_dict": state, "trained": {**TRAINED, **trained}}, tmp))


def read_file(path):
    """torch.load(weights_only=True), every way a file can be unusable a WeightsError."""
    if os.path.isdir(path):
        raise WeightsError(f"{path}: is a folder; give the weights file inside it (model.pth)")
    path = locate(path)
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such file")
    if str(path).lower().endswith(".onnx"):
        raise WeightsError(f"{path}: an ONNX file (app/export.py writes them for apps); give the .pth it was "
                           f"exported from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (truncated, not a torch file, or objects that are not plain data)
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # torch colours its message for terminals
        if "Weights only load failed" in text:
            raise WeightsError(f"{path}: not a usable weights file: it holds code or objects, not only tensors "
                               f"and plain data, and is refused for safety (loading it could run that code)") \
                from None
        raise WeightsError(f"{path}: not a usable weights file ({(text.splitlines() or [type(e).__name__])[0][:160]})") \
            from None


def locate(path):
    """`path`, or the shipped weights/NAME.pth as the README names it, from any working folder."""
    shipped = os.path.join(ROOT, path)
    return shipped if not os.path.exists(path) and str(path).startswith("weights") and os.path.isfile(shipped) else path


def trained_of(blob):
    """`trained` of a format 2 file; of a format 1 file, the same facts from its "meta" (train.py's flags then;
    runs before the --interpolation flag warped bilinearly)."""
    if blob.get("format") == FORMAT:
        return {k: blob["trained"].get(k, v) for k, v in TRAINED.items()}
    meta = blob.get("meta") or {}
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    return {"recipe": meta.get("command") or config.get("command"), "train_on_val": bool(config.get("train_on_val")),
            "interpolation": config.get("interpolation", "bilinear"), "data": config.get("data"),
            **{k: meta.get(k) for k in ("data_id", "epoch", "val_loss", "val_acc")}}


def load(path, device="cpu", expect=None):
    """(network in eval mode on `device`, its name); net.trained is the file's `trained`. `expect`: the
    network the user asked for."""
    blob = read_file(path)
    if isinstance(blob, dict) and "optimizer" in blob and "config" in blob:
        raise WeightsError(f"{path}: a training checkpoint (for --resume), not weights; use model.pth or "
                           f"last.pth in the same folder")
    if not isinstance(blob, dict) or "state_dict" not in blob or "model" not in blob:
        raise WeightsError(f"{path}: not a weights file of this project; someone else's network can be "
                           f"converted with python tools/adopt_weights.py {path} OUT.pth")
    kinds = {"state_dict": dict, "classes": (list, tuple, type(None)), "trained": dict, "meta": (dict, type(None))}
    wrong = [k for k, kind in kinds.items() if k in blob and not isinstance(blob[k], kind)] or \
        [k for k in ["state_dict"] if not all(isinstance(v, torch.Tensor) for v in blob["state_dict"].values())]
    if wrong:
        raise WeightsError(f"{path}: not a usable weights file ({wrong[0]!r} holds a {type(blob[wrong[0]]).__name__}"
                           f"{' of other values' if wrong[0] == 'state_dict' else ''}, not what train.py writes)")
    name = blob["model"]
    if name not in NETWORKS:
        raise WeightsError(f"{path}: holds an unknown network {name!r} (this code knows {', '.join(NETWORKS)})")
    if expect is not None and expect != name:
        raise WeightsError(f"{path}: holds a {name!r} network, not {expect!r}")
    if list(blob.get("classes") or data.CLASSES) != list(data.CLASSES):
        raise WeightsError(f"{path}: its classes {blob['classes']} are not FER2013's in order "
                           f"({', '.join(data.CLASSES)}); convert it with python tools/adopt_weights.py")
    net = NETWORKS[name]()
    load_state(net, blob["state_dict"], path)
    net.trained = trained_of(blob)
    net.temperature = read_calibration(calibration_path(path))["temperature"]  # every answer divides its logits by it
    if net.trained["interpolation"] not in ("bilinear", "nearest"):  # someone else's word: read as unknown
        net.trained["interpolation"] = TRAINED["interpolation"]
    return net.to(device).eval(), name


def load_state(net, state, path):
    """net.load_state_dict, refused in one line where the tensors do not fit, are cast to whole numbers or NaN."""
    own = net.state_dict()
    missing, extra = [k for k in own if k not in state], [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or extra or shapes:
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "",
                 f"shapes differ: {shapes[:3]}" if shapes else ""]
        raise WeightsError(f"{path}: weights do not fit the {type(net).__name__} network: "
                           + "; ".join(p for p in parts if p))
    cast = [k for k, v in own.items() if v.is_floating_point() and not state[k].is_floating_point()]
    if cast:
        raise WeightsError(f"{path}: holds whole numbers ({state[cast[0]].dtype}) where the {type(net).__name__} "
                           f"network has real-valued weights ({cast[0]}): a cast or quantised copy; use the float file")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"{path}: holds NaN or infinite weights ({bad[0]}{', ...' if len(bad) > 1 else ''}): "
                           f"the run that wrote it diverged")
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def calibration_path(path):
    """NAME_calibration.json beside NAME.pth: tools/calibrate.py writes it, load and load_nets read it."""
    return os.path.splitext(locate(path))[0] + "_calibration.json"


def read_calibration(path):
    """NAME_calibration.json (tools/calibrate.py): the logits' temperature, the TTA answer's and those of the
    ensembles NAME.pth was fitted in (by their files' names); no file: all 1."""
    if not os.path.isfile(path):
        return {"temperature": 1.0, "tta_temperature": 1.0, "ensembles": {}}
    try:
        record = json.load(open(path))
        return {"temperature": float(record["temperature"]),
                "tta_temperature": float(record.get("tta_temperature", 1)),
                "ensembles": {key: (float(e["temperature"]), float(e["tta_temperature"]))
                              for key, e in record.get("ensembles", {}).items()}}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise WeightsError(f"{path}: not a calibration file of tools/calibrate.py") from None


def ensemble_name(paths):
    """How a calibration file names an ensemble: its files' names, sorted (any folder, any order)."""
    return " + ".join(sorted(os.path.basename(str(p)) for p in paths))


def load_nets(paths, device):
    """The files as one model.Ensemble in eval mode, channels_last (the fast layout for these convolutions), with
    the temperature of its average: one file's TTA answer's, or the one fitted for exactly these files (none: 1)."""
    nets = [load(p, device)[0].to(memory_format=torch.channels_last) for p in paths]
    calibration = read_calibration(calibration_path(paths[0]))
    if len(nets) == 1:
        return model.Ensemble(nets, 1.0, calibration["tta_temperature"])
    return model.Ensemble(nets, *calibration["ensembles"].get(ensemble_name(paths), (1.0, 1.0)))
