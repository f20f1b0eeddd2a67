"""Ship a finished run into the repository: its weights in fp16, its history, curves and command, and its score.

    python tools/ship.py runs/<stamp> weights/seeds/cnn3 --data data/fer2013.csv [--last]

writes weights/seeds/cnn3.pth (model.pth, or last.pth with --last, in fp16: half the file, the same predictions
to within a few images), cnn3_history.csv, cnn3_curves.png, cnn3_command.txt, and cnn3_publictest.json and
cnn3_confusion_matrix.png: `evaluate.py --split val`'s score of the shipped file (PublicTest on the Kaggle file).
A run that trained on that split too (train.py --train-on-val) gets no score there: its PublicTest faces are
training faces. Everything is read and checked before the first file is written.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pandas as pd
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import cli  # noqa: E402
import data  # noqa: E402
import weights  # noqa: E402


def main(argv=None):
    p = cli.parser("ship.py", __doc__)
    p.add_argument("run", help="a finished train.py output folder")
    p.add_argument("dest", help="where the files go, without extension: weights/seeds/NAME")
    p.add_argument("--data", required=True, help="the data the run trained on, scored on its val split")
    p.add_argument("--last", action="store_true", help="ship last.pth (the schedule's end), not model.pth")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.run, "last.pth")):
        p.error(f"{args.run}: not a finished run (train.py writes last.pth at its end); finish it with --resume")
    if args.dest.endswith(("/", os.sep)) or os.path.isdir(args.dest) or not os.path.basename(args.dest):
        p.error(f"{args.dest}: a folder; name the files to write, e.g. {os.path.join(args.dest, 'NAME')}")
    folder = os.path.dirname(os.path.abspath(args.dest))
    if cli.inside(args.dest, args.run) or any(os.path.exists(os.path.join(folder, f)) for f in weights.RUN_FILES):
        p.error(f"{args.dest}: inside a run folder; ship it elsewhere (weights/NAME), so no run file is replaced")
    if not os.path.exists(args.data):
        p.error(f"--data {args.data}: no such file or folder")
    source, paths = os.path.join(args.run, "last.pth" if args.last else "model.pth"), {
        f: os.path.join(args.run, f) for f in ("config.json", "history.csv")}
    net, name = weights.load(source)
    try:
        command = json.load(open(paths["config.json"]))["command"]
        history = pd.read_csv(paths["history.csv"])
        assert {"epoch", "val_acc"} <= set(history.columns) and len(history)
    except (OSError, ValueError, KeyError, TypeError, AssertionError, pd.errors.ParserError) as e:
        raise cli.UserError(f"{args.run}: its config.json or history.csv is missing or damaged "
                            f"({type(e).__name__}); nothing was shipped") from None
    scored = not net.trained["train_on_val"]
    splits = data.load(args.data)
    seen = splits["train"] if scored else tuple(map(torch.cat, zip(splits["train"], splits["val"])))
    if net.trained["data_id"] and net.trained["data_id"] != data.fingerprint(*seen):
        p.error(f"--data {args.data}: not the data {args.run} trained on; give that data, so that its score is on "
                f"its own validation faces")
    outputs = [args.dest + s for s in (".pth", "_history.csv", "_curves.png", "_command.txt")] + \
        [args.dest + s for s in ("_publictest.json", "_confusion_matrix.png") if scored]
    for path in outputs:  # all checked before the first is written: no half-shipped set, no input replaced
        cli.check_writable(path, inputs=[source, *paths.values(), args.data])
    weights.save(args.dest + ".pth", net, name, {**net.trained, "recipe": command}, half=True)
    cli.atomic_write(args.dest + "_history.csv", lambda tmp: shutil.copyfile(paths["history.csv"], tmp))
    cli.atomic_write(args.dest + "_command.txt", command + "\n")
    with tempfile.TemporaryDirectory() as tmp:  # drawn and scored as tools/curves.py and evaluate.py do
        run([os.path.join(ROOT, "tools", "curves.py"), args.run, "--out", tmp])
        cli.atomic_write(args.dest + "_curves.png", lambda t: shutil.copyfile(os.path.join(tmp, "curves.png"), t))
        if not scored:
            print(f"{args.run} trained on the val split too (--train-on-val): not scored there")
            return
        run([os.path.join(ROOT, "evaluate.py"), "--weights", args.dest + ".pth", "--data", args.data, "--split", "val",
             "--device", "cpu", "--json", args.dest + "_publictest.json", "--out", tmp])
        cli.atomic_write(args.dest + "_confusion_matrix.png",
                         lambda t: shutil.copyfile(os.path.join(tmp, "confusion_matrix.png"), t))


def run(command):
    r = subprocess.run([sys.executable, *command], capture_output=True, text=True)
    print(r.stdout, end="")
    if r.returncode:
        raise cli.UserError((r.stderr.strip().splitlines() or [f"{command[0]} failed"])[-1])


if __name__ == "__main__":
    cli.run(main, "ship.py")
