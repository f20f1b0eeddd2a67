"""Train a FER2013 network with the report's recipe, in a hand-written loop.

    python train.py --epochs 350 --bs 256                  the report's run (data/fer2013.csv): 61.94% on PublicTest
    python train.py @recipes/vgg_nearest.txt               a shipped network's recipe (recipes/): 68.96%
    python train.py --resume runs/<stamp>/checkpoint.pth   go on exactly where a run stopped
    python tools/curves.py runs/<stamp>                    its curves, the report's Figure 8

Every default is the report's recipe: its residual network (model.py), Adam 1e-4, ReduceLROnPlateau on the
training loss, a WeightedRandomSampler over 1/class count, flips and RandomAffine, cross-entropy, bf16 where the
hardware computes it natively (docs/differences.md: where and why we depart from it). Speed, after airbench: the
training set lives on the device as one uint8 tensor, each batch is gathered, augmented (augment.py) and
normalised there: no DataLoader, no per-sample Python, no host<->device copy or .item() in the step
(tests/test_train.py shows one step is the report's per-sample DataLoader step).
"""
import argparse
import copy
import importlib
import math
import os
import shlex
import sys
import time

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import WeightedRandomSampler
from tqdm import tqdm

import augment
import cli
import data
import model
import weights

fcntl = None if os.name == "nt" else importlib.import_module("fcntl")  # the run folder's lock; Windows has none


def make_parser():
    p = cli.parser("train.py", __doc__, usage="train.py [@RECIPE ...] [flags]   (a recipe is a file of flags: recipes/)")
    p.add_argument("--data", default="data/fer2013.csv", help="a FER2013 CSV (.gz too) or an image folder")
    p.add_argument("--model", default="resnet", choices=list(weights.NETWORKS), help="model.py's or peers.py's")
    p.add_argument("--epochs", type=cli.positive_int, default=350, help="epochs in all")
    p.add_argument("--bs", type=cli.positive_int, default=256, help="batch size")
    p.add_argument("--lr", type=cli.positive, default=1e-4, help="learning rate (cosine: its peak)")
    p.add_argument("--opt", choices=["adam", "adamw", "sgd"], default="adam", help="Adam, AdamW or Nesterov SGD")
    p.add_argument("--momentum", type=cli.fraction, default=0.9, help="SGD's momentum (0: plain SGD)")
    p.add_argument("--wd", type=cli.non_negative, default=0.0, help="weight decay")
    p.add_argument("--schedule", choices=["plateau", "cosine", "inverse-time"], default="plateau", help="lr schedule")
    p.add_argument("--warmup", type=cli.non_negative, default=0.0, help="cosine warm-up, epochs")
    p.add_argument("--decay", type=cli.non_negative, default=0.0, help="inverse-time: lr / (1 + decay x step)")
    p.add_argument("--plateau-patience", type=cli.non_negative_int, default=10, help="ReduceLROnPlateau's patience")
    p.add_argument("--plateau-on", choices=["train-loss", "val-loss"], default="train-loss", help="what it watches")
    p.add_argument("--label-smoothing", type=cli.fraction, default=0.0, help="cross-entropy label smoothing")
    p.add_argument("--double-softmax", action="store_true", help="the report's Softmax before the loss, as it ran")
    p.add_argument("--sampler", choices=["weighted", "shuffle"], default="weighted", help="1/class count, or not")
    p.add_argument("--early-stop", type=cli.non_negative_int, default=0, help="epochs without a better val loss")
    p.add_argument("--flip", type=cli.probability, default=0.5, help="horizontal flip probability")
    p.add_argument("--degrees", type=cli.non_negative, default=8.0, help="random rotation, +- degrees")
    p.add_argument("--translate", type=cli.non_negative, default=0.2, help="random shift, a fraction of the size")
    p.add_argument("--scale", type=cli.positive, nargs=2, default=(0.8, 1.2), help="random zoom range")
    p.add_argument("--interpolation", choices=["nearest", "bilinear"], default="nearest", help="the warp's")
    p.add_argument("--erase", type=cli.probability, default=0.0, help="random-erasing probability")
    p.add_argument("--ema", type=cli.fraction, default=0.0, help="keep a moving average of the weights (decay)")
    p.add_argument("--train-on-val", action="store_true", help="train on the validation faces too")
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto", help="auto: bf16 if native")
    cli.add_device_flag(p)
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="initial weights, order, augmentation")
    p.add_argument("--out", help="output folder (default runs/<timestamp>)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this checkpoint.pth")
    p.add_argument("--init", metavar="WEIGHTS", help="start from these weights (fine-tuning)")
    return p


