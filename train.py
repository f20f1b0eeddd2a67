"""Train a FER2013 network with the report's recipe, in a hand-written loop.

    python train.py --epochs 350 --bs 256                       the report's run (data/fer2013.csv)
    python train.py --data synthetic --epochs 10                a one-minute demo on synthetic faces
    python train.py --resume runs/<stamp>/checkpoint.pth        continue exactly where a run stopped
    python train.py --init weights/resnet.pth --data faces/     fine-tune weights on other data
    torchrun --standalone --nproc_per_node 4 train.py ...        the same run on 4 GPUs (DDP)

Speed (after airbench): the whole training set lives on the device as one uint8 tensor, each epoch's indices
come from WeightedRandomSampler in one draw, and each batch is gathered, flipped, affine-warped and normalised
by tensor ops on the device. No DataLoader workers, no per-sample Python, no host<->device copy or .item()
inside the step: loss and accuracy sums stay on the device and are read once per epoch.

The file reads top to bottom: the flags, the loop's pieces (schedules, the moving average, the random state,
the Trainer), validation and the outputs, then `run` (one training run) and `main`.
"""
import argparse
import copy
try:
    import fcntl  # the folder lock; Windows has none, and there a run folder is not locked
except ImportError:
    fcntl = None
import math
import os
import random
import shlex
import shutil
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import augment
import cli
import data
import files
import model as models

# ------------------------------------------------------------------------------------------------------------
# The flags. Every default is the report's recipe; the stronger recipes switch options on (README, docs/).

def make_parser():
    p = cli.parser("train.py", __doc__)
    p.add_argument("--data", default="data/fer2013.csv", help="fer2013.csv / train.csv / icml_face_data.csv "
                   "(.gz too), an image folder, or 'synthetic'")
    p.add_argument("--model", default="resnet", choices=list(models.MODELS), help="the network (model.py)")
    p.add_argument("--epochs", type=int, default=350, help="epochs in all (with --resume: up to this epoch)")
    p.add_argument("--bs", type=int, default=256, help="batch size (the global batch under torchrun)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (peak learning rate for cosine)")
    p.add_argument("--opt", choices=["adam", "adamw", "sgd"], default="adam", help="Adam (the report), AdamW "
                   "(decoupled weight decay) or SGD with Nesterov momentum (Khaireddin & Chen 2021)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD's Nesterov momentum (0: plain SGD)")
    p.add_argument("--wd", type=float, default=0.0, help="weight decay")
    p.add_argument("--schedule", choices=["plateau", "cosine", "inverse-time"], default="plateau",
                   help="plateau: ReduceLROnPlateau on validation loss (the report); cosine: linear warm-up, "
                   "then cosine decay to 0 over --epochs, stepped every batch; inverse-time: lr / (1 + "
                   "--decay x step), stepped every batch (Keras's `decay`, seed 004; --decay 0: a constant "
                   "lr, seed 002)")
    p.add_argument("--warmup", type=float, default=0.0, help="cosine warm-up, epochs")
    p.add_argument("--decay", type=float, default=0.0, help="inverse-time decay per step (with its schedule)")
    p.add_argument("--plateau-factor", type=float, default=0.1, help="ReduceLROnPlateau factor (PyTorch's)")
    p.add_argument("--plateau-patience", type=int, default=10, help="ReduceLROnPlateau patience, epochs")
    p.add_argument("--plateau-on", choices=["val-loss", "train-loss"], default="val-loss",
                   help="the loss ReduceLROnPlateau watches: the validation loss, or the epoch's training loss "
                   "(whose learning-rate curve matches the report's Figure 8: docs/differences.md)")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing")
    p.add_argument("--head", choices=["logits", "softmax"], default="logits",
                   help="softmax: a Softmax before the cross-entropy, as the report had (for comparison "
                   "only: softmax twice squashes the gradients)")
    p.add_argument("--sampler", choices=["weighted", "shuffle"], default="weighted",
                   help="weighted: WeightedRandomSampler over 1/class count (the report); shuffle: a "
                   "permutation")
    p.add_argument("--class-weighted-loss", action="store_true", help="weight the loss by 1/class frequency "
                   "instead of resampling (seed 001); use with --sampler shuffle")
    p.add_argument("--early-stop", type=int, default=0, metavar="EPOCHS",
                   help="stop when the validation loss has not improved for this many epochs (0: never)")
    p.add_argument("--flip", type=float, default=0.5, help="horizontal flip probability")
    p.add_argument("--degrees", type=float, default=8.0, help="random rotation, +- degrees")
    p.add_argument("--translate", type=float, default=0.2, help="random translation, fraction of the size")
    p.add_argument("--scale", type=float, nargs=2, default=(0.8, 1.2), help="random zoom range")
    p.add_argument("--erase", type=float, default=0.0, help="random-erasing probability (the report: off)")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA) "
                   "weights (Zhang et al. 2018; 0: off)")
    p.add_argument("--cutmix", type=float, default=0.0, metavar="ALPHA", help="CutMix with Beta(ALPHA, "
                   "ALPHA) areas (Yun et al. 2019; 0: off); with --mixup too, each batch uses one of them at "
                   "random")
    p.add_argument("--teacher", metavar="PROBS", help="distil a teacher into this network: the class "
                   "probabilities tools/teacher.py computed for these training faces (say, the shipped "
                   "ensemble with TTA)")
    p.add_argument("--teacher-weight", type=float, default=0.5, help="the teacher's share of the loss: (1 - w) "
                   "x cross-entropy with the labels + w x cross-entropy with the teacher's probabilities")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY", help="validate and save an exponential "
                   "moving average of the weights, updated every step with this decay, e.g. 0.999 (0: off)")
    p.add_argument("--train-on-val", action="store_true", help="train on train + validation for a final "
                   "model; model.pth is then the last epoch's (the validation figures are no longer held "
                   "out)")
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto",
                   help="mixed precision: bf16 autocast (CPU and CUDA), fp16 + GradScaler (CUDA), off (fp32), "
                   "or auto: bf16 where the GPU or CPU computes it natively, else fp32 (a CPU without "
                   "AVX512-BF16 or AMX emulates bf16, slower than fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slower on the 2-core CPU "
                   "measured; may pay off on long GPU runs; needs a C++ compiler)")
    cli.add_device_flag(p)
    p.add_argument("--seed", type=int, default=0, help="initial weights, epoch order and augmentation draws")
    p.add_argument("--out", help="output folder (default runs/<timestamp>)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this checkpoint.pth")
    p.add_argument("--init", metavar="WEIGHTS", help="start from these weights (a model.pth, weights/*.pth) "
                   "instead of Kaiming init: fine-tuning, with a fresh optimiser and schedule")
    return p


