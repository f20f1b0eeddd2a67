"""Train a FER2013 network with the report's recipe, in a hand-written loop.

    python train.py --epochs 350 --bs 256                  the report's run (data/fer2013.csv): 61.94% on PublicTest
    python train.py @recipes/vgg_nearest.txt               a shipped network's recipe (recipes/): 68.96%
    python train.py --data synthetic --epochs 10           a one-minute demo on synthetic faces
    python train.py --resume runs/<stamp>/checkpoint.pth   continue exactly where a run stopped
    torchrun --standalone --nproc_per_node 4 train.py ...   the same run on 4 GPUs (docs/distributed.md)

Every default is the report's recipe: the residual network of its Appendix 1 (model.py), Adam 1e-4,
ReduceLROnPlateau on the training loss, a WeightedRandomSampler over 1/class count, flips and RandomAffine,
cross-entropy, bf16 mixed precision where the hardware computes it natively. Why each choice, and where we
depart from the report: docs/differences.md.

Speed (after airbench): the whole training set lives on the device as one uint8 tensor, each epoch's order
comes from the WeightedRandomSampler in one draw, and each batch is gathered, flipped, affine-warped and
normalised by tensor ops on the device (augment.py). No DataLoader workers, no per-sample Python, no
host<->device copy or .item() inside the step: the loss and accuracy sums stay on the device and are read once
per epoch. tests/test_augment.py shows it trains what data.FERDataset + a DataLoader would; docs/performance.md
has the figures.

Reads top to bottom: the flags, the optimiser and schedule, the loss, the Trainer (its step is
`Trainer.train_step`), `validate`, then `run`: the epoch loop, validation, the schedule step and saving.
"""
import copy
import math
import os
import shlex
import sys
import time

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
import distributed
import files
import inference
import model
import run_folder
import train_flags

# ------------------------------------------------------------------------------------------------------------
# The flags: every default is the report's recipe; a file of flags is a recipe (`python train.py @FILE`).

