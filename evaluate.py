"""Accuracy, per-class precision/recall/F1 and the confusion matrix of trained weights.

    python evaluate.py --weights model.pth [--data PATH] [--split test|val|train|all|val+test] [--tta] [--json m.json]
    python evaluate.py --weights a.pth b.pth --tta          an ensemble: probabilities averaged over the files

Your own photos' faces: app/photos.py.
"""
import os

import torch

import cli
import data
import files
import inference
import metrics


def trained_on(net, path, splits):
    """Whether the weights were trained on these images: the training set's fingerprint that train.py
    stores in the weights (however the data's path was spelt, or where it was moved), else, for files from
    before it did, the path in their config."""
    if net.trained["data_id"]:
        train = splits["train"]
        seen = (train, tuple(torch.cat([a, b]) for a, b in zip(train, splits["val"]))) if "val" in splits \
            else (train,)  # --train-on-val fingerprints both
        return net.trained["data_id"] in [data.fingerprint(*s) for s in seen]
    trained = net.trained["data"]
    return trained is not None and path != "synthetic" and os.path.exists(path) and os.path.exists(trained) \
        and os.path.samefile(trained, path)


def make_parser():
    p = cli.parser("evaluate.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="model.pth file(s); several = an ensemble")
    p.add_argument("--data", default="data/fer2013.csv", help="as train.py's --data")
    p.add_argument("--split", choices=data.SPLIT_CHOICES,
                   help="default: test (PrivateTest on Kaggle's fer2013.csv) if the data has one, else every "
                   "image of data without splits, else val (PublicTest); val+test: PublicTest and "
                   "PrivateTest together, the 7,178 faces the report scored its 59%% on")
    p.add_argument("--tta", action="store_true", help="average over ten views: mirror x (as is, zoom 0.9 "
                   "and 1.1, rotation -6 and +6 degrees)")
    p.add_argument("--out", help="folder for confusion_matrix.png (default: nothing written)")
    p.add_argument("--json", metavar="PATH", help="write accuracy, per-class figures and the confusion matrix")
    cli.add_device_flag(p)
    return p


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    device = cli.pick_device(args.device)
    inputs = [*args.weights, args.data]
    if args.json:  # every output checked before the work, not after the figures are written
        files.check_writable(args.json, inputs=inputs)
    if args.out:
        files.check_writable(args.out, folder=True, inputs=inputs)
        if args.json and files.same_place(args.json, os.path.join(args.out, "confusion_matrix.png")):
            p.error(f"--json {args.json}: is also where --out draws the confusion matrix; choose another name")
    nets = inference.load_nets(args.weights, device)
    if args.data != "synthetic" and not os.path.exists(args.data):
        p.error(f"--data {args.data}: no such file or folder")
    splits = data.load(args.data, whole=True)
    for note in splits.notes:
        print(f"note: {note}")
    requested = args.split
    if requested is None and "all" in splits and any(trained_on(net, args.data, splits) for net in nets):
        requested = "val"  # every image would include the 90% these weights were trained on
        print(f"note: {args.data} has no splits and these weights were trained on it: scoring the 10% that "
              f"train.py held out (--split all scores every image)")
    split, images, labels = data.choose_split(splits, requested, args.data)
    on_val = [w for w, net in zip(args.weights, nets) if net.trained["train_on_val"]]
    if on_val and ("val" in split.split("+") or split == "all"):
        print(f"warning: {', '.join(on_val)} trained on the validation images too (--train-on-val): "
              f"the {split} figure is not held out and says nothing about new faces")
    m = metrics.metrics(labels, inference.predict_proba(nets, images, device, args.tta, progress=True))
    title = f"{' + '.join(os.path.basename(w) for w in args.weights)} on {splits.title(split)}" \
            f"{' (TTA)' if args.tta else ''}"
    metrics.print_report(m, title)
    if args.out:
        metrics.plot_confusion(m, os.path.join(args.out, "confusion_matrix.png"), title)
        print(f"wrote {os.path.join(args.out, 'confusion_matrix.png')}")
    if args.json:
        files.write_json(args.json, metrics.record(m, args.weights, splits, split, args.tta, args.data))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    cli.run(main, "evaluate.py")
