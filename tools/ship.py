"""Ship a finished run into the repository: its weights in fp16, its history, curves and command, and its
score.

    python tools/ship.py runs/<stamp> weights/seeds/cnn3 --data data/fer2013.csv [--last]

writes weights/seeds/cnn3.pth (model.pth, or last.pth with --last, in fp16: half the file, the same
predictions to within a few images), cnn3_history.csv, cnn3_curves.png (drawn from the whole history, labelled
as train.py labels it), cnn3_command.txt, and
cnn3_publictest.json and cnn3_confusion_matrix.png, the score on the data's val split as evaluate.py --split val
gives it (PublicTest on the Kaggle file). A run that trained on that split too (train.py --train-on-val) gets no score there: its
PublicTest faces are training faces, so the two files would publish a figure that means nothing.
"""
import json
import os
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import checkpoint  # noqa: E402
import cli  # noqa: E402
import data  # noqa: E402
import files  # noqa: E402
import inference  # noqa: E402
import metrics  # noqa: E402
import run_folder  # noqa: E402


SHIPPED_FILES = ("history.csv", "curves.png")  # beside the weights as NAME_history.csv, NAME_curves.png


def main(argv=None):
    p = cli.parser("ship.py", __doc__)
    p.add_argument("run", help="a train.py output folder")
    p.add_argument("dest", help="where the files go, without extension: weights/seeds/NAME")
    p.add_argument("--data", required=True, help="the data the run trained on, scored on its val split")
    p.add_argument("--last", action="store_true", help="ship last.pth (the schedule's end), not model.pth")
    p.add_argument("--command", help="the command that made the run, where its config.json records none")
    args = p.parse_args(argv)
    source = os.path.join(args.run, "last.pth" if args.last else "model.pth")
    net, name = checkpoint.load_weights(source)
    config_path = os.path.join(args.run, "config.json")
    if not os.path.isfile(config_path):
        raise cli.UserError(f"{args.run}: no config.json (not a train.py output folder)")
    config = json.load(open(config_path))
    command = args.command or config.get("command")
    if not command:
        p.error(f"{args.run}/config.json records no command; pass --command")
    if args.data != "synthetic" and not os.path.exists(args.data):
        p.error(f"--data {args.data}: no such file or folder")
    scored = not config.get("train_on_val")
    history_path = os.path.join(args.run, "history.csv")
    if not os.path.isfile(history_path):
        raise cli.UserError(f"{history_path}: no such file (the run's history ships with its weights)")
    if args.dest.endswith(("/", os.sep)) or os.path.isdir(args.dest) or not os.path.basename(args.dest):
        p.error(f"{args.dest}: a folder; name the files to write, e.g. {os.path.join(args.dest, 'NAME')}")
    if files.inside(args.dest, args.run):
        p.error(f"{args.dest}: inside the run folder {args.run}; ship it elsewhere (weights/NAME), so no run "
                f"file is replaced")
    splits = data.load(args.data)
    if net.trained["data_id"]:  # the faces it trained on, however the data's path is spelt now
        seen = splits["train"] if scored else tuple(map(torch.cat, zip(splits["train"], splits["val"])))
        if net.trained["data_id"] != data.fingerprint(*seen):
            p.error(f"--data {args.data}: not the data {args.run} trained on; give that data, so that its "
                    f"score is on its own validation faces")
    inputs = [source, config_path, history_path, args.data]
    outputs = [args.dest + ".pth", *(f"{args.dest}_{f}" for f in SHIPPED_FILES), args.dest + "_command.txt",
               *([args.dest + "_publictest.json", args.dest + "_confusion_matrix.png"] if scored else [])]
    for path in outputs:  # all checked before the first is written: no half-shipped set, no input replaced
        files.check_writable(path, inputs=inputs)
    checkpoint.save_weights(args.dest + ".pth", net, name, {**net.trained, "recipe": command}, half=True)
    copy(history_path, args.dest + "_history.csv")
    with tempfile.TemporaryDirectory() as tmp:  # redrawn: the run's own curves.png may predate its last epochs
        run_folder.plot_curves(tmp, run_folder.read_history(history_path), trained_on_val=not scored)
        copy(os.path.join(tmp, "curves.png"), args.dest + "_curves.png")
    files.atomic_write(args.dest + "_command.txt", command + "\n")
    if not scored:
        print(f"{args.run} trained on the val split too (--train-on-val): not scored there, no "
              f"{os.path.basename(args.dest)}_publictest.json or confusion matrix")
        return
    split, images, labels = data.choose_split(splits, "val", args.data)  # scored as evaluate.py --split val
    shipped = args.dest + ".pth"
    m = metrics.metrics(labels, inference.predict_proba(inference.load_nets([shipped], "cpu"), images, "cpu"))
    title = f"{os.path.basename(shipped)} on {splits.title(split)}"
    metrics.print_report(m, title)
    metrics.plot_confusion(m, args.dest + "_confusion_matrix.png", title)
    files.write_json(args.dest + "_publictest.json", metrics.record(m, [shipped], splits, split, False, args.data))


def copy(source, dest):
    files.atomic_write(dest, lambda tmp: shutil.copyfile(source, tmp))


if __name__ == "__main__":
    cli.run(main, "ship.py")