def make_parser():
    p = cli.parser("train.py", __doc__, recipes=True)
    ranged = cli.checked
    p.add_argument("--data", default="data/fer2013.csv", help="a FER2013 CSV (.gz too), an image folder, or 'synthetic'")
    p.add_argument("--model", default="resnet", choices=list(model.MODELS), help="the network (model.py)")
    p.add_argument("--epochs", type=cli.positive_int, default=350, help="epochs in all (with --resume: up to this one)")
    p.add_argument("--bs", type=cli.positive_int, default=256, help="batch size (global under torchrun)")
    p.add_argument("--lr", type=cli.positive, default=1e-4, help="learning rate (cosine: its peak)")
    p.add_argument("--opt", choices=["adam", "adamw", "sgd"], default="adam", help="Adam, AdamW or SGD (Nesterov)")
    p.add_argument("--momentum", type=ranged(float, lambda v: 0 <= v < 1, "in [0, 1)"), default=0.9,
                   help="SGD's Nesterov momentum (0: plain SGD)")
    p.add_argument("--wd", type=cli.non_negative, default=0.0, help="weight decay")
    p.add_argument("--schedule", choices=["plateau", "cosine", "inverse-time"], default="plateau",
                   help="ReduceLROnPlateau per epoch; warm-up + cosine, or lr / (1 + decay x step), per step")
    p.add_argument("--warmup", type=ranged(float, lambda v: 0 <= v < math.inf, ">= 0"), default=0.0,
                   help="cosine warm-up, epochs")
    p.add_argument("--decay", type=cli.non_negative, default=0.0, help="inverse-time decay per step (Keras's)")
    p.add_argument("--plateau-factor", type=ranged(float, lambda v: 0 < v < 1, "in (0, 1)"), default=0.1,
                   help="ReduceLROnPlateau's factor")
    p.add_argument("--plateau-patience", type=ranged(int, lambda v: v >= 0, ">= 0"), default=10,
                   help="ReduceLROnPlateau's patience, epochs")
    p.add_argument("--plateau-on", choices=["train-loss", "val-loss"], default="train-loss",
                   help="the loss ReduceLROnPlateau watches")
    p.add_argument("--label-smoothing", type=ranged(float, lambda v: 0 <= v < 1, "in [0, 1)"), default=0.0,
                   help="cross-entropy label smoothing")
    p.add_argument("--double-softmax", action="store_true", help="the report's Softmax before the loss, as it ran")
    p.add_argument("--sampler", choices=["weighted", "shuffle"], default="weighted",
                   help="WeightedRandomSampler over 1/class count, or a permutation")
    p.add_argument("--class-weighted-loss", action="store_true", help="weight the loss by 1/class count instead")
    p.add_argument("--early-stop", type=ranged(int, lambda v: v >= 0, ">= 0 (0: never)"), default=0,
                   metavar="EPOCHS", help="stop after this many epochs without a better validation loss (0: never)")
    p.add_argument("--flip", type=cli.probability, default=0.5, help="horizontal flip probability")
    p.add_argument("--degrees", type=ranged(float, lambda v: 0 <= v <= 180, "in [0, 180]"), default=8.0,
                   help="random rotation, +- degrees")
    p.add_argument("--translate", type=ranged(float, lambda v: 0 <= v <= 0.5, "a fraction of the size in [0, 0.5]"),
                   default=0.2, help="random translation, a fraction of the size")
    p.add_argument("--scale", type=float, nargs=2, default=(0.8, 1.2), help="random zoom range")
    p.add_argument("--interpolation", choices=["nearest", "bilinear"], default="nearest",
                   help="how the affine warp resamples (RandomAffine's default: nearest)")
    p.add_argument("--erase", type=cli.probability, default=0.0, help="random-erasing probability")
    p.add_argument("--teacher", metavar="PROBS", help="distil these probabilities (tools/teacher.py) into the network")
    p.add_argument("--teacher-weight", type=ranged(float, lambda v: 0 <= v <= 1, "in [0, 1]"), default=0.5,
                   help="the teacher's share of the loss")
    p.add_argument("--ema", type=ranged(float, lambda v: 0 <= v < 1, "a decay in [0, 1) (0: off)"), default=0.0,
                   metavar="DECAY", help="validate and save a moving average of the weights (0: off)")
    p.add_argument("--train-on-val", action="store_true", help="train on the validation faces too (a final model)")
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto",
                   help="mixed precision; auto: bf16 where the device computes it natively, else fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (needs a C++ compiler)")
    cli.add_device_flag(p)
    p.add_argument("--seed", type=ranged(int, lambda v: 0 <= v < 2 ** 32, "in [0, 2^32)"), default=0,
                   help="initial weights, epoch order and augmentation draws")
    p.add_argument("--out", help="output folder (default runs/<timestamp>)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this checkpoint.pth")
    p.add_argument("--init", metavar="WEIGHTS", help="start from these weights (fine-tuning), not Kaiming init")
    return p


def parse_args(argv):
    """The flags (recipe files read in), with --resume's configuration under them, --device and --amp auto
    resolved once (config.json records what ran) and every contradiction refused in one line. Returns (args,
    the checkpoint to resume or None)."""
    p = make_parser()
    typed, argv = argv, cli.read_recipes(p, argv)
    args = p.parse_args(argv)
    args.given = sorted(cli.given_flags(argv))
    if args.init and args.resume:
        p.error("--init starts a new run from weights, --resume continues a run; use one of them")
    ckpt = train_flags.resumed(args, p, typed) if args.resume else None
    if ckpt is not None:
        args = ckpt.pop("args")
    else:  # what made this run, word for word (a resumed run keeps its first command)
        args.command = "python train.py " + shlex.join(typed)
    try:
        device = cli.pick_device(args.device)
    except cli.FlagError as e:
        p.error(str(e))
    args.device = device.type
    args.amp = cli.fast_amp(device) if args.amp == "auto" else args.amp
    train_flags.check(args, p, device)
    return args, ckpt


# ------------------------------------------------------------------------------------------------------------
# The optimiser, the learning-rate schedule, the moving average, mixed precision and the loss

def make_optimizer(args, params):
    if args.opt in ("adam", "adamw"):
        adam = torch.optim.Adam if args.opt == "adam" else torch.optim.AdamW
        return adam(params, lr=args.lr, weight_decay=args.wd)
    return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, nesterov=args.momentum > 0,
                           weight_decay=args.wd)  # momentum 0: plain SGD


