"""The files that hold a network, written and read here and nowhere else: a weights file (model.pth,
last.pth, weights/*.pth) and a training checkpoint (checkpoint.pth, for --resume).

A weights file is a dict of tensors and plain types, so torch.load(weights_only=True) reads it and no code in
it can run. Format 2:

    {"format": 2, "model": "resnet", "classes": ["angry", ..., "neutral"], "state_dict": {...},
     "trained": {"recipe": "python train.py @recipes/resnet.txt", "interpolation": "nearest",
                 "train_on_val": False, "data": "data/fer2013.csv", "data_id": "3f2a...", "epoch": 219,
                 "val_loss": 0.95, "val_acc": 0.6757}}

`trained` holds what the readers need: the recipe that made it, how its training resampled warped faces (TTA
resamples its views the same way), whether it trained on the validation faces, which faces it trained on (a
fingerprint, however the file was named) and the epoch kept. Format 1 files (the shipped ones, written before
2026-12-05, held train.py's flags instead) are read through `upgrade`, the one place that knows them: the 88 MB
of shipped weights are not written again, which would add their size to every clone's history. Someone
else's bare state_dict, or a dict holding one, loads when it fits exactly one network here.

A checkpoint holds everything an exact --resume needs: the network, optimiser, scheduler, gradient scaler,
moving average and every random stream, so a run stopped at epoch N and resumed trains the same weights as one
that never stopped (tests/test_train.py checks it bit for bit). `save`, `read` and `restore` stand together
below.
"""
import os
import random
import re

import numpy as np
import torch
import torch.distributed as dist

import cli
import data
import files
import model
import readers

FORMAT = 2
ROOT = os.path.dirname(os.path.abspath(__file__))  # weights/NAME.pth is found here from any working folder
TRAINED = {"recipe": None, "interpolation": "bilinear", "train_on_val": False, "data": None, "data_id": None,
           "epoch": None, "val_loss": None, "val_acc": None}  # what a file that does not say reads as


class WeightsError(cli.UserError):
    """A weights or checkpoint file the user gave cannot be used; the message says why in one line."""


def atomic_save(obj, path):
    """torch.save through files.atomic_write: a crash or a full disk mid-write leaves the previous file
    intact."""
    files.atomic_write(path, lambda tmp: torch.save(obj, tmp))


# ------------------------------------------------------------------------------------------------------------
# Weights files

def save_weights(path, net, name, trained=None, half=False):
    """`trained`: the fields of TRAINED this file can tell (the rest read as TRAINED says)."""
    unknown = set(trained or {}) - set(TRAINED)
    assert not unknown, f"not a field of a weights file: {unknown}"
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    if half:  # shipped weights: fp16 halves the file; float buffers only, BN's counter stays an integer
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    atomic_save({"format": FORMAT, "model": name, "classes": list(data.CLASSES), "state_dict": state,
                 "trained": {**TRAINED, **(trained or {})}}, path)


def upgrade(blob):
    """A format 1 file's {"meta": {"config": train.py's flags, "command", "data_id", "epoch", ...}} as format 2's
    `trained`. Runs before 2026-12-04 warped bilinearly, and their flags then named no interpolation."""
    meta = blob.pop("meta", None)
    meta = meta if isinstance(meta, dict) else {}
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    blob["trained"] = {"recipe": meta.get("command") or config.get("command"),
                       "interpolation": config.get("interpolation", "bilinear"),
                       "train_on_val": bool(config.get("train_on_val")), "data": config.get("data"),
                       "data_id": meta.get("data_id"), "epoch": meta.get("epoch"),
                       "val_loss": meta.get("val_loss"), "val_acc": meta.get("val_acc")}
    blob["format"] = FORMAT
    return blob


