"""train.py's flags checked before anything runs: against each other, against this machine, and against the run
that --resume continues. Each contradiction is refused in one line (p.error), so no flag is silently ignored.
"""
import argparse
import math
import os
import shlex
import shutil

import checkpoint
import run_folder

# What a resumed run may not change (a new run from its weights, --init, may).
RESUME_FIXED = ("model", "opt", "schedule", "plateau_on", "double_softmax", "seed", "train_on_val")
# Flags that only mean something beside another flag's value: given without it, they would be ignored.
NEEDS = {"warmup": ("schedule", "cosine", "warms up the cosine schedule"),
         "decay": ("schedule", "inverse-time", "is the inverse-time schedule's"),
         "momentum": ("opt", "sgd", "is SGD's"),
         "plateau_factor": ("schedule", "plateau", "sets ReduceLROnPlateau"),
         "plateau_patience": ("schedule", "plateau", "sets ReduceLROnPlateau"),
         "plateau_on": ("schedule", "plateau", "sets ReduceLROnPlateau")}


def resumed(args, p, typed):
    """The checkpoint, read once, with its run's configuration under `args` and only the flags given on this
    command line changed (--device is this machine's)."""
    if os.path.isdir(args.resume):
        inside = os.path.join(args.resume, "checkpoint.pth")
        p.error(f"--resume {args.resume}: a folder; " + (f"resume with --resume {inside}" if
                os.path.isfile(inside) else "it holds no checkpoint.pth to resume"))
    ckpt = checkpoint.read(args.resume)
    config = {**vars(p.parse_args([])), **checkpoint.renamed(ckpt["config"], args.resume), "device": args.device}
    for k in set(args.given) - {"resume"}:
        if k in RESUME_FIXED and getattr(args, k) != config[k]:
            p.error(f"--resume {args.resume}: the checkpoint trains with --{k.replace('_', '-')} {config[k]}, not "
                    f"{getattr(args, k)}; to change it, start a new run from its weights with --init")
        config[k] = getattr(args, k)
    config["resume"], config["given"] = args.resume, args.given
    config["resumed_with"] = config.get("resumed_with", []) + ["python train.py " + shlex.join(typed)]
    if "out" not in args.given:
        config["out"] = os.path.dirname(os.path.abspath(args.resume))
    finished = os.path.exists(os.path.join(os.path.dirname(os.path.abspath(args.resume)), "last.pth"))
    if ckpt["epoch"] >= config["epochs"] and finished:  # stopped before last.pth: the resume finishes it
        p.error(f"--resume {args.resume}: the run has finished {ckpt['epoch']} epochs already; "
                f"pass --epochs N with N > {ckpt['epoch']} to train on")
    ckpt["args"] = argparse.Namespace(**config)
    return ckpt


def check(args, p, device):
    """Refuses, in one line each, flags that would be silently ignored or could not work here."""
    given = set(args.given)
    if not 0 < args.scale[0] <= args.scale[1] < math.inf:
        p.error(f"--scale needs 0 < low <= high, got {args.scale[0]} {args.scale[1]}")
    for flag, (other, value, what) in NEEDS.items():
        if flag in given and getattr(args, other) != value:
            p.error(f"--{flag.replace('_', '-')} {what}; --{other} {getattr(args, other)} has none "
                    f"(add --{other} {value})")
    world = int(os.environ.get("WORLD_SIZE", 1))
    refusals = [
        ("teacher_weight" in given and not args.teacher,
         "--teacher-weight weighs a teacher's probabilities; add --teacher PROBS (tools/teacher.py)"),
        (args.class_weighted_loss and args.sampler == "weighted", "--class-weighted-loss and --sampler weighted "
         "both correct the class imbalance; use one (add --sampler shuffle)"),
        (args.train_on_val and args.early_stop,
         "--early-stop watches the validation loss, which --train-on-val trains on; use one of them"),
        (args.amp == "fp16" and device.type != "cuda", "--amp fp16 needs a CUDA GPU; on CPU use bf16 or off"),
        (args.compile and device.type == "cpu" and not any(map(shutil.which, ("g++", "c++", "clang++"))),
         "--compile on the CPU needs a C++ compiler (g++ or clang++), and none is installed; drop --compile"),
        (args.bs % world, f"--bs {args.bs} is the global batch and must divide evenly over the {world} "
         f"processes, e.g. --bs {args.bs - args.bs % world}"),
        (args.data != "synthetic" and not os.path.exists(args.data), f"--data {args.data}: no such file or "
         "folder. Download fer2013.csv from https://www.kaggle.com/c/challenges-in-representation-learning-"
         "facial-expression-recognition-challenge/data into data/, pass --data PATH, or try --data synthetic")]
    for refused, why in refusals:
        if refused:
            p.error(why)
    if args.out:
        own = os.path.dirname(os.path.abspath(args.resume)) if args.resume else None
        held = [f for f in run_folder.RUN_FILES if os.path.isfile(os.path.join(args.out, f))]
        if held and os.path.abspath(args.out) != own:
            how = "continue it with --resume " + os.path.join(args.out, "checkpoint.pth") \
                if "checkpoint.pth" in held else "its checkpoint.pth is gone, so it cannot be continued"
            p.error(f"--out {args.out} already holds a run ({', '.join(held)}): {how}, or choose another --out")
    if args.schedule == "plateau" and args.plateau_on == "val-loss" and int(os.environ.get("RANK", 0)) == 0 and \
            0 < args.early_stop <= args.plateau_patience and not args.resume:  # said once under torchrun
        print(f"note: --early-stop {args.early_stop} ends the run before --plateau-patience "
              f"{args.plateau_patience} can lower the learning rate (a patience under the early stop lets it act)")
