"""Train a FER2013 network with the report's recipe, in a hand-written loop.

    python train.py --epochs 350 --bs 256                       the report's run (data/fer2013.csv)
    python train.py --data synthetic --epochs 10                a one-minute demo on synthetic faces
    python train.py --resume runs/<stamp>/checkpoint.pth        continue exactly where a run stopped
    python train.py --init weights/resnet.pth --data faces/     fine-tune weights on other data
    torchrun --standalone --nproc_per_node 4 train.py ...        the same run on 4 GPUs (DDP)

Speed (after airbench): the whole training set lives on the device as one uint8 tensor, each epoch's order
comes from a WeightedRandomSampler in one draw, and each batch is gathered, flipped, affine-warped and
normalised by tensor ops on the device. No DataLoader workers, no per-sample Python, no host<->device copy or
.item() inside the step: loss and accuracy sums stay on the device and are read once per epoch. (The usual
Dataset + DataLoader way to feed the same faces is data.FERDataset, with an example there.)

Reads top to bottom: the flags (the report's recipe as defaults), the optimiser and schedules, mixed
precision and the loss, the Trainer (the step is `Trainer.train_step`), validation, then `run` (one
training run) and `main`. Resume, the folder lock, random streams and flag checks live in checkpoint.py.
"""
import copy
import gc
import math
import os
import shlex
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import WeightedRandomSampler
from tqdm import tqdm

import augment
import checkpoint
import cli
import data
import files
import inference
import model

# ------------------------------------------------------------------------------------------------------------
# The flags. Every default is the report's recipe (its Softmax before the loss aside: --double-softmax); the
# stronger recipes switch options on (README, docs/results.md).