def read_file(path):
    """torch.load with weights_only=True, turning every way a file can be unusable into a WeightsError."""
    if os.path.isdir(path):
        raise WeightsError(f"{path}: is a folder; give the weights file inside it (model.pth)")
    shipped = os.path.join(ROOT, path)
    if not os.path.exists(path) and str(path).startswith("weights") and os.path.isfile(shipped):
        path = shipped  # the shipped weights, named as the README names them, from the user's own folder
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holds objects that are not plain data
        # torch colours parts of its message for terminals
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
        if "Weights only load failed" in text:  # torch's own explanation runs over many lines
            raise WeightsError(f"{path}: not a usable weights file: it holds code or objects, not only tensors "
                               f"and plain data, and is refused for safety (loading it could run that code)") \
                from None
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
    if blob.get("format") != FORMAT:
        if "meta" in blob and not isinstance(blob["meta"], (dict, type(None))):
            raise WeightsError(f"{path}: not a usable weights file ('meta' holds a "
                               f"{type(blob['meta']).__name__}, not what train.py writes)")
        blob = upgrade(blob)
    kinds = {"state_dict": dict, "classes": (list, tuple, type(None)), "trained": dict}
    wrong = [k for k, kind in kinds.items() if k in blob and not isinstance(blob[k], kind)]
    if wrong or not is_state_dict(blob["state_dict"]):
        raise WeightsError(f"{path}: not a usable weights file ({(wrong or ['state_dict'])[0]!r} holds a "
                           f"{type(blob[(wrong or ['state_dict'])[0]]).__name__}, not what train.py writes)")
    classes = [data.CLASSES[readers.class_index(str(c))] if readers.class_index(str(c)) is not None else str(c)
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
    trained = {k: blob["trained"].get(k, v) for k, v in TRAINED.items()}
    if trained["interpolation"] not in ("bilinear", "nearest"):  # someone else's word: read as unknown
        trained["interpolation"] = TRAINED["interpolation"]
    net.trained = trained
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
    cast = [k for k, v in own.items() if k in state and v.is_floating_point() and not state[k].is_floating_point()]
    if cast and not (missing or extra or shapes):
        raise WeightsError(f"{path}: holds whole numbers ({state[cast[0]].dtype}) where the {type(net).__name__} "
                           f"network has real-valued weights ({cast[0]}): a cast or quantised copy; use the "
                           f"float file")
    if missing or extra or shapes:
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "",
                 f"shapes differ: {shapes[:3]}" if shapes else ""]
        raise WeightsError(f"{path}: weights do not fit the {type(net).__name__} network: "
                           + "; ".join(p for p in parts if p))
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


# ------------------------------------------------------------------------------------------------------------
# checkpoint.pth: saved, read and restored

# What a checkpoint.pth holds, by kind: one altered by hand or by another program is refused in one line.
CHECKPOINT_KINDS = {"config": dict, "epoch": int, "history": list, "best_val_loss": float, "model": dict,
                    "optimizer": dict, "scheduler": dict, "scaler": dict, "rng": dict}


REMOVED = ("mixup", "cutmix")  # flags measured, found to cost accuracy (docs/results.md) and deleted


def renamed(config, path):
    """A configuration under today's flag names: runs started before a flag was renamed resume as they were
    (--head softmax is now --double-softmax), and runs started before a flag existed keep what they ran. A
    run that used a deleted flag cannot go on as it was: refused in one line."""
    config = dict(config)
    config.setdefault("interpolation", "bilinear")  # every run before the flag warped bilinearly
    config.setdefault("plateau_on", "val-loss")  # and every plateau run before its flag watched the validation loss
    if "head" in config:
        config["double_softmax"] = config.pop("head") == "softmax"
    for flag in REMOVED:
        if config.pop(flag, 0):
            raise WeightsError(f"{path}: the run trains with --{flag}, which this version no longer has (it lowered "
                               f"accuracy: docs/results.md); finish it with the commit that started it")
    return config


def read(path):
    """checkpoint.pth, checked to be one train.py wrote."""
    ckpt = read_file(path)
    if not isinstance(ckpt, dict) or "config" not in ckpt or "optimizer" not in ckpt:
        raise WeightsError(f"{path}: not a checkpoint.pth of train.py")
    wrong = [k for k, kind in CHECKPOINT_KINDS.items() if not isinstance(ckpt.get(k), kind)]
    if wrong:
        raise WeightsError(f"{path}: an incomplete or altered checkpoint.pth ({wrong[0]!r} is "
                                     f"{type(ckpt.get(wrong[0])).__name__}); resume from one that train.py "
                                     f"wrote")
    return ckpt


def check_same_data(ckpt, path, data_id, val_id, data_flag):
    """A run continues on the images it started on: other training images would make a different run, other
    validation images would mix two validation sets in its history and best epoch."""
    if ckpt.get("data_id") != data_id:
        raise WeightsError(f"{path}: the checkpoint was trained on other data than --data {data_flag}")
    if ckpt.get("val_id", val_id) != val_id:  # checkpoints without val_id: not checked
        raise WeightsError(f"{path}: the checkpoint was validated on other images than --data "
                                     f"{data_flag} gives; its history and best epoch would mix two "
                                     f"validation sets")