# Every number a flag takes, and the values that mean something. NaN fails each test (every comparison with
# it is False), so "--wd nan" is refused like "--wd -1".
RANGES = {
    "epochs": (lambda v: v > 0, "a positive integer"), "bs": (lambda v: v > 0, "a positive integer"),
    "lr": (lambda v: 0 < v < math.inf, "a positive number"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1) (0: plain SGD)"),
    "wd": (lambda v: 0 <= v < math.inf, ">= 0"), "decay": (lambda v: 0 <= v < math.inf, ">= 0"),
    "warmup": (lambda v: 0 <= v < math.inf, ">= 0 (epochs)"),
    "plateau_factor": (lambda v: 0 < v < 1, "in (0, 1)"), "plateau_patience": (lambda v: v >= 0, ">= 0"),
    "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "early_stop": (lambda v: v >= 0, ">= 0 (0: never)"),
    "flip": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "erase": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "degrees": (lambda v: 0 <= v <= 180, "in [0, 180]"),
    "translate": (lambda v: 0 <= v <= 0.5, "a fraction of the size in [0, 0.5] (more moves the face out of "
                  "the picture)"),
    "mixup": (lambda v: 0 <= v < math.inf, ">= 0 (0: off)"),
    "cutmix": (lambda v: 0 <= v < math.inf, ">= 0 (0: off)"),
    "ema": (lambda v: 0 <= v < 1, "a decay in [0, 1) (0: off)"),
    "teacher_weight": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "seed": (lambda v: 0 <= v < 2 ** 32, "in [0, 2^32)"),
}
# What a resumed run may change: the optimiser's own numbers are written back into it (a checkpoint's
# optimiser state would otherwise keep the old ones while config.json claimed the new).
RESUME_FIXED = ("model", "opt", "schedule", "plateau_on", "head", "seed", "train_on_val")
RESUME_OPTIMISER = ("lr", "wd", "momentum", "plateau_factor", "plateau_patience")
# What a checkpoint.pth holds, by kind: one altered by hand or by another program is refused in one line.
CHECKPOINT_KINDS = {"config": dict, "epoch": int, "history": list, "best_val_loss": float, "model": dict,
                    "optimizer": dict, "scheduler": dict, "scaler": dict, "rng": dict}
# The files that make a folder a run's: a new run refuses a folder holding any of them. config.json alone is
# not one: a run stopped (even killed) before its first epoch ends has nothing to lose.
RUN_FILES = ("checkpoint.pth", "model.pth", "last.pth", "history.csv")


