"""A training run's bookkeeping, kept out of train.py's way: the flags checked against each other, the run
folder and its lock, checkpoint.pth and an exact --resume (every random stream included), and the files
a run leaves (history.csv, curves.png).

An exact resume means a run stopped at epoch N and resumed trains the same weights as one that never stopped:
the checkpoint holds the network, optimiser, scheduler and gradient scaler, and the state of each random
stream (tests/test_train.py checks it bit for bit).
"""
import argparse
import csv
try:
    import fcntl  # the folder lock; Windows has none, and there a run folder is not locked
except ImportError:
    fcntl = None
import os
import random
import shlex
import shutil
import time

import numpy as np
import torch
import torch.distributed as dist

import files
import inference

# What a resumed run may not change (a new run from its weights, --init, may).
RESUME_FIXED = ("model", "opt", "schedule", "plateau_on", "double_softmax", "seed", "train_on_val")
# What a checkpoint.pth holds, by kind: one altered by hand or by another program is refused in one line.
CHECKPOINT_KINDS = {"config": dict, "epoch": int, "history": list, "best_val_loss": float, "model": dict,
                    "optimizer": dict, "scheduler": dict, "scaler": dict, "rng": dict}
# The files that make a folder a run's: a new run refuses a folder holding any of them. config.json alone is
# not one: a run stopped (even killed) before its first epoch ends has nothing to lose.
RUN_FILES = ("checkpoint.pth", "model.pth", "last.pth", "history.csv")
HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


# ------------------------------------------------------------------------------------------------------------
# Flags that contradict each other, or the machine

def check_flags(args, p, device):
    """Refuses, in one line each, flag combinations where one flag would be silently ignored or could not
    work here."""
    given = set(args.given)
    if not 0 < args.scale[0] <= args.scale[1] < float("inf"):
        p.error(f"--scale needs 0 < low <= high, got {args.scale[0]} {args.scale[1]}")
    needs = {"warmup": ("schedule", "cosine", "warms up the cosine schedule"),
             "decay": ("schedule", "inverse-time", "is the inverse-time schedule's"),
             "momentum": ("opt", "sgd", "is SGD's"),
             "plateau_factor": ("schedule", "plateau", "sets ReduceLROnPlateau"),
             "plateau_patience": ("schedule", "plateau", "sets ReduceLROnPlateau"),
             "plateau_on": ("schedule", "plateau", "sets ReduceLROnPlateau")}
    for flag, (other, value, what) in needs.items():
        if flag in given and getattr(args, other) != value:
            p.error(f"--{flag.replace('_', '-')} {what}; --{other} {getattr(args, other)} has none "
                    f"(add --{other} {value})")
    if "teacher_weight" in given and not args.teacher:
        p.error("--teacher-weight weighs a teacher's probabilities; add --teacher PROBS (tools/teacher.py)")
    if args.class_weighted_loss and args.sampler == "weighted":
        p.error("--class-weighted-loss and --sampler weighted both correct the class imbalance; use one "
                "(add --sampler shuffle)")
    if args.train_on_val and args.early_stop:
        p.error("--early-stop watches the validation loss, which --train-on-val trains on; use one of them")
    if args.amp == "fp16" and device.type != "cuda":
        p.error("--amp fp16 needs a CUDA GPU; on CPU use bf16 or off")
    if args.compile and device.type == "cpu" and not any(map(shutil.which, ("g++", "c++", "clang++"))):
        p.error("--compile on the CPU needs a C++ compiler (g++ or clang++), and none is installed; "
                "drop --compile")
    world = int(os.environ.get("WORLD_SIZE", 1))
    if args.bs % world:
        p.error(f"--bs {args.bs} is the global batch and must divide evenly over the {world} processes, e.g. "
                f"--bs {args.bs - args.bs % world}")
    if args.data != "synthetic" and not os.path.exists(args.data):
        p.error(f"--data {args.data}: no such file or folder. Download fer2013.csv from "
                "https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-"
                "recognition-challenge/data into data/, pass --data PATH, or try --data synthetic")
    if args.out:
        own = os.path.dirname(os.path.abspath(args.resume)) if args.resume else None
        held = [f for f in RUN_FILES if os.path.isfile(os.path.join(args.out, f))]
        if held and os.path.abspath(args.out) != own:
            how = "continue it with --resume " + os.path.join(args.out, "checkpoint.pth") \
                if "checkpoint.pth" in held else "its checkpoint.pth is gone, so it cannot be continued"
            p.error(f"--out {args.out} already holds a run ({', '.join(held)}): {how}, "
                    "or choose another --out")