NEEDS = {"warmup": ("schedule", "cosine"), "decay": ("schedule", "inverse-time"), "momentum": ("opt", "sgd"),
         "plateau_patience": ("schedule", "plateau"), "plateau_on": ("schedule", "plateau")}  # else ignored


def parse_args(argv):
    """(args, the checkpoint to resume or None): each @RECIPE replaced by its flags (later flags win), with
    --resume the run's own flags, every contradiction refused in one line."""
    p, flags, ckpt = make_parser(), [], None
    for a in argv:
        try:
            flags += shlex.split(open(a[1:]).read(), comments=True) if a.startswith("@") else [a]
        except (OSError, UnicodeDecodeError, ValueError) as e:
            p.error(f"{a}: cannot read this recipe file ({getattr(e, 'strerror', None) or e})")
    args = p.parse_args(flags)
    given = {a[2:].split("=")[0].replace("-", "_") for a in flags if a.startswith("--")}
    args.command = "python train.py " + shlex.join(argv)  # what made this run, word for word
    if args.resume:  # the run goes on as it began: its flags, its folder
        if given - {"resume", "epochs", "data", "device", "amp"}:
            p.error("--resume: only --epochs, --data, --device and --amp change a resumed run; start a new one from "
                    "its weights with --init to change more")
        folder = args.resume if os.path.isdir(args.resume) else os.path.dirname(os.path.abspath(args.resume))
        ckpt = weights.read_file(os.path.join(folder, "checkpoint.pth") if os.path.isdir(args.resume) else args.resume)
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt.get("epoch"), int):
            raise weights.WeightsError(f"{args.resume}: not a checkpoint.pth that train.py wrote")
        args = argparse.Namespace(**{**vars(args), **{k: v for k, v in ckpt["config"].items() if k in vars(args) and k
                                                      not in given | {"device"}}, "out": folder})
    device = cli.pick_device(args.device)
    args.device, args.amp = device.type, cli.fast_amp(device) if args.amp == "auto" else args.amp
    held = [f for f in weights.RUN_FILES
            if args.out and not args.resume and os.path.isfile(os.path.join(args.out, f))]
    refusals = [f"--{k.replace('_', '-')} needs --{o} {v}" for k, (o, v) in NEEDS.items()
                if k in given and getattr(args, o) != v] + [
        f"--resume: the run has finished {ckpt['epoch']} epochs; pass --epochs N with N > {ckpt['epoch']} to train on"
        if ckpt and ckpt["epoch"] >= args.epochs and os.path.exists(os.path.join(args.out, "last.pth")) else "",
        f"--out {args.out} already holds a run ({', '.join(held)}): continue it with --resume "
        f"{os.path.join(args.out, 'checkpoint.pth')}, or choose another --out" if held else ""]
    for why in filter(None, refusals):
        p.error(why)
    return args, ckpt


# ------------------------------------------------------------------------------------------------------------
# The pieces of the recipe

def make_scheduler(args, opt, steps_per_epoch):
    """The report's ReduceLROnPlateau (per epoch), or per step a warm-up + cosine or Keras's inverse-time decay."""
    if args.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=args.plateau_patience)
    warmup, total = args.warmup * steps_per_epoch, args.epochs * steps_per_epoch

    def factor(step):
        if args.schedule == "inverse-time":
            return 1 / (1 + args.decay * step)
        return (step + 1) / warmup if step < warmup else \
            0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class EMA:
    """average <- decay * average + (1 - decay) * net after every step, BatchNorm's statistics too (timm's
    ModelEmaV2); the decay warms up as (1 + n) / (10 + n), so a short run's average is not its random start."""

    def __init__(self, net, decay):
        self.net, self.decay, self.updates = copy.deepcopy(net).requires_grad_(False), decay, 0
        pairs = list(zip(self.net.state_dict().values(), net.state_dict().values()))
        self.floats = [[e for e, p in pairs if e.is_floating_point()], [p for e, p in pairs if e.is_floating_point()]]
        self.counts = [(e, p) for e, p in pairs if not e.is_floating_point()]

    @torch.no_grad()
    def update(self):
        self.updates += 1
        torch._foreach_lerp_(*self.floats, 1 - min(self.decay, (1 + self.updates) / (10 + self.updates)))
        for e, p in self.counts:
            e.copy_(p)