def make_parser():
    p = cli.parser("train.py", __doc__)
    p.add_argument("--data", default="data/fer2013.csv", help="fer2013.csv / train.csv / icml_face_data.csv "
                   "(.gz too), an image folder, or 'synthetic'")
    p.add_argument("--model", default="resnet", choices=list(model.MODELS), help="the network (model.py)")
    p.add_argument("--epochs", type=cli.positive_int, default=350,
                   help="epochs in all (with --resume: up to this epoch)")
    p.add_argument("--bs", type=cli.positive_int, default=256, help="batch size (the global batch under "
                   "torchrun)")
    p.add_argument("--lr", type=cli.positive, default=1e-4, help="learning rate (peak learning rate for "
                   "cosine)")
    p.add_argument("--opt", choices=["adam", "adamw", "sgd"], default="adam", help="Adam (the report), AdamW "
                   "(decoupled weight decay) or SGD with Nesterov momentum (Khaireddin & Chen 2021)")
    p.add_argument("--momentum", type=cli.checked(float, lambda v: 0 <= v < 1, "in [0, 1) (0: plain SGD)"),
                   default=0.9, help="SGD's Nesterov momentum (0: plain SGD)")
    p.add_argument("--wd", type=cli.non_negative, default=0.0, help="weight decay")
    p.add_argument("--schedule", choices=["plateau", "cosine", "inverse-time"], default="plateau",
                   help="plateau: ReduceLROnPlateau, once an epoch (the report); cosine: linear warm-up, "
                   "then cosine decay to 0 over --epochs, every batch; inverse-time: lr / (1 + --decay x "
                   "step), every batch (Keras's legacy `decay`; --decay 0 keeps the lr constant)")
    p.add_argument("--warmup", type=cli.checked(float, lambda v: 0 <= v < math.inf, ">= 0 (epochs)"),
                   default=0.0, help="cosine warm-up, epochs")
    p.add_argument("--decay", type=cli.non_negative, default=0.0, help="inverse-time decay per step")
    p.add_argument("--plateau-factor", type=cli.checked(float, lambda v: 0 < v < 1, "in (0, 1)"), default=0.1,
                   help="ReduceLROnPlateau factor (PyTorch's)")
    p.add_argument("--plateau-patience", type=cli.checked(int, lambda v: v >= 0, ">= 0"), default=10,
                   help="ReduceLROnPlateau patience, epochs")
    p.add_argument("--plateau-on", choices=["train-loss", "val-loss"], default="train-loss",
                   help="the loss ReduceLROnPlateau watches: the epoch's training loss (the report's: its "
                   "learning-rate curve, Figure 8, holds 1e-4 to about epoch 200 only so) or the validation "
                   "loss (docs/differences.md)")
    p.add_argument("--label-smoothing", type=cli.checked(float, lambda v: 0 <= v < 1, "in [0, 1)"), default=0.0,
                   help="cross-entropy label smoothing")
    p.add_argument("--double-softmax", action="store_true", help="the report's network as it was: a Softmax "
                   "before the cross-entropy, which applies a second one (it squashes the gradients; for "
                   "comparison), and the output layer started Kaiming-normal like the others")
    p.add_argument("--sampler", choices=["weighted", "shuffle"], default="weighted",
                   help="weighted: WeightedRandomSampler over 1/class count (the report); shuffle: a "
                   "permutation")
    p.add_argument("--class-weighted-loss", action="store_true", help="weight the loss by 1/class frequency "
                   "instead of resampling; use with --sampler shuffle")
    p.add_argument("--early-stop", type=cli.checked(int, lambda v: v >= 0, ">= 0 (0: never)"), default=0,
                   metavar="EPOCHS", help="stop when the validation loss has not improved for this many "
                   "epochs (0: never)")
    p.add_argument("--flip", type=cli.probability, default=0.5, help="horizontal flip probability")
    p.add_argument("--degrees", type=cli.checked(float, lambda v: 0 <= v <= 180, "in [0, 180]"), default=8.0,
                   help="random rotation, +- degrees")
    p.add_argument("--translate", type=cli.checked(float, lambda v: 0 <= v <= 0.5, "a fraction of the size in "
                   "[0, 0.5] (more moves the face out of the picture)"), default=0.2,
                   help="random translation, fraction of the size")
    p.add_argument("--scale", type=float, nargs=2, default=(0.8, 1.2), help="random zoom range")
    p.add_argument("--interpolation", choices=["nearest", "bilinear"], default="nearest",
                   help="how the affine warp resamples: nearest (torchvision RandomAffine's default, which the "
                   "report ran: training faces stay as sharp as the test faces) or bilinear (a slight blur; the "
                   "default before 2026-12-04: docs/differences.md)")
    p.add_argument("--erase", type=cli.probability, default=0.0, help="random-erasing probability (the "
                   "report: off)")
    mix_alpha = cli.checked(float, lambda v: 0 <= v < math.inf, ">= 0 (0: off)")
    p.add_argument("--mixup", type=mix_alpha, default=0.0, metavar="ALPHA", help="mixup with Beta(ALPHA, "
                   "ALPHA) weights (Zhang et al. 2018; 0: off)")
    p.add_argument("--cutmix", type=mix_alpha, default=0.0, metavar="ALPHA", help="CutMix with Beta(ALPHA, "
                   "ALPHA) areas (Yun et al. 2019; 0: off); with --mixup too, each batch uses one of them at "
                   "random")
    p.add_argument("--teacher", metavar="PROBS", help="distil a teacher into this network: the class "
                   "probabilities tools/teacher.py computed for these training faces (say, the shipped "
                   "ensemble with TTA)")
    p.add_argument("--teacher-weight", type=cli.checked(float, lambda v: 0 <= v <= 1, "in [0, 1]"), default=0.5,
                   help="the teacher's share of the loss: (1 - w) x cross-entropy with the labels + w x "
                   "cross-entropy with the teacher's probabilities")
    p.add_argument("--ema", type=cli.checked(float, lambda v: 0 <= v < 1, "a decay in [0, 1) (0: off)"),
                   default=0.0, metavar="DECAY", help="validate and save an exponential moving average of the "
                   "weights, updated every step with this decay, e.g. 0.999 (0: off)")
    p.add_argument("--train-on-val", action="store_true", help="train on train + validation for a final "
                   "model; model.pth is then the last epoch's (the validation figures are no longer held "
                   "out)")
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto",
                   help="mixed precision: bf16 autocast (CPU and CUDA), fp16 + GradScaler (CUDA), off (fp32), "
                   "or auto: bf16 where the GPU or CPU computes it natively, else fp32 (a CPU without "
                   "AVX512-BF16 or AMX emulates bf16, slower than fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (needs a C++ compiler; "
                   "docs/performance.md says where it pays)")
    cli.add_device_flag(p)
    p.add_argument("--seed", type=cli.checked(int, lambda v: 0 <= v < 2 ** 32, "in [0, 2^32)"), default=0,
                   help="initial weights, epoch order and augmentation draws")
    p.add_argument("--out", help="output folder (default runs/<timestamp>)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this checkpoint.pth")
    p.add_argument("--init", metavar="WEIGHTS", help="start from these weights (a model.pth, weights/*.pth) "
                   "instead of Kaiming init: fine-tuning, with a fresh optimiser and schedule")
    return p


