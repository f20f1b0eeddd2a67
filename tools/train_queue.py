"""Train a queue of recipes one after another on whatever device is here, until a deadline: for a lent GPU's
few minutes, or a night on a CPU.

    python tools/train_queue.py --data data/fer2013.csv --minutes 13 --out runs/queue --pack $OUT \
        --queue recipes/gpu_queue.txt
    python tools/train_queue.py --data data/fer2013.csv --minutes 600 --out runs/night \
        @recipes/vgg_nearest.txt "@recipes/vgg_nearest.txt --seed 2" "@recipes/resnet_stage1.txt --epochs 100"

Each entry is one train.py command line (quote an entry of several words); a queue file holds one a line, and
recipes/gpu_queue.txt is what a lent GPU trains first. The runs go one at a time: on an
H200 seven at once cost what seven in a row cost (docs/performance.md), and one at a time each either
finishes or is stopped cleanly. A run is sized by its own measured epochs: after each epoch its finish is
estimated from the last epoch's time, and a run that cannot finish before the deadline is stopped there
(SIGTERM: its checkpoint stays resumable) and the queue goes on to the next entry, which may be shorter. At
the deadline the running run is stopped the same way. Each finished run is left ready for tools/ship.py in
OUT/NAME; with --pack, also as one file DIR/NAME.tar (config.json, history.csv and the weights its recipe
keeps, in fp16: last.pth after a cosine schedule, else model.pth), the way files come back from a lent
machine.
"""
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import cli  # noqa: E402
import weights  # noqa: E402

POLL_S = 1.0


def run_name(entry):
    """A folder name from an entry: "@recipes/vgg.txt --seed 2" -> vgg_seed2."""
    words = [os.path.splitext(os.path.basename(w[1:]))[0] if w.startswith("@") else w.lstrip("-")
             for w in shlex.split(entry)]
    return re.sub(r"[^A-Za-z0-9_.-]+", "", "_".join(words))[:80] or "run"


def kept_weights(config):
    """The file a recipe ships: the end of a cosine schedule (lr 0), else the lowest validation loss."""
    return "last.pth" if config.get("schedule") == "cosine" else "model.pth"


def pack(run, dest):
    """run/ as one tar: config.json, history.csv and the kept weights in fp16, written atomically."""
    config = json.load(open(os.path.join(run, "config.json")))
    name = kept_weights(config)
    net, model_name = weights.load(os.path.join(run, name))
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=buffer, mode="w") as tar:
        kept = os.path.join(tmp, name)
        weights.save(kept, net, model_name, net.trained, half=True)
        for source, arcname in ((os.path.join(run, "config.json"), "config.json"),
                                (os.path.join(run, "history.csv"), "history.csv"), (kept, name)):
            tar.add(source, arcname=arcname)
    cli.atomic_write(dest, buffer.getvalue())
    return name


def train(entry, out, data, deadline, log):
    """One entry, to its end or until it cannot finish before `deadline`. Returns what became of it."""
    command = [sys.executable, os.path.join(ROOT, "train.py"), *shlex.split(entry), "--data", data, "--out", out]
    with open(log, "a") as f:
        process = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT)
        try:
            why = watch(process, out, deadline)
        except KeyboardInterrupt:  # the queue stopped (Ctrl-C, SIGTERM): its run stops too, resumable
            process.send_signal(signal.SIGTERM)
            process.wait()
            raise
    if why:
        return f"stopped: {why}; resume with python train.py --resume {os.path.join(out, 'checkpoint.pth')}"
    return "finished" if process.returncode == 0 else f"failed (exit {process.returncode}): see {log}"


def watch(process, out, deadline):
    """Waits for the run; stops it (SIGTERM: train.py saves and says how to resume) at the deadline or as soon
    as its measured epochs say it cannot finish before it. Returns why it was stopped, or None."""
    why = None
    while process.poll() is None:
        time.sleep(POLL_S)
        history = os.path.join(out, "history.csv")
        if not why and time.time() >= deadline:
            why = "the deadline came"
        elif not why and os.path.exists(history) and os.path.exists(os.path.join(out, "config.json")):
            last = pd.read_csv(history).iloc[-1]
            epochs = json.load(open(os.path.join(out, "config.json")))["epochs"]
            if time.time() + (epochs - last["epoch"]) * last["seconds"] > deadline:
                why = f"at {last['seconds']:.1f} s an epoch its {epochs - last['epoch']:.0f} epochs " \
                      f"left end past the deadline"
        if why and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait()
    return why


def main(argv=None):
    p = cli.parser("train_queue.py", __doc__)
    p.add_argument("entries", nargs="*", metavar="ENTRY", help="train.py's arguments for one run, e.g. @recipes/vgg.txt")
    p.add_argument("--queue", metavar="FILE", help="entries, one a line, after those given (# starts a comment)")
    p.add_argument("--data", required=True, help="the data every run trains on (train.py's --data)")
    p.add_argument("--minutes", type=cli.positive, required=True, help="the deadline, minutes from now")
    p.add_argument("--out", required=True, help="the folder that receives one run folder per entry")
    p.add_argument("--pack", metavar="DIR", help="also write each finished run as DIR/NAME.tar")
    args = p.parse_args(argv)
    try:
        queued = [e.split("#")[0].strip() for e in open(args.queue).read().splitlines()] if args.queue else []
    except (OSError, UnicodeDecodeError) as e:
        p.error(f"--queue {args.queue}: cannot read it ({getattr(e, 'strerror', None) or e})")
    args.entries += [e for e in queued if e]
    if not args.entries:
        p.error("nothing to train: give ENTRY ... or --queue FILE")
    deadline = time.time() + 60 * args.minutes
    names = [run_name(e) for e in args.entries]
    names = [n if names.count(n) == 1 else f"{i + 1:02d}_{n}" for i, n in enumerate(names)]
    for name in names:  # every output checked before the first run: none lands on a run or file already there
        cli.check_writable(os.path.join(args.out, name), folder=True, inputs=[args.data])
        if any(os.path.exists(os.path.join(args.out, name, f)) for f in weights.RUN_FILES):
            raise cli.OutputError(f"{os.path.join(args.out, name)}: already holds a run; choose another --out")
        if args.pack:
            cli.check_writable(os.path.join(args.pack, name + ".tar"), inputs=[args.data])
    os.makedirs(args.out, exist_ok=True)
    for entry, name in zip(args.entries, names):
        left = deadline - time.time()
        if left <= 0:
            print(f"{name}: not started, the deadline has come")
            continue
        print(f"{name}: python train.py {entry} ({left / 60:.1f} min left)", flush=True)
        out = os.path.join(args.out, name)
        outcome = train(entry, out, args.data, deadline, os.path.join(args.out, name + ".log"))
        if outcome == "finished" and args.pack:
            kept = pack(out, os.path.join(args.pack, name + ".tar"))
            outcome += f", packed as {os.path.join(args.pack, name + '.tar')} ({kept})"
        print(f"{name}: {outcome}", flush=True)


if __name__ == "__main__":
    cli.run(main, "train_queue.py")