def cross_entropy(logits, y, double_softmax=False, **options):  # double_softmax: the report's, then the loss's own
    return F.cross_entropy(logits.float().softmax(1) if double_softmax else logits.float(), y, **options)


# ------------------------------------------------------------------------------------------------------------
# The run

def train(args, ckpt, device, progress):
    splits = data.load(args.data)
    for note in splits.notes:
        print(f"note: {note}")
    if "train" not in splits or splits.unknown:
        raise cli.DataError(f"{args.data}: no training images; evaluate.py can score it" if "train" not in splits else
                            f"{splits.unknown[0]}: unknown class folder (not one of {', '.join(data.CLASSES)})")
    if args.train_on_val:  # one training set of both; "val" stays what the figures are computed on
        splits["train"] = tuple(map(torch.cat, zip(splits["train"], splits["val"])))
        splits.names["val"] = splits.names.get("val", "val").replace(", held out by train.py", "") + ", trained on too"
    torch.manual_seed(args.seed)
    net = weights.NETWORKS[args.model]()
    if args.double_softmax:  # the report's network as it was: its output layer Kaiming-normal too
        torch.nn.init.kaiming_normal_(model.output_layer(net).weight, nonlinearity="leaky_relu")
    if args.init and not ckpt:
        net.load_state_dict(weights.load(args.init, expect=args.model)[0].state_dict())
    net = net.to(device, memory_format=torch.channels_last)
    train_x, train_y = (t.to(device) for t in splits["train"])  # 28,709 x 48 x 48 uint8: 66 MB
    bs = min(args.bs, len(train_y))
    steps = len(train_y) // bs  # full batches only: BatchNorm needs > 1 face, and shapes stay static
    opt = torch.optim.SGD(net.parameters(), args.lr, momentum=args.momentum, nesterov=args.momentum > 0,
                          weight_decay=args.wd) if args.opt == "sgd" else \
        (torch.optim.Adam if args.opt == "adam" else torch.optim.AdamW)(net.parameters(), args.lr, weight_decay=args.wd)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[args.amp]
    s = {"model": net, "optimizer": opt, "scheduler": make_scheduler(args, opt, steps),
         "scaler": torch.amp.GradScaler(device.type, enabled=args.amp == "fp16"),  # fp16's small gradients need it
         "ema": EMA(net, args.ema) if args.ema else None, "order_gen": torch.Generator().manual_seed(args.seed),
         "aug_gen": torch.Generator(device).manual_seed(args.seed + 1),
         "data_id": data.fingerprint(*splits["train"]), "val_id": data.fingerprint(*splits["val"])}
    history, best_val_loss = restore(ckpt, s, args) if ckpt else ([], math.inf)
    eval_net = s["ema"].net if s["ema"] else net  # what is validated and saved
    print(f"{f'resuming at epoch {len(history) + 1} | ' if ckpt else ''}{args.model}: {model.count_parameters(net):,} "
          f"parameters | {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'} | amp {args.amp} | "
          f"faces { {k: len(v[1]) for k, v in splits.items()} } | validation on {splits.title('val')} | out {args.out}")
    for epoch in range(len(history) + 1, args.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        order = torch.tensor(list(WeightedRandomSampler(data.class_weights(splits["train"][1]), len(train_y),
                                                        generator=s["order_gen"]))) if args.sampler == "weighted" \
            else torch.randperm(len(train_y), generator=s["order_gen"])  # one draw an epoch
        order, sums = order.to(device, non_blocking=True), torch.zeros(2, device=device)  # loss, correct
        for i in tqdm(range(steps), f"epoch {epoch}/{args.epochs}", leave=False, file=sys.stdout, disable=None):
            x, y = train_x[order[i * bs:(i + 1) * bs]], train_y[order[i * bs:(i + 1) * bs]]
            x = augment.augment(x[:, None].float().div_(255), s["aug_gen"], args.flip, args.degrees, args.translate,
                                args.scale, args.erase, args.interpolation)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = net(data.normalize(x).contiguous(memory_format=torch.channels_last))
                loss = cross_entropy(logits, y, args.double_softmax, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            s["scaler"].scale(loss).backward()
            s["scaler"].step(opt)
            s["scaler"].update()
            if args.schedule != "plateau":
                s["scheduler"].step()
            if s["ema"]:
                s["ema"].update()
            sums += torch.stack([loss.detach() * len(y), (logits.argmax(1) == y).sum()])
        train_loss, train_acc = (sums / (steps * bs)).tolist()  # the epoch's one sync
        if not math.isfinite(train_loss):  # one line; the last good epoch's checkpoint is kept
            raise FloatingPointError(f"the training loss became {train_loss} in epoch {epoch}")
        val_loss, val_acc = validate(eval_net, *splits["val"], device, dtype, args.double_softmax)
        lr = opt.param_groups[0]["lr"]
        if args.schedule == "plateau":
            s["scheduler"].step(train_loss if args.plateau_on == "train-loss" else val_loss)
        history.append({"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                        "val_acc": val_acc, "lr": lr, "seconds": time.perf_counter() - t0})
        # the files a checkpoint names are written before it: none is ever older than it
        if val_loss < best_val_loss or args.train_on_val:  # trained on val: nothing to select by, keep the last
            save_weights(args, eval_net, "model.pth", history[-1], s["data_id"])
        cli.atomic_write(os.path.join(args.out, "history.csv"),
                         lambda tmp: pd.DataFrame(history).to_csv(tmp, index=False, float_format="%.6g"))
        best_val_loss = min(val_loss, best_val_loss)
        save_checkpoint(args, s, epoch, history, best_val_loss)
        progress["saved"] = epoch
        print(f"epoch {epoch:4d} | train loss {train_loss:.4f} acc {100 * train_acc:5.2f}% | val loss {val_loss:.4f} "
              f"acc {100 * val_acc:5.2f}% | lr {lr:.2e} | {history[-1]['seconds']:.1f}s", flush=True)
        best = min(history, key=lambda r: r["val_loss"])["epoch"]
        if args.early_stop and epoch - best >= args.early_stop:
            print(f"early stop: no better validation loss since epoch {best}")
            break
    save_weights(args, eval_net, "last.pth", history[-1], s["data_id"])
    kept = history[-1] if args.train_on_val else min(history, key=lambda r: r["val_loss"])
    print(f"model.pth: epoch {kept['epoch']} (val acc {100 * kept['val_acc']:.2f}%); last.pth: epoch {history[-1]['epoch']}")


def validate(net, images, labels, device, dtype, double_softmax):
    """Mean cross-entropy and accuracy, batched on the device, one sync."""
    net.eval()
    sums = torch.zeros(2, device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for x, y in zip(data.batches(images, 1024, device), labels.to(device).split(1024)):
            logits = net(x).float()
            sums += torch.stack([cross_entropy(logits, y, double_softmax, reduction="sum"), (logits.argmax(1) == y).sum()])
    return (sums / len(labels)).tolist()


def save_weights(args, net, name, row, data_id):
    weights.save(os.path.join(args.out, name), net, args.model, {
        "recipe": args.command, "interpolation": args.interpolation, "train_on_val": args.train_on_val, "data": args.data,
        "data_id": data_id, **{k: row[k] for k in ("epoch", "val_loss", "val_acc")}})


# ------------------------------------------------------------------------------------------------------------
# checkpoint.pth: a plain dict of all that an exact --resume needs

def save_checkpoint(args, s, epoch, history, best_val_loss):
    ckpt = {k: s[k].state_dict() for k in ("model", "optimizer", "scheduler", "scaler")} | {
        "config": vars(args), "device": args.device, "epoch": epoch, "history": history, "best_val_loss": best_val_loss,
        "data_id": s["data_id"], "val_id": s["val_id"], "ema": s["ema"].net.state_dict() if s["ema"] else {},
        "ema_updates": s["ema"].updates if s["ema"] else 0, "rng": {"torch": torch.get_rng_state(), "sampler":
        s["order_gen"].get_state(), "augment_ranks": [s["aug_gen"].get_state().cpu()], "cuda":
        torch.cuda.get_rng_state() if args.device == "cuda" else torch.empty(0)}}
    cli.write_json(os.path.join(args.out, "config.json"), vars(args))
    cli.atomic_write(os.path.join(args.out, "checkpoint.pth"), lambda tmp: torch.save(ckpt, tmp))


def restore(ckpt, s, args):
    """The run as it stood: bit for bit the run that never stopped, on the same kind of device."""
    if (ckpt.get("data_id"), ckpt.get("val_id", s["val_id"])) != (s["data_id"], s["val_id"]):
        raise weights.WeightsError(f"{args.resume}: the run trained or validated on other faces than --data {args.data}")
    try:
        for k in ("model", "optimizer", "scheduler", "scaler"):
            s[k].load_state_dict(ckpt[k])
        if s["ema"]:
            s["ema"].net.load_state_dict(ckpt["ema"] or ckpt["model"])
            s["ema"].updates = ckpt["ema_updates"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        s["order_gen"].set_state(ckpt["rng"]["sampler"])
        aug = ckpt["rng"]["augment_ranks"][0]
        history, best_val_loss = list(ckpt["history"]), float(ckpt["best_val_loss"])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:  # altered by hand or another program
        raise weights.WeightsError(f"{args.resume}: not a checkpoint.pth that train.py wrote "
                                   f"({str(e).splitlines()[0][:80]})") from None
    if ckpt["device"] != args.device:  # a CUDA generator's state does not fit a CPU one
        print(f"note: saved on {ckpt['device']}: the augmentation draws go on from a fresh seed (not bit-identical)")
        aug = torch.Generator(args.device).manual_seed(args.seed + 1 + 7919 * ckpt["epoch"]).get_state()
    elif args.device == "cuda":
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
    s["aug_gen"].set_state(aug.to(s["aug_gen"].get_state().device))
    return history, best_val_loss


def main(argv=None):
    args, ckpt = parse_args(sys.argv[1:] if argv is None else argv)
    made, start = not args.out or not os.path.exists(args.out), ckpt["epoch"] if ckpt else 0
    args.out, progress = args.out or time.strftime("runs/%Y%m%d-%H%M%S"), {"saved": start}
    cli.check_writable(args.out, folder=True, inputs=[args.data])  # before the hours of training
    lock = open(os.path.join(args.out, "training.lock"), "a+")
    try:  # the system lifts the lock however the process ends
        fcntl and fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise cli.OutputError(f"{args.out}: another training is writing into it; choose another --out") from None
    try:
        train(args, ckpt, torch.device(args.device), progress)
    except (KeyboardInterrupt, FloatingPointError, RuntimeError, MemoryError, cli.UserError) as e:
        n = progress["saved"]
        if isinstance(e, RuntimeError) and not cli.out_of_memory(e) or isinstance(e, cli.UserError) and n == start:
            raise  # a bug shows its traceback; a mistake before this run trained an epoch is cli.run's one line
        why = "\ninterrupted" if isinstance(e, KeyboardInterrupt) else f"train.py: out of memory at --bs {args.bs} (try " \
            f"--bs {args.bs // 2 or 1})" if cli.out_of_memory(e) else f"train.py: {e}" + " (try a lower --lr)" * (
                isinstance(e, FloatingPointError))
        sys.exit(f"{why}; " + (f"{n} epoch{'s' * (n > 1)} saved in {args.out}. Resume with: python train.py --resume "
                               f"{os.path.join(args.out, 'checkpoint.pth')}" if n else "no epoch was finished"))
    finally:
        os.remove(lock.name)  # before the lock goes: no other run takes a lock on a file about to vanish
        lock.close()
        if made and not os.listdir(args.out):
            os.rmdir(args.out)


if __name__ == "__main__":
    cli.run(main, "train.py")