def parse_args(argv):
    p = make_parser()
    args = p.parse_args(argv)
    args.given = sorted(cli.given_flags(argv))
    if args.init and args.resume:
        p.error("--init starts a new run from weights, --resume continues a run from its checkpoint; "
                "use one of them")
    if args.resume:
        args = resumed_args(args, p, argv)
    for flag, (ok, what) in RANGES.items():
        if not ok(getattr(args, flag)):
            p.error(f"--{flag.replace('_', '-')} must be {what}, got {getattr(args, flag)}")
    if not 0 < args.scale[0] <= args.scale[1] < math.inf:
        p.error(f"--scale needs 0 < low <= high, got {args.scale[0]} {args.scale[1]}")
    if args.warmup and args.schedule != "cosine":
        p.error(f"--warmup warms up the cosine schedule; --schedule {args.schedule} has none "
                "(add --schedule cosine)")
    if args.decay and args.schedule != "inverse-time":
        p.error(f"--decay is the inverse-time schedule's; --schedule {args.schedule} ignores it "
                "(add --schedule inverse-time)")
    given = set(args.given)
    if "momentum" in given and args.opt != "sgd":
        p.error(f"--momentum is SGD's; --opt {args.opt} has none (add --opt sgd)")
    ignored = sorted(given & {"plateau_factor", "plateau_patience", "plateau_on"})
    if ignored and args.schedule != "plateau":
        p.error(f"--{ignored[0].replace('_', '-')} sets ReduceLROnPlateau; --schedule {args.schedule} does "
                "not use it")
    if "teacher_weight" in given and not args.teacher:
        p.error("--teacher-weight weighs a teacher's probabilities; add --teacher PROBS (tools/teacher.py)")
    if args.class_weighted_loss and args.sampler == "weighted":
        p.error("--class-weighted-loss and --sampler weighted both correct the class imbalance; use one "
                "(add --sampler shuffle)")
    if args.train_on_val and args.early_stop:
        p.error("--early-stop watches the validation loss, which --train-on-val trains on; use one of them")
    try:
        device = models.pick_device(args.device)
    except cli.FlagError as e:
        p.error(str(e))
    if args.amp == "auto":  # config.json records what ran
        args.amp = models.fast_amp(device)
    if args.amp == "fp16" and device.type != "cuda":
        p.error("--amp fp16 needs a CUDA GPU; on CPU use bf16 or off")
    if args.compile and device.type == "cpu" and not (shutil.which("g++") or shutil.which("c++")
                                                      or shutil.which("clang++")):
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
    return args


def resumed_args(args, p, argv):
    """The checkpoint's own configuration, with only the flags given on this command line changed."""
    if os.path.isdir(args.resume):
        inside = os.path.join(args.resume, "checkpoint.pth")
        p.error(f"--resume {args.resume}: a folder; " + (f"resume with --resume {inside}" if
                os.path.isfile(inside) else "it holds no checkpoint.pth to resume"))
    ckpt = models.read_file(args.resume)
    if not isinstance(ckpt, dict) or "config" not in ckpt or "optimizer" not in ckpt:
        raise models.WeightsError(f"{args.resume}: not a checkpoint.pth of train.py")
    wrong = [k for k, kind in CHECKPOINT_KINDS.items() if not isinstance(ckpt.get(k), kind)]
    if wrong:
        raise models.WeightsError(f"{args.resume}: an incomplete or altered checkpoint.pth ("
                                  f"{wrong[0]!r} is {type(ckpt.get(wrong[0])).__name__}); resume from one "
                                  f"that train.py wrote")
    config = {**vars(p.parse_args([])), **ckpt["config"]}  # flags newer than the checkpoint: their defaults
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


# ------------------------------------------------------------------------------------------------------------
# The loop's pieces

def warmup_cosine(warmup_steps, total_steps):
    """Learning-rate multiplier: linear from ~0 to 1 over the warm-up, then half a cosine down to 0."""
    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def inverse_time(decay):
    """Learning-rate multiplier 1 / (1 + decay x step): Keras's legacy `decay` argument, applied after every
    update (seed 004's "decay 1e-5"). It is not weight decay."""
    return lambda step: 1 / (1 + decay * step)


def make_optimizer(args, params):
    if args.opt in ("adam", "adamw"):
        adam = torch.optim.Adam if args.opt == "adam" else torch.optim.AdamW
        return adam(params, lr=args.lr, weight_decay=args.wd)
    return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, nesterov=args.momentum > 0,
                           weight_decay=args.wd)  # momentum 0: plain SGD