def make_scheduler(args, opt, steps_per_epoch):
    """The report's ReduceLROnPlateau, or a per-step multiplier: warm-up + cosine, or Keras's inverse-time
    decay 1 / (1 + decay x step) (a schedule, not weight decay)."""
    if args.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=args.plateau_factor,
                                                          patience=args.plateau_patience)
    warmup, total = args.warmup * steps_per_epoch, args.epochs * steps_per_epoch

    def cosine(step):  # linear from ~0 to 1 over the warm-up, then half a cosine down to 0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    factor = cosine if args.schedule == "cosine" else (lambda step: 1 / (1 + args.decay * step))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class EMA:
    """average <- decay * average + (1 - decay) * net after every step, over the whole state_dict (weights and
    BatchNorm statistics, as timm's ModelEmaV2; integer buffers copied). The decay warms up as (1 + n) / (10 + n)
    (TensorFlow's): with a fixed decay from the first step, a short run's average is still partly its random
    start."""

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


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


def mixed_precision(amp, device):
    """The autocast of the forward pass (bf16, fp16, or None: fp32), and the GradScaler fp16 needs so that
    small gradients do not underflow (a no-op otherwise)."""
    dtype = AMP_DTYPES[amp]

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    return autocast, torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def cross_entropy(logits, y, double_softmax=False, **options):
    """The loss, in fp32. With double_softmax the report's Softmax comes first and CrossEntropyLoss applies a
    second (log-)softmax; kept to measure what the report's choice cost."""
    logits = logits.float()
    return F.cross_entropy(logits.softmax(1) if double_softmax else logits, y, **options)


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
            net.load_state_dict(checkpoint.load_weights(args.init, expect=args.model)[0].state_dict())
        self.net = net.to(device, memory_format=torch.channels_last)
        # What the step runs: the network, compiled and/or wrapped in DDP (gradients averaged in backward;
        # batch statistics per rank: PyTorch has no SyncBatchNorm on the CPU, docs/distributed.md).
        step_net = torch.compile(self.net) if args.compile else self.net
        self.step_net = DDP(step_net, device_ids=[device] if device.type == "cuda" else None) \
            if world > 1 else step_net
        # The data set, resident on the device: 28,709 x 48 x 48 uint8 = 66 MB.
        self.train_x, self.train_y = (t.to(device) for t in splits["train"])
        self.val_x, self.val_y = splits["val"]
        n = len(self.train_y)
        self.bs = min(args.bs, n - n % world)  # the global batch
        self.steps = n // self.bs  # full batches only: BatchNorm needs > 1 sample, and shapes stay static
        self.opt = make_optimizer(args, self.net.parameters())
        self.sched = make_scheduler(args, self.opt, self.steps)
        # the teacher's probabilities [N, 7] for the training faces, on the device beside them (or None)
        self.teacher = None if teacher is None else teacher.float().to(device)
        self.sampler_gen = torch.Generator().manual_seed(args.seed)  # the epoch order: alike on all ranks
        self.sample_weights = data.class_weights(self.train_y.cpu())
        # augmentation draws, on the device: each rank its own stream (rank 0's is the one-process stream)
        self.aug_gen = torch.Generator(device).manual_seed(args.seed + 1 + 1000003 * rank)
        counts = data.class_counts(self.train_y.cpu()).float()
        self.loss_weights = (len(counts) * (1 / counts) / (1 / counts).sum()).to(device) \
            if args.class_weighted_loss else None
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
        with self.autocast():
            logits = self.step_net(x)
            loss = self.loss(logits, y)
            if soft is not None:  # distillation: the teacher's probabilities as a second, soft target
                loss = (1 - a.teacher_weight) * loss + a.teacher_weight * self.loss(logits, soft)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        if a.schedule != "plateau":
            self.sched.step()  # the per-step schedules: host-side arithmetic only
        if self.ema is not None:
            self.ema.update()
        return loss.detach() * len(y), (logits.argmax(1) == y).sum()

    def train_epoch(self, desc):
        self.net.train()
        order = self.epoch_order()
        sums = torch.zeros(2, device=self.device)  # loss, correct
        for i in tqdm(range(self.steps), desc=desc, leave=False, dynamic_ncols=True, file=sys.stdout,
                      disable=None if self.rank == 0 else True):
            idx = distributed.rank_batch(order, i, self.bs, self.rank, self.world)
            soft = self.teacher[idx] if self.teacher is not None else None
            batch_loss, batch_correct = self.train_step(self.train_x[idx], self.train_y[idx], soft)
            sums[0] += batch_loss
            sums[1] += batch_correct
        if self.world > 1:
            dist.all_reduce(sums)
            for b in self.net.buffers():  # rank 0's BatchNorm statistics everywhere, as saved and validated
                dist.broadcast(b, 0)
        loss_sum, correct = sums.tolist()  # the epoch's one sync
        return loss_sum / (self.steps * self.bs), correct / (self.steps * self.bs)


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