def parse_args(argv):
    """The flags, with --resume's checkpoint configuration under them, --amp auto resolved (config.json
    records the precision that ran) and every contradiction refused in one line (checkpoint.check_flags)."""
    p = make_parser()
    args = p.parse_args(argv)
    args.given = sorted(cli.given_flags(argv))
    if args.init and args.resume:
        p.error("--init starts a new run from weights, --resume continues a run from its checkpoint; "
                "use one of them")
    if args.resume:
        args = checkpoint.resumed_args(args, p, argv)
    else:  # what made this run, word for word (a resumed run keeps its first command)
        args.command = "python train.py " + shlex.join(argv)
    try:
        device = cli.pick_device(args.device)
    except cli.FlagError as e:
        p.error(str(e))
    if args.amp == "auto":
        args.amp = cli.fast_amp(device)
    checkpoint.check_flags(args, p, device)
    return args


# ------------------------------------------------------------------------------------------------------------
# The optimiser and the learning-rate schedules

def make_optimizer(args, params):
    if args.opt in ("adam", "adamw"):
        adam = torch.optim.Adam if args.opt == "adam" else torch.optim.AdamW
        return adam(params, lr=args.lr, weight_decay=args.wd)
    return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, nesterov=args.momentum > 0,
                           weight_decay=args.wd)  # momentum 0: plain SGD


def make_scheduler(args, opt, steps_per_epoch):
    """The report's ReduceLROnPlateau, or a per-batch multiplier: warm-up + cosine, or Keras's inverse-time
    decay 1 / (1 + decay x step) (a schedule, not weight decay)."""
    if args.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=args.plateau_factor,
                                                          patience=args.plateau_patience)
    if args.schedule == "cosine":
        warmup, total = args.warmup * steps_per_epoch, args.epochs * steps_per_epoch

        def factor(step):  # linear from ~0 to 1 over the warm-up, then half a cosine down to 0
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    else:
        def factor(step):
            return 1 / (1 + args.decay * step)
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class EMA:
    """Updates `average` <- decay * average + (1 - decay) * net after every step, over the whole state_dict:
    weights and BatchNorm statistics alike (as timm's ModelEmaV2); integer buffers (BatchNorm's batch count)
    are copied. The decay warms up as (1 + n) / (10 + n) after n updates (TensorFlow's
    ExponentialMovingAverage): with a fixed decay from the first step, a short run's average is still partly
    the random initial weights."""

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


# ------------------------------------------------------------------------------------------------------------
# Mixed precision and the loss

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


def mixed_precision(amp, device):
    """The one place precision is decided: an autocast for the forward pass (bf16 or fp16; None: fp32), and
    the GradScaler fp16 needs so that small gradients do not underflow (a no-op otherwise)."""
    dtype = AMP_DTYPES[cli.fast_amp(device) if amp == "auto" else amp]

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    return autocast, torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def cross_entropy(logits, y, double_softmax=False, **options):
    """The loss, in fp32. With double_softmax the report's Softmax comes first and CrossEntropyLoss applies a
    second (log-)softmax; kept to measure what the report's choice cost."""
    logits = logits.float()
    return F.cross_entropy(logits.softmax(1) if double_softmax else logits, y, **options)


def rank_batch(order, step, bs, rank, world):
    """This rank's share of global batch `step`: the one-process batch order[step * bs:(step + 1) * bs], cut
    into `world` consecutive pieces. Every rank draws the same order, so together they see what one process
    sees."""
    local = bs // world
    start = step * bs + rank * local
    return order[start:start + local]


# ------------------------------------------------------------------------------------------------------------
# The Trainer: the network, optimiser, schedule and the device-resident data of one run

