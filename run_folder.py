"""A run's folder: its lock while it trains, its name, the record it keeps beside the weights (history.csv,
curves.png), each written atomically so an interrupted run leaves the previous good file, and what a run that
stops early says about it: what is saved and how to resume.
"""
import contextlib
import csv
try:
    import fcntl  # the folder lock; Windows has none, and there a run folder is not locked
except ImportError:
    fcntl = None
import os
import sys
import time

import torch

import cli
import files

# The files that make a folder a run's: a new run refuses a folder holding any of them. config.json alone is
# not one: a run stopped (even killed) before its first epoch ends has nothing to lose.
RUN_FILES = ("checkpoint.pth", "model.pth", "last.pth", "history.csv")
HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


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


class Diverged(Exception):
    """The training loss became NaN or infinite."""


class Progress:
    """What a run has saved so far, and the one place a run that stops early says so: Ctrl-C or SIGTERM, a
    diverged loss, running out of memory or disk all end in one line naming what is saved and how to resume."""

    def __init__(self, out, saved_epoch, master):
        self.out, self.saved_epoch, self.master = out, saved_epoch, master

    def saved(self):
        if self.saved_epoch < 1:
            return f"no epoch was finished, so nothing was saved in {self.out}"
        done = "epoch 1 is" if self.saved_epoch == 1 else f"epochs 1-{self.saved_epoch} are"
        return f"{done} saved in {self.out}. Resume with: python train.py --resume " \
               f"{os.path.join(self.out, 'checkpoint.pth')}"

    @contextlib.contextmanager
    def stops_in_one_line(self, bs):
        try:
            yield
        except KeyboardInterrupt:  # Ctrl-C, and SIGTERM (cli.run turns it into this)
            sys.exit(f"\ninterrupted; {self.saved()}" if self.master else 130)
        except Diverged as e:
            sys.exit(f"train.py: {e}; stopped, {self.saved()} (try a lower --lr, or --amp off)" if self.master else 1)
        except (RuntimeError, MemoryError) as e:
            if not cli.out_of_memory(e):
                raise
            where = "GPU" if isinstance(e, torch.cuda.OutOfMemoryError) else "CPU"
            sys.exit(f"train.py: out of {where} memory at --bs {bs}; try --bs {max(1, bs // 2)}; {self.saved()}"
                     if self.master else 1)
        except cli.UserError as e:  # an output that could not be written (a full disk)
            raise type(e)(f"{e}; {self.saved()}") from None
