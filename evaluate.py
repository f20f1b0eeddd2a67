"""Accuracy, per-class precision/recall/F1 and the confusion matrix (the report's Figure 9) of trained weights.

    python evaluate.py --weights model.pth [--data PATH] [--split test|val|train|all|val+test] [--tta] [--json m.json]
    python evaluate.py --weights a.pth b.pth --tta          an ensemble: probabilities averaged over the files

Your own photos' faces: app/photos.py.
"""
import os

import numpy as np
import pandas as pd
import torch

import cli
import data
import model
import weights


def make_parser():
    p = cli.parser("evaluate.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="model.pth file(s); several = an ensemble")
    p.add_argument("--data", default="data/fer2013.csv", help="as train.py's --data")
    p.add_argument("--split", choices=data.SPLIT_CHOICES, help="default: test (PrivateTest) if the data has one, else "
                   "every image of data without splits, else val (PublicTest); val+test: the report's 7,178 faces")
    p.add_argument("--tta", action="store_true", help="average over ten views: mirror x (as is, zoom 0.9 and 1.1, "
                   "rotation -6 and +6 degrees)")
    p.add_argument("--out", help="folder for confusion_matrix.png (default: nothing written)")
    p.add_argument("--json", metavar="PATH", help="write accuracy, per-class figures and the confusion matrix")
    cli.add_device_flag(p)
    return p


def scores(labels, probs):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    pred, y, classes = probs.argmax(1).numpy(), labels.numpy(), list(range(len(data.CLASSES)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    return {"accuracy": float((pred == y).mean()), "n": int(len(y)),
            "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                          for i, c in enumerate(data.CLASSES)},
            "confusion_matrix": confusion_matrix(y, pred, labels=classes).tolist()}


def plot_confusion(m, path, title):
    """Counts and row-normalised recall side by side, like the report's Figure 9."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay
    cm, names = np.array(m["confusion_matrix"]), [f"{i} {c}" for i, c in enumerate(data.CLASSES)]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6))
    for ax, mat, fmt, sub in ((axes[0], cm, "d", "counts"),
                              (axes[1], cm / np.maximum(cm.sum(1, keepdims=True), 1), ".2f", "row-normalised (recall)")):
        ConfusionMatrixDisplay(mat, display_labels=names).plot(ax=ax, cmap="Blues", values_format=fmt,
                                                               xticks_rotation=45, colorbar=True)
        ax.set(xlabel="predicted", ylabel="true", title=sub)
    fig.suptitle(f"{title}: accuracy {100 * m['accuracy']:.2f}% (n={m['n']})")
    fig.tight_layout()
    cli.atomic_write(path, lambda t: fig.savefig(t, dpi=120, bbox_inches="tight"))
    plt.close(fig)


def trained_on(net, splits):
    """Whether these weights trained on these faces (train, or with --train-on-val train + val), by fingerprint."""
    seen = [splits["train"]] + [tuple(map(torch.cat, zip(splits["train"], splits["val"])))] * ("val" in splits)
    return net.trained["data_id"] in [data.fingerprint(*s) for s in seen]


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    device, inputs = cli.pick_device(args.device), [*args.weights, args.data]
    if args.json:  # every output checked before the work
        cli.check_writable(args.json, inputs=inputs)
    if args.out:
        cli.check_writable(args.out, folder=True, inputs=inputs)
        if args.json and cli.same_place(args.json, os.path.join(args.out, "confusion_matrix.png")):
            p.error(f"--json {args.json}: is also where --out draws the confusion matrix; choose another name")
    nets = weights.load_nets(args.weights, device)
    splits = data.load(args.data, whole=True)
    for note in splits.notes:
        print(f"note: {note}")
    split = args.split
    if split is None and "all" in splits and any(trained_on(net, splits) for net in nets):
        split = "val"  # every image would include the 90% these weights trained on
        print(f"note: {args.data} has no splits and these weights trained on it: scoring the 10% that train.py held out "
              f"(--split all scores every image)")
    split, images, labels = data.choose_split(splits, split, args.data)
    on_val = [w for w, net in zip(args.weights, nets) if net.trained["train_on_val"]]
    if on_val and ("val" in split.split("+") or split == "all"):
        print(f"warning: {', '.join(on_val)} trained on the validation images too (--train-on-val): the {split} "
              f"figure is not held out and says nothing about new faces")
    m = scores(labels, model.predict_proba(nets, images, device, args.tta, progress=True))
    title = f"{' + '.join(map(os.path.basename, args.weights))} on {splits.title(split)}{' (TTA)' if args.tta else ''}"
    print(f"{title}: accuracy {100 * m['accuracy']:.2f}% on {m['n']} images\n" + pd.DataFrame(m["per_class"]).T.to_string(
        formatters={"support": "{:.0f}".format, **{k: "{:.3f}".format for k in ("precision", "recall", "f1")}}))
    if args.out:
        plot_confusion(m, os.path.join(args.out, "confusion_matrix.png"), title)
        print(f"wrote {os.path.join(args.out, 'confusion_matrix.png')}")
    if args.json:
        cli.write_json(args.json, {**m, "split": split, "split_title": splits.title(split), "weights": args.weights,
                                   "tta": args.tta, "data": args.data})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    cli.run(main, "evaluate.py")