class Trainer:
    def __init__(self, args, splits, device, rank=0, world=1, teacher=None):
        self.args, self.device, self.rank, self.world = args, device, rank, world
        self.autocast, self.scaler = mixed_precision(args.amp, device)
        torch.manual_seed(args.seed)  # the same on every rank: one initial network
        net = model.build(args.model)
        if args.double_softmax:  # the report's network as it was: its output layer Kaiming-normal too
            model.kaiming_output_layer(net)
        if args.init and not args.resume:  # a resumed run's own weights replace these anyway
            net.load_state_dict(inference.load_weights(args.init, expect=args.model)[0].state_dict())
        self.net = net.to(device, memory_format=torch.channels_last)
        # What the step runs: the network, compiled and/or wrapped in DDP. Gradients are averaged over the
        # ranks in backward, and train_epoch broadcasts rank 0's BatchNorm buffers. Batch statistics stay per
        # rank, no SyncBatchNorm: PyTorch refuses it on CPU, and at 128 images per rank BatchNorm is far
        # from its small-batch trouble (docs/distributed.md).
        step_net = torch.compile(self.net) if args.compile else self.net
        self.step_net = DDP(step_net, device_ids=[device] if device.type == "cuda" else None) \
            if world > 1 else step_net
        self.opt = make_optimizer(args, self.net.parameters())
        n_train = len(splits["train"][1])
        self.sched = make_scheduler(args, self.opt, max(1, n_train // min(args.bs, n_train)))
        # The data set, resident on the device: 28,709 x 48 x 48 uint8 = 66 MB.
        self.train_x, self.train_y = (t.to(device) for t in splits["train"])
        self.val_x, self.val_y = splits["val"]
        # the teacher's probabilities [N, 7] for the training faces, on the device beside them (or None)
        self.teacher = None if teacher is None else teacher.float().to(device)
        # epoch order: one draw an epoch, alike on all ranks
        self.sampler_gen = torch.Generator().manual_seed(args.seed)
        self.sample_weights = data.class_weights(splits["train"][1])
        # augmentation draws, on the device: each rank its own stream (rank 0's is the one-process stream)
        self.aug_gen = torch.Generator(device).manual_seed(args.seed + 1 + 1000003 * rank)
        self.mix_rng = np.random.RandomState(args.seed)  # mixup/CutMix draws: on the host, so nothing to sync
        counts = data.class_counts(splits["train"][1]).float()
        self.loss_weights = (len(counts) * (1 / counts) / (1 / counts).sum()).to(device) \
            if args.class_weighted_loss else None
        # --ema: the moving-average network (validated and saved) and its updater
        self.ema_net = copy.deepcopy(self.net).requires_grad_(False) if args.ema else None
        self.ema = EMA(self.ema_net, self.net, args.ema) if args.ema else None

    @property
    def eval_net(self):
        """The network that is validated and saved: the moving average when --ema is on."""
        return self.ema_net if self.ema_net is not None else self.net

    def epoch_order(self):
        """One epoch's indices, copied to the device once: the report's WeightedRandomSampler (with
        replacement, as many draws as faces), or a permutation."""
        n = len(self.train_y)
        if self.args.sampler == "weighted":
            sampler = WeightedRandomSampler(self.sample_weights, n, replacement=True, generator=self.sampler_gen)
            order = torch.tensor(list(sampler))
        else:
            order = torch.randperm(n, generator=self.sampler_gen)
        return order.to(self.device, non_blocking=True)

    def loss(self, logits, y):
        return cross_entropy(logits, y, self.args.double_softmax, weight=self.loss_weights,
                             label_smoothing=self.args.label_smoothing)

    def train_step(self, x_uint8, y, soft=None):
        """One optimiser step on a uint8 batch [B, 48, 48] already on the device. Returns the summed loss and
        correct count as device tensors (no sync)."""
        a = self.args
        x = augment.augment(x_uint8[:, None].float().div_(255), self.aug_gen, a.flip, a.degrees, a.translate,
                            a.scale, a.erase, a.interpolation)
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
        self.schedule_step()
        if self.ema is not None:
            self.ema.update()
        return loss.detach() * len(y), (logits.argmax(1) == y).sum()

    def schedule_step(self, epoch_losses=None):
        """The one place the learning rate moves: the per-batch schedules after every step (called without
        losses), ReduceLROnPlateau once an epoch on the loss it watches (called with the epoch's losses)."""
        if self.args.schedule != "plateau" and epoch_losses is None:
            self.sched.step()  # host-side arithmetic only
        elif self.args.schedule == "plateau" and epoch_losses is not None:
            self.sched.step(epoch_losses[self.args.plateau_on])

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


def validate(net, images, labels, device, autocast, batch_size=1024, double_softmax=False, rank=0, world=1):
    """Mean cross-entropy and accuracy over a split, batched on the device; one sync at the end. Under
    torchrun each rank scores its slice and the sums are added up."""
    net.eval()
    lo, hi = rank * len(labels) // world, (rank + 1) * len(labels) // world
    sums = torch.zeros(2, device=device)  # loss, correct
    with torch.no_grad(), autocast:
        for i, x in enumerate(data.batches(images[lo:hi], batch_size, device)):
            y = labels[lo + i * batch_size:min(hi, lo + (i + 1) * batch_size)].to(device, non_blocking=True)
            logits = net(x).float()
            sums[0] += cross_entropy(logits, y, double_softmax, reduction="sum")
            sums[1] += (logits.argmax(1) == y).sum()
    if world > 1:
        dist.all_reduce(sums)
    loss_sum, correct = sums.tolist()
    return loss_sum / len(labels), correct / len(labels)


# ------------------------------------------------------------------------------------------------------------
# One training run

# curves.png is redrawn at most this often (and at the end): a drawing takes seconds on a slow CPU, longer than
# a GPU epoch; history.csv is written every epoch.
PLOT_EVERY_S = 30


def run(args, device, rank, world):
    master = rank == 0  # the one process that prints and writes files
    say = print if master else (lambda *a, **k: None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed 48x48 shapes: pick the fastest kernels once
    out = args.out
    # the split is fixed (seed 0) whatever --seed, so evaluate.py sees the same
    splits = data.load_for_training(args.data)
    for note in splits.notes:
        say(f"note: {note}")
    # the teacher's probabilities for the faces this run trains on (tools/teacher.py), or None
    teacher = inference.teacher_probabilities(args.teacher, splits, ("train", "val") if args.train_on_val
                                              else ("train",)) if args.teacher else None
    if args.train_on_val:  # one training set of both; "val" stays what the figures are computed on
        splits["train"] = tuple(map(torch.cat, zip(splits["train"], splits["val"])))
    data_id, val_id = data.fingerprint(*splits["train"]), data.fingerprint(*splits["val"])
    if (args.schedule == "plateau" and args.plateau_on == "val-loss" and 0 < args.early_stop <= args.plateau_patience
            and not args.resume):
        # both watch the validation loss: ReduceLROnPlateau cuts after patience + 1 epochs without a better
        # one, and the early stop comes first
        say(f"note: --early-stop {args.early_stop} ends the run before --plateau-patience "
            f"{args.plateau_patience} can lower the learning rate (a patience under the early stop lets it act)")
    trainer = Trainer(args, splits, device, rank, world, teacher)
    history, best_val_loss, start = [], math.inf, 1
    if args.resume:
        ckpt = checkpoint.read(args.resume)
        checkpoint.check_same_data(ckpt, args.resume, data_id, val_id, args.data)
        checkpoint.restore(trainer, ckpt, args.resume)
        history, best_val_loss, start = ckpt["history"], ckpt["best_val_loss"], ckpt["epoch"] + 1
        say(f"resuming at epoch {start} of {args.epochs}" if start <= args.epochs else
            f"all {args.epochs} epochs are trained; finishing the run (last.pth, curves, the closing score)")
    config_path = os.path.join(out, "config.json")
    if master:
        files.write_json(config_path, vars(args))
    counts = {k: len(v[1]) for k, v in splits.items()}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    say(f"{args.model}: {model.count_parameters(trainer.net):,} parameters | {device} ({where})"
        f"{f' x {world} processes, {args.bs // world} images each per step' if world > 1 else ''}"
        f" | amp {args.amp} | data {counts} | validation on {splits.title('val')} | out {out}")
    checkpoint_path = os.path.join(out, "checkpoint.pth")
    saved_epoch = start - 1  # the last epoch whose checkpoint.pth is on disk
    plotted_at = -math.inf

    def save_epoch_weights(name, row):  # the validated network (the moving average with --ema)
        inference.save_weights(os.path.join(out, name), trainer.eval_net, args.model, meta={
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
                                         trainer.autocast(), double_softmax=args.double_softmax, rank=rank,
                                         world=world)
            lr = trainer.opt.param_groups[0]["lr"]
            trainer.schedule_step({"train-loss": train_loss, "val-loss": val_loss})
            history.append({"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                            "val_loss": val_loss, "val_acc": val_acc, "lr": lr,
                            "seconds": time.perf_counter() - t0})
            improved = val_loss < best_val_loss
            best_val_loss = min(val_loss, best_val_loss)
            state = checkpoint.state(trainer, epoch, history, best_val_loss, data_id, val_id)  # all ranks
            if master:
                if improved or args.train_on_val:  # trained on val: nothing to select by, keep the last
                    save_epoch_weights("model.pth", history[-1])
                inference.atomic_save(state, checkpoint_path)
                saved_epoch = epoch
                checkpoint.write_history(out, history)
                if time.perf_counter() - plotted_at > PLOT_EVERY_S:
                    checkpoint.plot_curves(out, history, args.train_on_val)
                    plotted_at = time.perf_counter()
            say(f"epoch {epoch:4d} | train loss {train_loss:.4f} acc {100 * train_acc:5.2f}% | val loss "
                f"{val_loss:.4f} acc {100 * val_acc:5.2f}% | lr {lr:.2e} | {history[-1]['seconds']:.1f}s",
                flush=True)
            best = best_epoch(history)
            if args.early_stop and epoch - best >= args.early_stop:
                say(f"early stop: no better validation loss since epoch {best}")
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


def best_epoch(history):
    """The epoch with the lowest validation loss: the one model.pth holds."""
    return min(history, key=lambda r: r["val_loss"])["epoch"]


def finish(out, history, splits, args, save_epoch_weights, device):
    """The end of a run: the curves, last.pth (the end of the schedule: with cosine often the better one) and
    the closing score of model.pth, computed as evaluate.py computes it (fp32), so both print one figure."""
    checkpoint.plot_curves(out, history, args.train_on_val)
    save_epoch_weights("last.pth", history[-1])
    best, _ = inference.load_weights(os.path.join(out, "model.pth"), device)
    split, images, labels = data.choose_split(splits, None, args.data)
    acc = (inference.predict_proba([best], images, device).argmax(1) == labels).float().mean().item()
    kept = f"last epoch's weights (epoch {history[-1]['epoch']}, trained on val too)" \
        if args.train_on_val else f"best weights (epoch {best_epoch(history)})"
    print(f"{kept}: {splits.title(split)} accuracy {100 * acc:.2f}% -> {os.path.join(out, 'model.pth')}; "
          f"last epoch's -> {os.path.join(out, 'last.pth')}")


# ------------------------------------------------------------------------------------------------------------

def distributed_setup(device):
    """Under torchrun (which sets RANK, LOCAL_RANK and WORLD_SIZE): join the process group, NCCL between GPUs
    (one GPU per process), gloo between CPU processes. Returns (rank, world size, this process's device);
    (0, 1, device) for a plain `python train.py`."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rank, world, device = distributed_setup(cli.pick_device(args.device))
    made_out, stamped = False, not args.out
    if rank == 0:
        if stamped:
            args.out = checkpoint.default_out()
        made_out = not os.path.exists(args.out)
        # before the data loads and the hours of training, not after
        files.check_writable(args.out, folder=True, inputs=[args.data])
        lock = checkpoint.claim(args.out)
    if world > 1 and stamped:  # rank 0 chose runs/<timestamp>; every rank must write that one into its state
        shared = [args.out]
        dist.broadcast_object_list(shared, 0)
        args.out = shared[0]
    try:
        run(args, device, rank, world)
        if world > 1:
            # Rank 0 still scores model.pth in finish(); the others wait for it here, so no rank tears gloo's
            # threads down while a peer is still connected (seen in CI: a rank aborting on exit, SIGABRT).
            dist.barrier()
            # On rank 0 the DDP wrapper outlives run() in a reference cycle (measured: only gc.collect() frees
            # it); collected now, the process group it holds is not left to be destroyed while Python shuts down.
            gc.collect()
    finally:
        if world > 1:
            dist.destroy_process_group()
        if rank == 0:
            checkpoint.release(lock)
            if made_out and not os.listdir(args.out):  # stopped before writing anything: no folder left
                os.rmdir(args.out)


if __name__ == "__main__":
    cli.run(main, "train.py")