# ------------------------------------------------------------------------------------------------------------
# --resume: the checkpoint's configuration, and its state put back

def resumed_args(args, p, argv):
    """The checkpoint's own configuration, with only the flags given on this command line changed."""
    if os.path.isdir(args.resume):
        inside = os.path.join(args.resume, "checkpoint.pth")
        p.error(f"--resume {args.resume}: a folder; " + (f"resume with --resume {inside}" if
                os.path.isfile(inside) else "it holds no checkpoint.pth to resume"))
    ckpt = read(args.resume)
    config = {**vars(p.parse_args([])), **renamed(ckpt["config"])}  # flags newer than the run: defaults
    for k in set(args.given) - {"resume"}:
        if k in RESUME_FIXED and getattr(args, k) != config[k]:
            flag = "--" + k.replace("_", "-")
            p.error(f"--resume {args.resume}: the checkpoint trains with {flag} {config[k]}, "
                    f"not {getattr(args, k)}; to change it, start a new run from its weights with --init")
        config[k] = getattr(args, k)
    config["resume"], config["given"] = args.resume, args.given
    # config.json keeps the command that started the run and, after it, each one that continued it
    config["resumed_with"] = config.get("resumed_with", []) + ["python train.py " + shlex.join(argv)]
    if "out" not in args.given:
        config["out"] = os.path.dirname(os.path.abspath(args.resume))
    finished = os.path.exists(os.path.join(os.path.dirname(os.path.abspath(args.resume)), "last.pth"))
    if ckpt["epoch"] >= config["epochs"] and finished:
        p.error(f"--resume {args.resume}: the run has finished {ckpt['epoch']} epochs already; "
                f"pass --epochs N with N > {ckpt['epoch']} to train on")
    # a run stopped after its last epoch but before last.pth: the resume trains nothing and finishes it
    return argparse.Namespace(**config)


def renamed(config):
    """A configuration under today's flag names: runs started before a flag was renamed resume as they were
    (--head softmax is now --double-softmax), and runs started before a flag existed keep what they ran."""
    config = dict(config)
    config.setdefault("interpolation", "bilinear")  # every run before the flag warped bilinearly
    config.setdefault("plateau_on", "val-loss")  # and every plateau run before its flag watched the validation loss
    if "head" in config:
        config["double_softmax"] = config.pop("head") == "softmax"
    return config


def read(path):
    """checkpoint.pth, checked to be one train.py wrote."""
    ckpt = inference.read_file(path)
    if not isinstance(ckpt, dict) or "config" not in ckpt or "optimizer" not in ckpt:
        raise inference.WeightsError(f"{path}: not a checkpoint.pth of train.py")
    wrong = [k for k, kind in CHECKPOINT_KINDS.items() if not isinstance(ckpt.get(k), kind)]
    if wrong:
        raise inference.WeightsError(f"{path}: an incomplete or altered checkpoint.pth ({wrong[0]!r} is "
                                     f"{type(ckpt.get(wrong[0])).__name__}); resume from one that train.py "
                                     f"wrote")
    return ckpt


def check_same_data(ckpt, path, data_id, val_id, data_flag):
    """A run continues on the images it started on: other training images would make a different run, other
    validation images would mix two validation sets in its history and best epoch."""
    if ckpt.get("data_id") != data_id:
        raise inference.WeightsError(f"{path}: the checkpoint was trained on other data than --data {data_flag}")
    if ckpt.get("val_id", val_id) != val_id:  # checkpoints without val_id: not checked
        raise inference.WeightsError(f"{path}: the checkpoint was validated on other images than --data "
                                     f"{data_flag} gives; its history and best epoch would mix two "
                                     f"validation sets")


def state(trainer, epoch, history, best_val_loss, data_id, val_id):
    """Everything --resume needs. Under torchrun every rank calls it (it gathers each rank's augmentation
    stream); rank 0 writes it."""
    augment_ranks = [trainer.aug_gen.get_state().cpu()]
    if trainer.world > 1:
        augment_ranks = [None] * trainer.world
        dist.all_gather_object(augment_ranks, trainer.aug_gen.get_state().cpu())
    return {"config": vars(trainer.args), "device": trainer.device.type, "world": trainer.world,
            "epoch": epoch, "history": history, "best_val_loss": best_val_loss,
            "data_id": data_id, "val_id": val_id, "model": trainer.net.state_dict(),
            "optimizer": trainer.opt.state_dict(), "scheduler": trainer.sched.state_dict(),
            "scaler": trainer.scaler.state_dict(),
            "ema": trainer.ema_net.state_dict() if trainer.ema_net is not None else {},
            "ema_updates": trainer.ema.updates if trainer.ema else 0,
            "rng": rng_state(trainer, augment_ranks)}