def save(path, trainer, epoch, history, best_val_loss, data_id, val_id):
    """Everything --resume needs, written to `path` by rank 0. Under torchrun every rank calls it: it gathers
    each rank's augmentation stream."""
    augment_ranks = [trainer.aug_gen.get_state().cpu()]
    if trainer.world > 1:
        augment_ranks = [None] * trainer.world
        dist.all_gather_object(augment_ranks, trainer.aug_gen.get_state().cpu())
    state = {"config": vars(trainer.args), "device": trainer.device.type, "world": trainer.world,
            "epoch": epoch, "history": history, "best_val_loss": best_val_loss,
            "data_id": data_id, "val_id": val_id, "model": trainer.net.state_dict(),
            "optimizer": trainer.opt.state_dict(), "scheduler": trainer.sched.state_dict(),
            "scaler": trainer.scaler.state_dict(),
            "ema": trainer.ema_net.state_dict() if trainer.ema_net is not None else {},
            "ema_updates": trainer.ema.updates if trainer.ema else 0,
             "rng": rng_state(trainer, augment_ranks)}
    if trainer.rank == 0:
        atomic_save(state, path)


def restore(trainer, ckpt, path, data_id, val_id):
    """Puts a checkpoint back into a new Trainer: the run goes on as if it had never stopped. Returns the run's
    history and its lowest validation loss so far."""
    check_same_data(ckpt, path, data_id, val_id, trainer.args.data)
    load_state(trainer.net, ckpt["model"], path)
    trainer.opt.load_state_dict(ckpt["optimizer"])
    trainer.sched.load_state_dict(ckpt["scheduler"])
    trainer.scaler.load_state_dict(ckpt["scaler"])
    apply_resume_flags(trainer.args, trainer.opt, trainer.sched)
    set_rng_state(trainer, ckpt["rng"], ckpt.get("world", 1), ckpt.get("device", "another device"),
                  ckpt["epoch"], path)
    if trainer.ema_net is not None:
        load_state(trainer.ema_net, ckpt["ema"] or ckpt["model"], path)
        trainer.ema.updates = ckpt.get("ema_updates", 0)
    return ckpt["history"], ckpt["best_val_loss"]


def apply_resume_flags(args, opt, sched):
    """--lr/--wd/--momentum/--plateau-* given with --resume: written into the restored optimiser and
    scheduler, which would otherwise go on with the checkpoint's values while config.json claimed the new."""
    given = set(args.given)
    for group in opt.param_groups:
        if "lr" in given:
            factor = sched.lr_lambdas[0](sched.last_epoch) if args.schedule != "plateau" else 1
            group["lr"] = args.lr * factor
        if "wd" in given:
            group["weight_decay"] = args.wd
        if "momentum" in given and "momentum" in group:
            group["momentum"], group["nesterov"] = args.momentum, args.momentum > 0
    if "lr" in given and args.schedule != "plateau":
        sched.base_lrs = [args.lr] * len(opt.param_groups)
    if args.schedule == "plateau":
        sched.factor = args.plateau_factor
        sched.patience = args.plateau_patience


# The random streams: torch's, the epoch order's, each rank's augmentation, numpy's, the mixing draws, Python's
# and CUDA's. Saved as tensors and plain numbers, so weights_only loading accepts them.

def numpy_rng_state(rng):
    _, keys, *rest = rng.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)),
            "rest": [int(rest[0]), int(rest[1]), float(rest[2])]}


def set_numpy_rng_state(rng, saved):
    rng.set_state(("MT19937", saved["keys"].numpy().astype(np.uint32), *saved["rest"]))


def rng_state(trainer, augment_ranks):
    return {"torch": torch.get_rng_state(), "sampler": trainer.sampler_gen.get_state(),
            "augment": augment_ranks[0], "augment_ranks": augment_ranks, "numpy": numpy_rng_state(np.random),
            "python": list(random.getstate()[1]),
            "cuda": torch.cuda.get_rng_state() if trainer.device.type == "cuda" else torch.empty(0)}


def set_rng_state(trainer, rng, saved_world, saved_device, epoch, path):
    torch.set_rng_state(rng["torch"])
    trainer.sampler_gen.set_state(rng["sampler"])
    augment_ranks = rng.get("augment_ranks", [rng["augment"]])
    own = trainer.aug_gen.get_state()
    if saved_world == trainer.world and augment_ranks[trainer.rank].shape == own.shape:
        trainer.aug_gen.set_state(augment_ranks[trainer.rank].to(own.device))
    else:  # a CUDA generator's state does not fit a CPU one, nor 4 ranks' streams 2 ranks
        trainer.aug_gen.manual_seed(trainer.args.seed + 1 + 1000003 * trainer.rank + 7919 * epoch)
        if trainer.rank == 0:
            print(f"note: {path} was saved by {saved_world} process(es) on {saved_device}; the augmentation "
                  f"draws continue from a fresh seed, so the run is not bit-identical to one that never "
                  f"stopped", flush=True)
    set_numpy_rng_state(np.random, rng["numpy"])
    random.setstate((3, tuple(rng["python"]), None))
    if trainer.device.type == "cuda" and saved_device == "cuda" and rng["cuda"].numel():
        torch.cuda.set_rng_state(rng["cuda"])