def make_scheduler(args, opt, steps_per_epoch):
    if args.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=args.plateau_factor,
                                                          patience=args.plateau_patience)
    factor = warmup_cosine(args.warmup * steps_per_epoch, args.epochs * steps_per_epoch) \
        if args.schedule == "cosine" else inverse_time(args.decay)
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def apply_resume_flags(args, opt, sched):
    """--lr/--wd/--momentum/--plateau-* given with --resume: written into the restored optimiser and
    scheduler, which would otherwise go on with the checkpoint's values."""
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


class EMA:
    """ema <- decay * ema + (1 - decay) * net after every step, over the whole state_dict: weights and
    BatchNorm statistics alike (as timm's ModelEmaV2); integer buffers (BatchNorm's batch count) are copied.
    The decay warms up as (1 + n) / (10 + n) after n updates (TensorFlow's ExponentialMovingAverage): with
    a fixed decay from the first step, a short run's average is still partly the random initial weights."""

    def __init__(self, average, net, decay):
        self.decay, self.updates = decay, 0
        pairs = list(zip(average.state_dict().values(), net.state_dict().values()))
        floats = [(e, p) for e, p in pairs if e.is_floating_point()]
        self.floats = [[e for e, _ in floats], [p for _, p in floats]]
        self.counts = [(e, p) for e, p in pairs if not e.is_floating_point()]

    @torch.no_grad()
    def update(self):
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))  # a host number: no sync
        torch._foreach_lerp_(*self.floats, 1 - decay)  # one fused op, as torch.optim's foreach steps
        for e, p in self.counts:
            e.copy_(p)


def numpy_rng_state(rng):
    _, keys, *rest = rng.get_state()  # a tensor and plain numbers, so weights_only loading accepts it
    return {"keys": torch.from_numpy(keys.astype(np.int64)),
            "rest": [int(rest[0]), int(rest[1]), float(rest[2])]}


def set_numpy_rng_state(rng, state):
    rng.set_state(("MT19937", state["keys"].numpy().astype(np.uint32), *state["rest"]))


def rng_state(trainer, augment_ranks):
    """Every random stream of a run, for an exact --resume: torch's, the epoch order's, each rank's
    augmentation, numpy's, the mixing draws, Python's and CUDA's."""
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
                  f"stopped",
                  flush=True)
    set_numpy_rng_state(np.random, rng["numpy"])
    if "mix" in rng:  # checkpoints from before --mixup/--cutmix have no such state
        set_numpy_rng_state(trainer.mix_rng, rng["mix"])
    random.setstate((3, tuple(rng["python"]), None))
    if trainer.device.type == "cuda" and saved_device == "cuda" and rng["cuda"].numel():
        torch.cuda.set_rng_state(rng["cuda"])


def cross_entropy(logits, y, head="logits", **options):
    """The loss, in fp32. --head softmax puts the report's Softmax before it: CrossEntropyLoss then applies a
    second (log-)softmax, which squashes the gradients; kept to measure what the report's choice cost."""
    logits = logits.float()
    return F.cross_entropy(logits.softmax(1) if head == "softmax" else logits, y, **options)


def rank_batch(order, step, bs, rank, world):
    """This rank's share of global batch `step`: the one-process batch order[step * bs:(step + 1) * bs], cut
    into `world` consecutive pieces. Every rank draws the same order, so together they see what one process
    sees."""
    local = bs // world
    start = step * bs + rank * local
    return order[start:start + local]