def restore(trainer, ckpt, path):
    inference.load_state(trainer.net, ckpt["model"], path)
    trainer.opt.load_state_dict(ckpt["optimizer"])
    trainer.sched.load_state_dict(ckpt["scheduler"])
    trainer.scaler.load_state_dict(ckpt["scaler"])
    apply_resume_flags(trainer.args, trainer.opt, trainer.sched)
    set_rng_state(trainer, ckpt["rng"], ckpt.get("world", 1), ckpt.get("device", "another device"),
                  ckpt["epoch"], path)
    if trainer.ema_net is not None:
        inference.load_state(trainer.ema_net, ckpt["ema"] or ckpt["model"], path)
        trainer.ema.updates = ckpt.get("ema_updates", 0)


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


# ------------------------------------------------------------------------------------------------------------
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
            "mix": numpy_rng_state(trainer.mix_rng), "python": list(random.getstate()[1]),
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
    if "mix" in rng:  # checkpoints from before --mixup/--cutmix have no such state
        set_numpy_rng_state(trainer.mix_rng, rng["mix"])
    random.setstate((3, tuple(rng["python"]), None))
    if trainer.device.type == "cuda" and saved_device == "cuda" and rng["cuda"].numel():
        torch.cuda.set_rng_state(rng["cuda"])


# ------------------------------------------------------------------------------------------------------------
# The run folder: its lock and name, and what it keeps of the run, each written atomically so an interrupted
# run leaves the previous good file

def claim(out):
    """Marks `out` as this run's for as long as it trains: a second run into the same folder (two commands, or
    two started in the same second) is refused instead of both writing the same files. The mark is an flock
    on training.lock, which the system lifts when the process ends in any way (Ctrl-C, SIGTERM, SIGKILL, a
    crash), so no claim outlives its run, and no other process that happens to reuse its number keeps it."""
    os.makedirs(out, exist_ok=True)
    lock = open(os.path.join(out, "training.lock"), "a+")
    if fcntl is not None:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            pid = lock.read().strip() or "?"
            lock.close()
            raise files.OutputError(f"{out}: another training (process {pid}) is writing into it; wait "
                                    f"for it or choose another --out") from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def release(lock):
    os.remove(lock.name)  # before the lock goes: no second run can take a lock on a file about to vanish
    lock.close()


def default_out():
    """runs/<timestamp>, with -2, -3 ... when another run took that second's name."""
    stamp = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    out, n = stamp, 1
    while os.path.exists(out):
        n += 1
        out = f"{stamp}-{n}"
    return out


def write_history(out, history):
    lines = [",".join(HISTORY_COLUMNS)] + [
        ",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in HISTORY_COLUMNS)
        for row in history]
    files.atomic_write(os.path.join(out, "history.csv"), "\n".join(lines) + "\n")


def read_history(path):
    """history.csv back into the rows write_history wrote."""
    with open(path) as f:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_curves(out, history, trained_on_val=False):
    """Loss, accuracy and learning rate per epoch, like the report's Figure 8. A run that trained on its
    validation faces too (--train-on-val) gets its val line labelled as such and no "best" in the title: read
    as a result, its 90% would mislead."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(ep, [r["train_loss"] for r in history], label="train")
    val_label = "val (trained on too)" if trained_on_val else "validation"
    axes[0].plot(ep, [r["val_loss"] for r in history], label=val_label)
    axes[0].set_title("Cross-entropy loss")
    axes[1].plot(ep, [100 * r["train_acc"] for r in history], label="train")
    axes[1].plot(ep, [100 * r["val_acc"] for r in history], label=val_label)
    best = max(history, key=lambda r: r["val_acc"])
    axes[1].set_title("Accuracy (val faces were training faces)" if trained_on_val else
                      f"Accuracy (best val {100 * best['val_acc']:.2f}% @ {best['epoch']})")
    axes[1].set_ylabel("%")
    axes[2].plot(ep, [r["lr"] for r in history], color="tab:green")
    axes[2].set_yscale("log")
    axes[2].set_title("Learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    files.atomic_write(os.path.join(out, "curves.png"), lambda t: fig.savefig(t, dpi=110))
    plt.close(fig)