PLOT_EVERY_S = 30  # curves.png is redrawn at most this often (a drawing takes seconds on a slow CPU) and at the end


def run(args, device, rank=0, world=1, ckpt=None):
    say = print if rank == 0 else (lambda *a, **k: None)
    splits, teacher = training_data(args, say)
    trainer = Trainer(args, splits, device, rank, world, teacher)
    data_id, val_id = data.fingerprint(*splits["train"]), data.fingerprint(*splits["val"])
    history, best_val_loss = checkpoint.restore(trainer, ckpt, args.resume, data_id, val_id) if ckpt else ([], math.inf)
    say(describe(args, trainer, splits, device, world, len(history)))
    progress = run_folder.Progress(args.out, len(history), rank == 0)
    plotted = -math.inf
    with progress.stops_in_one_line(args.bs):
        for epoch in range(len(history) + 1, args.epochs + 1):
            t0 = time.perf_counter()
            train_loss, train_acc = trainer.train_epoch(f"epoch {epoch}/{args.epochs}")
            if not math.isfinite(train_loss):  # all-reduced: every rank stops together
                raise run_folder.Diverged(f"the training loss became {train_loss} in epoch {epoch}")
            val_loss, val_acc = validate(trainer.eval_net, trainer.val_x, trainer.val_y, device, trainer.autocast(),
                                         double_softmax=args.double_softmax, rank=rank, world=world)
            lr = trainer.opt.param_groups[0]["lr"]
            if args.schedule == "plateau":  # the report's ReduceLROnPlateau, once an epoch
                trainer.sched.step(train_loss if args.plateau_on == "train-loss" else val_loss)
            history.append({"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                            "val_acc": val_acc, "lr": lr, "seconds": time.perf_counter() - t0})
            improved, best_val_loss = val_loss < best_val_loss, min(val_loss, best_val_loss)
            checkpoint.save(os.path.join(args.out, "checkpoint.pth"), trainer, epoch, history, best_val_loss,
                            data_id, val_id)
            if rank == 0:
                if improved or args.train_on_val:  # trained on val: nothing to select by, keep the last
                    save_weights(args, trainer, "model.pth", history[-1], data_id)
                progress.saved_epoch = epoch
                run_folder.write_history(args.out, history)
                if time.perf_counter() - plotted > PLOT_EVERY_S:
                    run_folder.plot_curves(args.out, history, args.train_on_val)
                    plotted = time.perf_counter()
            say(f"epoch {epoch:4d} | train loss {train_loss:.4f} acc {100 * train_acc:5.2f}% | val loss "
                f"{val_loss:.4f} acc {100 * val_acc:5.2f}% | lr {lr:.2e} | {history[-1]['seconds']:.1f}s", flush=True)
            if args.early_stop and epoch - best_epoch(history) >= args.early_stop:
                say(f"early stop: no better validation loss since epoch {best_epoch(history)}")
                break
        if rank == 0:
            finish(args, trainer, history, splits, data_id, device)


def training_data(args, say):
    """The splits (fixed whatever --seed, so evaluate.py sees the same) and the teacher's probabilities for the
    faces this run trains on (tools/teacher.py), or None."""
    splits = data.load_for_training(args.data)
    for note in splits.notes:
        say(f"note: {note}")
    parts = ("train", "val") if args.train_on_val else ("train",)
    teacher = inference.teacher_probabilities(args.teacher, splits, parts) if args.teacher else None
    if args.train_on_val:  # one training set of both; "val" stays what the figures are computed on
        splits["train"] = tuple(map(torch.cat, zip(splits["train"], splits["val"])))
        splits.names["val"] = splits.names.get("val", "val").replace("held out by train.py", "trained on too")
    return splits, teacher


def describe(args, trainer, splits, device, world, done):
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    ranks = f" x {world} processes, {args.bs // world} images each per step" if world > 1 else ""
    resuming = "" if not args.resume else f"resuming at epoch {done + 1} of {args.epochs} | " if done < args.epochs \
        else f"all {args.epochs} epochs are trained; finishing the run (last.pth, curves, the closing score) | "
    return (f"{resuming}{args.model}: {model.count_parameters(trainer.net):,} parameters | {device} ({where}){ranks}"
            f" | amp {args.amp} | data { {k: len(v[1]) for k, v in splits.items()} } | validation on "
            f"{splits.title('val')} | out {args.out}")


def save_weights(args, trainer, name, row, data_id):
    """The validated network (the moving average with --ema) as a weights file, with what its readers need."""
    checkpoint.save_weights(os.path.join(args.out, name), trainer.eval_net, args.model, {
        "recipe": args.command, "interpolation": args.interpolation, "train_on_val": args.train_on_val,
        "data": args.data, "data_id": data_id, "epoch": row["epoch"], "val_loss": row["val_loss"],
        "val_acc": row["val_acc"]})


def best_epoch(history):
    """The epoch with the lowest validation loss: the one model.pth holds."""
    return min(history, key=lambda r: r["val_loss"])["epoch"]


def finish(args, trainer, history, splits, data_id, device):
    """The end of a run: the curves, last.pth (the end of the schedule: with cosine often the better one) and
    the closing score of model.pth, computed as evaluate.py computes it (fp32), so both print one figure."""
    run_folder.plot_curves(args.out, history, args.train_on_val)
    save_weights(args, trainer, "last.pth", history[-1], data_id)
    best, _ = checkpoint.load_weights(os.path.join(args.out, "model.pth"), device)
    split, images, labels = data.choose_split(splits, None, args.data)
    acc = (inference.predict_proba([best], images, device).argmax(1) == labels).float().mean().item()
    kept = f"last epoch's weights (epoch {history[-1]['epoch']}, trained on val too)" \
        if args.train_on_val else f"best weights (epoch {best_epoch(history)})"
    print(f"{kept}: {splits.title(split)} accuracy {100 * acc:.2f}% -> {os.path.join(args.out, 'model.pth')}; "
          f"last epoch's -> {os.path.join(args.out, 'last.pth')}")


def main(argv=None):
    args, ckpt = parse_args(sys.argv[1:] if argv is None else argv)
    rank, world, device = distributed.setup(torch.device(args.device))
    made_out, stamped = False, not args.out
    if rank == 0:
        args.out = args.out or run_folder.default_out()
        made_out = not os.path.exists(args.out)
        files.check_writable(args.out, folder=True, inputs=[args.data])  # before the hours of training
        lock = run_folder.claim(args.out)
        files.write_json(os.path.join(args.out, "config.json"), vars(args))
    if world > 1 and stamped:  # rank 0 chose runs/<timestamp>; every rank must write that one into its state
        shared = [args.out]
        dist.broadcast_object_list(shared, 0)
        args.out = shared[0]
    ended_well = False
    try:
        run(args, device, rank, world, ckpt)
        ended_well = True
    finally:
        distributed.finish(world, ended_well)
        if rank == 0:
            run_folder.release(lock)
            if not os.path.exists(os.path.join(args.out, "checkpoint.pth")):  # nothing trained: not a run
                os.remove(os.path.join(args.out, "config.json"))
                if made_out and not os.listdir(args.out):
                    os.rmdir(args.out)


if __name__ == "__main__":
    cli.run(main, "train.py")