class Trainer:
    """Model, optimiser, scheduler and the device-resident data of one run."""

    def __init__(self, args, splits, device, rank=0, world=1, teacher=None):
        self.args, self.device, self.rank, self.world = args, device, rank, world
        # the teacher's probabilities [N, 7] for the training faces, on the device beside them (or None)
        self.teacher = None if teacher is None else teacher.float().to(device)
        amp = models.fast_amp(device) if args.amp == "auto" else args.amp  # parse_args resolves it already
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
        torch.manual_seed(args.seed)  # the same on every rank: one initial network
        self.net = models.build(args.model)
        if args.head == "softmax":  # the report's network as it was, its output layer Kaiming-normal too
            models.kaiming_output_layer(self.net)
        if args.init and not args.resume:  # a resumed run's own weights replace these anyway
            self.net.load_state_dict(models.load_weights(args.init, expect=args.model)[0].state_dict())
        self.net = self.net.to(device, memory_format=torch.channels_last)
        self.step_net = torch.compile(self.net) if args.compile else self.net
        if world > 1:
            # Gradients are averaged over the ranks in backward, and train_epoch broadcasts rank 0's BatchNorm
            # buffers. Batch statistics stay per rank, no SyncBatchNorm: PyTorch refuses it on CPU, and at 128
            # images per rank BatchNorm is far from its small-batch trouble (docs/distributed.md).
            self.step_net = DDP(self.step_net, device_ids=[device] if device.type == "cuda" else None)
        self.opt = make_optimizer(args, self.net.parameters())
        n_train = len(splits["train"][1])
        self.sched = make_scheduler(args, self.opt, max(1, n_train // min(args.bs, n_train)))
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        # The data set, resident on the device: 28,709 x 48 x 48 uint8 = 66 MB.
        self.train_x, self.train_y = (t.to(device) for t in splits["train"])
        self.val_x, self.val_y = splits["val"]
        # epoch order: one draw/epoch, alike on all ranks
        self.sampler_gen = torch.Generator().manual_seed(args.seed)
        # Augmentation draws, on the device: each rank its own stream (rank 0's is the one-process stream).
        self.aug_gen = torch.Generator(device).manual_seed(args.seed + 1 + 1000003 * rank)
        self.sample_weights = data.class_weights(splits["train"][1])
        counts = torch.bincount(splits["train"][1], minlength=len(data.CLASSES)).clamp(min=1).float()
        self.loss_weights = (len(counts) * (1 / counts) / (1 / counts).sum()).to(device) \
            if args.class_weighted_loss else None
        self.mix_rng = np.random.RandomState(args.seed)  # mixup/CutMix draws: on the host, so nothing to sync
        self.ema = copy.deepcopy(self.net).requires_grad_(False) if args.ema else None
        self.averager = EMA(self.ema, self.net, args.ema) if args.ema else None

    @property
    def eval_net(self):
        """The network that is validated and saved: the moving average when --ema is on."""
        return self.ema if self.ema is not None else self.net

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def epoch_order(self):
        """One epoch's indices: the design card's WeightedRandomSampler (with replacement, dataset-length
        draws), or a permutation. Drawn in one call and copied to the device once per epoch. The sampler is
        torch.multinomial itself, called as WeightedRandomSampler.__iter__ calls it (the same indices from the
        same generator state) without the trip through a Python list of 28,709 ints that list(sampler)
        makes."""
        n = len(self.train_y)
        if self.args.sampler == "weighted":
            order = torch.multinomial(self.sample_weights, n, replacement=True, generator=self.sampler_gen)
        else:
            order = torch.randperm(n, generator=self.sampler_gen)
        return order.to(self.device, non_blocking=True)

    def loss(self, logits, y):
        return cross_entropy(logits, y, self.args.head, weight=self.loss_weights,
                             label_smoothing=self.args.label_smoothing)

    def train_step(self, x_uint8, y, soft=None):
        """One optimiser step on a uint8 batch [B, 48, 48] already on the device. Returns the summed loss and
        correct count as device tensors (no sync)."""
        a = self.args
        x = augment.augment(x_uint8[:, None].float().div_(255), self.aug_gen, a.flip, a.degrees, a.translate,
                            a.scale, a.erase)
        x = data.normalize(x).contiguous(memory_format=torch.channels_last)
        x, y_partner, lam = augment.mix(x, y, self.mix_rng, a.mixup, a.cutmix)
        with self.autocast():
            logits = self.step_net(x)
            loss = self.loss(logits, y)
            if lam < 1:  # a host number: mixing off costs no second cross-entropy
                loss = lam * loss + (1 - lam) * self.loss(logits, y_partner)
            if soft is not None:  # distillation: the teacher's probabilities as a second, soft target
                taught = self.loss(logits, soft) if lam == 1 else \
                    lam * self.loss(logits, soft) + (1 - lam) * self.loss(logits, soft.flip(0))
                loss = (1 - a.teacher_weight) * loss + a.teacher_weight * taught
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        if a.schedule != "plateau":
            self.sched.step()  # per batch; host-side arithmetic only
        if self.averager is not None:
            self.averager.update()
        return loss.detach() * len(y), (logits.argmax(1) == y).sum()

    def train_epoch(self, desc):
        self.net.train()
        order = self.epoch_order()
        bs = min(self.args.bs, len(order) - len(order) % self.world)  # the global batch
        steps = len(order) // bs  # full batches only: BatchNorm needs > 1 sample, and shapes stay static
        sums = torch.zeros(2, device=self.device)  # loss, correct
        for i in tqdm(range(steps), desc=desc, leave=False, dynamic_ncols=True, file=sys.stdout,
                      disable=None if self.rank == 0 else True):
            idx = rank_batch(order, i, bs, self.rank, self.world)
            soft = self.teacher[idx] if self.teacher is not None else None
            batch_loss, batch_correct = self.train_step(self.train_x[idx], self.train_y[idx], soft)
            sums[0] += batch_loss
            sums[1] += batch_correct
        if self.world > 1:
            dist.all_reduce(sums)
            for b in self.net.buffers():  # rank 0's BatchNorm statistics everywhere, as saved and validated
                dist.broadcast(b, 0)
        loss_sum, correct = sums.tolist()  # the epoch's one sync
        return loss_sum / (steps * bs), correct / (steps * bs)

    def state(self, epoch, history, best_val_loss, data_id, val_id):
        """Everything --resume needs. Under torchrun every rank calls it (it gathers each rank's augmentation
        stream); rank 0 writes it."""
        augment_ranks = [self.aug_gen.get_state().cpu()]
        if self.world > 1:
            augment_ranks = [None] * self.world
            dist.all_gather_object(augment_ranks, self.aug_gen.get_state().cpu())
        return {"config": vars(self.args), "device": self.device.type, "world": self.world,
                "epoch": epoch, "history": history, "best_val_loss": best_val_loss,
                "data_id": data_id, "val_id": val_id, "model": self.net.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else {},
                "ema_updates": self.averager.updates if self.averager else 0,
                "rng": rng_state(self, augment_ranks)}

    def load_state(self, ckpt, path):
        models.load_state(self.net, ckpt["model"], path)
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        apply_resume_flags(self.args, self.opt, self.sched)
        set_rng_state(self, ckpt["rng"], ckpt.get("world", 1), ckpt.get("device", "another device"),
                      ckpt["epoch"], path)
        if self.ema is not None:
            models.load_state(self.ema, ckpt["ema"] or ckpt["model"], path)
            self.averager.updates = ckpt.get("ema_updates", 0)


def validate(net, images, labels, device, autocast, batch_size=1024, head="logits", rank=0, world=1):
    """Mean cross-entropy and accuracy over a split, batched on the device; one sync at the end. Under
    torchrun each rank scores its slice and the sums are added up."""
    net.eval()
    lo, hi = rank * len(labels) // world, (rank + 1) * len(labels) // world
    sums = torch.zeros(2, device=device)  # loss, correct
    with torch.no_grad(), autocast:
        for i, x in enumerate(data.batches(images[lo:hi], batch_size, device)):
            y = labels[lo + i * batch_size:min(hi, lo + (i + 1) * batch_size)].to(device, non_blocking=True)
            logits = net(x).float()
            sums[0] += cross_entropy(logits, y, head, reduction="sum")
            sums[1] += (logits.argmax(1) == y).sum()
    if world > 1:
        dist.all_reduce(sums)
    loss_sum, correct = sums.tolist()
    return loss_sum / len(labels), correct / len(labels)


# ------------------------------------------------------------------------------------------------------------
# Outputs, each written atomically so an interrupted run leaves the previous good file

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
# curves.png is redrawn at most this often (and at the end): with 350 epochs a drawing takes seconds on a slow
# CPU, longer than a GPU epoch (bench.py's host_curves_ms); history.csv is written each epoch.
PLOT_EVERY_S = 30


def write_history(out, history):
    lines = [",".join(HISTORY_COLUMNS)] + [
        ",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in HISTORY_COLUMNS)
        for row in history]
    files.atomic_write(os.path.join(out, "history.csv"), "\n".join(lines) + "\n")


def plot_curves(out, history):
    """Loss, accuracy and learning rate per epoch, like the report's Figure 8."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(ep, [r["train_loss"] for r in history], label="train")
    axes[0].plot(ep, [r["val_loss"] for r in history], label="validation")
    axes[0].set_title("Cross-entropy loss")
    axes[1].plot(ep, [100 * r["train_acc"] for r in history], label="train")
    axes[1].plot(ep, [100 * r["val_acc"] for r in history], label="validation")
    best = max(history, key=lambda r: r["val_acc"])
    axes[1].set_title(f"Accuracy (best val {100 * best['val_acc']:.2f}% @ {best['epoch']})")
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


# ------------------------------------------------------------------------------------------------------------
# One training run

def run(args, device, rank, world):
    master = rank == 0  # the one process that prints and writes files
    say = print if master else (lambda *a, **k: None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed 48x48 shapes: pick the fastest kernels once
    out = args.out
    splits = data.load(args.data)  # the split is fixed (seed 0) whatever --seed, so evaluate.py sees the same
    if "train" not in splits:
        raise data.DataError(f"{args.data}: no training images (it holds {', '.join(splits)} only); it can "
                             f"be evaluated with evaluate.py, not trained on")
    if splits.unknown:
        raise data.DataError(f"{splits.unknown[0]}: unknown class folder (expected one of "
                             f"{', '.join(data.CLASSES)}); training needs every class folder to be one: "
                             f"rename or move it")
    for note in splits.notes:
        say(f"note: {note}")
    if args.schedule == "plateau" and 0 < args.early_stop <= args.plateau_patience and not args.resume:
        # ReduceLROnPlateau cuts after patience + 1 epochs without a better loss; the early stop comes first.
        # Said once, when the run starts, not again on each --resume.
        say(f"note: --early-stop {args.early_stop} ends the run before --plateau-patience "
            f"{args.plateau_patience} can lower the learning rate (a patience under the early stop lets it act)")
    teacher = teacher_probabilities(args.teacher, splits, args.train_on_val) if args.teacher else None
    if args.train_on_val:
        splits["train"] = tuple(torch.cat([a, b]) for a, b in zip(splits["train"], splits["val"]))
    data_id, val_id = data.fingerprint(*splits["train"]), data.fingerprint(*splits["val"])
    trainer = Trainer(args, splits, device, rank, world, teacher)
    history, best_val_loss, start = [], math.inf, 1
    if args.resume:
        ckpt = models.read_file(args.resume)
        if ckpt.get("data_id") != data_id:
            raise models.WeightsError(f"{args.resume}: the checkpoint was trained on other data than "
                                      f"--data {args.data}")
        if ckpt.get("val_id", val_id) != val_id:  # checkpoints before val_id: not checked
            raise models.WeightsError(f"{args.resume}: the checkpoint was validated on other images than "
                                      f"--data {args.data} gives; its history and best epoch would mix two "
                                      f"validation sets")
        trainer.load_state(ckpt, args.resume)
        history, best_val_loss, start = ckpt["history"], ckpt["best_val_loss"], ckpt["epoch"] + 1
        say(f"resuming at epoch {start} of {args.epochs}" if start <= args.epochs else
            f"all {args.epochs} epochs are trained; finishing the run (last.pth, curves, the closing score)")
    config_path = os.path.join(out, "config.json")
    if master:
        files.write_json(config_path, vars(args))
    counts = {k: len(v[1]) for k, v in splits.items()}
    threads = f"{torch.get_num_threads()} threads"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else threads
    say(f"{args.model}: {models.count_parameters(trainer.net):,} parameters | {device} ({where})"
        f"{f' x {world} processes, {args.bs // world} images each per step' if world > 1 else ''}"
        f" | amp {args.amp} | data {counts} | validation on {splits.title('val')} | out {out}")
    checkpoint_path = os.path.join(out, "checkpoint.pth")
    saved_epoch = start - 1  # the last epoch whose checkpoint.pth is on disk
    plotted_at = -math.inf

    # the validated network (the moving average with --ema) after that epoch
    def save_epoch_weights(name, row):
        models.save_weights(os.path.join(out, name), trainer.eval_net, args.model, meta={
            "epoch": row["epoch"], "val_loss": row["val_loss"], "val_acc": row["val_acc"],
            "config": vars(args), "data_id": data_id})

    def saved_so_far():  # what Ctrl-C or a failure leaves behind: only what is really on disk
        if saved_epoch < 1:
            return f"no epoch was finished, so nothing was saved in {out}"
        done = "epoch 1 is" if saved_epoch == 1 else f"epochs 1-{saved_epoch} are"
        return f"{done} saved in {out}. Resume with: python train.py --resume {checkpoint_path}"

    try:
        for epoch in range(start, args.epochs + 1):
            t0 = time.perf_counter()
            train_loss, train_acc = trainer.train_epoch(f"epoch {epoch}/{args.epochs}")
            if not math.isfinite(train_loss):  # all-reduced: every rank stops together
                sys.exit(f"train.py: the training loss became {train_loss} in epoch {epoch}; stopped, "
                         f"{saved_so_far()} (try a lower --lr, or --amp off)" if master else 1)
            val_loss, val_acc = validate(trainer.eval_net, trainer.val_x, trainer.val_y, device,
                                         trainer.autocast(), head=args.head, rank=rank, world=world)
            lr = trainer.opt.param_groups[0]["lr"]
            if args.schedule == "plateau":
                trainer.sched.step(train_loss if args.plateau_on == "train-loss" else val_loss)
            history.append({"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                            "val_loss": val_loss, "val_acc": val_acc, "lr": lr,
                            "seconds": time.perf_counter() - t0})
            improved = val_loss < best_val_loss
            best_val_loss = min(val_loss, best_val_loss)
            checkpoint = trainer.state(epoch, history, best_val_loss, data_id, val_id)  # every rank: it gathers
            if master:
                if improved or args.train_on_val:  # trained on val: nothing to select by, keep the last
                    save_epoch_weights("model.pth", history[-1])
                models.atomic_save(checkpoint, checkpoint_path)
                saved_epoch = epoch
                write_history(out, history)
                if time.perf_counter() - plotted_at > PLOT_EVERY_S:
                    plot_curves(out, history)
                    plotted_at = time.perf_counter()
            say(f"epoch {epoch:4d} | train loss {train_loss:.4f} acc {100 * train_acc:5.2f}% | val loss "
                f"{val_loss:.4f} acc {100 * val_acc:5.2f}% | lr {lr:.2e} | {history[-1]['seconds']:.1f}s",
                flush=True)
            best_epoch = min(history, key=lambda r: r["val_loss"])["epoch"]
            if args.early_stop and epoch - best_epoch >= args.early_stop:
                say(f"early stop: no better validation loss since epoch {best_epoch}")
                break
        if master:
            finish(out, history, splits, args, save_epoch_weights, device)
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM (cli.run turns it into this)
        sys.exit(f"\ninterrupted; {saved_so_far()}" if master else 130)
    except (RuntimeError, MemoryError) as e:
        if not cli.out_of_memory(e):
            raise
        where = "GPU" if isinstance(e, torch.cuda.OutOfMemoryError) else "CPU"
        sys.exit(f"train.py: out of {where} memory at --bs {args.bs}; try --bs {max(1, args.bs // 2)}; "
                 f"{saved_so_far()}" if master else 1)
    except cli.UserError as e:  # an output that could not be written (a full disk)
        raise type(e)(f"{e}; {saved_so_far()}") from None
    finally:
        if master and saved_epoch < 1 and os.path.exists(config_path):
            os.remove(config_path)  # nothing trained: the folder is not a run (main removes it if new)


def teacher_probabilities(path, splits, train_on_val):
    """The teacher's probabilities for the faces this run trains on (train, + val with --train-on-val), from a
    tools/teacher.py file, whose fingerprints must be those faces'."""
    blob = models.read_file(path)
    parts = ("train", "val") if train_on_val else ("train",)
    if not isinstance(blob, dict) or any(not isinstance(blob.get(s), dict) for s in parts):
        raise data.DataError(f"{path}: not a teacher file of tools/teacher.py")
    for s in parts:
        if blob[s].get("id") != data.fingerprint(*splits[s]):
            raise data.DataError(f"{path}: the teacher's probabilities are for other {s} faces than --data "
                                 f"gives; make them with tools/teacher.py --data on this data")
    return torch.cat([blob[s]["probs"] for s in parts])


def finish(out, history, splits, args, save_epoch_weights, device):
    """The end of a run: the curves, last.pth (the end of the schedule: with cosine often the better one) and
    the closing score of model.pth, computed as evaluate.py computes it (fp32), so both print one figure."""
    plot_curves(out, history)
    save_epoch_weights("last.pth", history[-1])
    best, _ = models.load_weights(os.path.join(out, "model.pth"), device)
    split, images, labels = data.choose_split(splits, None, args.data)
    acc = (models.predict_proba([best], images, device).argmax(1) == labels).float().mean().item()
    best_epoch = min(history, key=lambda r: r["val_loss"])["epoch"]
    kept = f"last epoch's weights (epoch {history[-1]['epoch']}, trained on val too)" \
        if args.train_on_val else f"best weights (epoch {best_epoch})"
    print(f"{kept}: {splits.title(split)} accuracy {100 * acc:.2f}% -> {os.path.join(out, 'model.pth')}; "
          f"last epoch's -> {os.path.join(out, 'last.pth')}")


# ------------------------------------------------------------------------------------------------------------

def distributed_setup(device):
    """Under torchrun (which sets RANK, LOCAL_RANK and WORLD_SIZE): join the process group, NCCL between GPUs,
    gloo between CPU processes. Returns (rank, world size); (0, 1) for a plain `python train.py`."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 1
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))  # one GPU per process
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if not args.resume:  # what made this run, word for word (a resumed run keeps its first command)
        args.command = "python train.py " + shlex.join(argv)
    device = models.pick_device(args.device)
    rank, world = distributed_setup(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    made_out, stamped = False, not args.out
    if rank == 0:
        if stamped:
            args.out = default_out()
        made_out = not os.path.exists(args.out)
        # before the data loads and the hours of training, not after
        files.check_writable(args.out, folder=True, inputs=[args.data])
        lock = claim(args.out)
    if world > 1 and stamped:  # rank 0 chose runs/<timestamp>; every rank must write that one into its state
        shared = [args.out]
        dist.broadcast_object_list(shared, 0)
        args.out = shared[0]
    try:
        run(args, device, rank, world)
    finally:
        if world > 1:
            dist.destroy_process_group()
        if rank == 0:
            release(lock)
            if made_out and not os.listdir(args.out):
                # a run that stopped before writing anything (bad data, Ctrl-C) leaves no
                # folder
                os.rmdir(args.out)


if __name__ == "__main__":
    cli.run(main, "train.py")
