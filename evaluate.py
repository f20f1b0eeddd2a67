"""Accuracy, per-class precision/recall/F1 and the confusion matrix of trained weights; or predictions for
your own face images.

    python evaluate.py --weights model.pth [--data PATH] [--split test|val|train|all] [--tta] [--json m.json]
    python evaluate.py --weights a.pth b.pth --tta          an ensemble: probabilities averaged over the files
    python evaluate.py --weights model.pth --images photo.jpg [--out DIR] [--json faces.json]
                                        every face in each photo: its box and top-3 emotions (faces.py)
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

import data
import faces
import model as models


TTA_WARPS = ((0.0, 0.9), (0.0, 1.1), (-6.0, 1.0), (6.0, 1.0))  # (degrees, zoom) besides the image as it is


def tta_views(x):
    """Ten views of a normalised batch [B, 1, 48, 48]: the image and its mirror, each as it is, zoomed out and in
    by 10% and rotated by -6 and +6 degrees, inside the training augmentation's ranges (8 degrees, zoom 0.8-1.2)
    and, as in training, with black outside the picture. On PublicTest these beat flip x 2-pixel shifts (the
    ten-crop idea of Khaireddin & Chen) by about a point on each of three networks (README, Results)."""
    black = data.normalize(torch.zeros((), device=x.device))
    degrees, zooms = zip(*TTA_WARPS)
    n = len(TTA_WARPS)  # one matrix per warp, shared by the whole batch and by both mirror images
    thetas = data.affine_matrix(torch.tensor(degrees, device=x.device) * torch.pi / 180,
                                torch.tensor(zooms, device=x.device), torch.zeros(n, 2, device=x.device),
                                torch.ones(n, device=x.device))
    for img in (x, x.flip(-1)):
        yield img
        for theta in thetas:
            yield data.warp(img - black, theta.expand(len(x), 2, 3)) + black  # warp fills with 0: black is 0 here


def predict_proba(nets, images, device, tta=False, batch_size=512):
    """Class probabilities [N, 7] for uint8 images [N, 48, 48], averaged over the networks (an ensemble) and,
    with tta, over the ten views. Batched on the device; one copy back per batch."""
    out = []
    with torch.no_grad():
        for x in data.batches(images, batch_size, device):
            views = list(tta_views(x)) if tta else [x]
            p = sum(F.softmax(net(v).float(), 1) for net in nets for v in views) / (len(nets) * len(views))
            out.append(p.cpu())
    return torch.cat(out) if out else torch.zeros(0, len(data.CLASSES))


def metrics(labels, probs):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    pred = probs.argmax(1).numpy()
    y = labels.numpy()
    classes = list(range(len(data.CLASSES)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    return {"accuracy": float((pred == y).mean()), "n": int(len(y)),
            "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(s[i])} for i, c in enumerate(data.CLASSES)},
            "confusion_matrix": confusion_matrix(y, pred, labels=classes).tolist()}


def print_report(m, title):
    print(f"{title}: accuracy {100 * m['accuracy']:.2f}% on {m['n']} images")
    print(f"{'':>10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for c, v in m["per_class"].items():
        print(f"{c:>10}{v['precision']:>10.3f}{v['recall']:>10.3f}{v['f1']:>10.3f}{v['support']:>10}")


def plot_confusion(m, path, title):
    """Counts and row-normalised recall side by side, like the report's Figure 9."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cm = np.array(m["confusion_matrix"])
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    names = [f"{i} {c}" for i, c in enumerate(data.CLASSES)]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6))
    for ax, mat, fmt, sub in ((axes[0], cm, "d", "counts"), (axes[1], norm, ".2f", "row-normalised (recall)")):
        im = ax.imshow(mat, cmap="Blues")
        fig.colorbar(im, ax=ax, fraction=0.046)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, format(mat[i, j], fmt), ha="center", va="center", fontsize=8,
                        color="white" if mat[i, j] > mat.max() / 2 else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(sub)
    fig.suptitle(f"{title}: accuracy {100 * m['accuracy']:.2f}% (n={m['n']})")
    fig.tight_layout()
    data.atomic_write(path, lambda t: fig.savefig(t, dpi=120))
    plt.close(fig)


def load_nets(paths, device):
    nets = [models.load_weights(p, device)[0] for p in paths]
    return [net.to(memory_format=torch.channels_last) for net in nets]


def top3(probs):
    top = probs.topk(3)
    return ", ".join(f"{data.CLASSES[i]} {100 * v:.1f}%" for v, i in zip(top.values, top.indices))


def predict_files(nets, args, device):
    """Every face in every picture: one line per picture classified whole, else a line per face with its box."""
    from PIL import Image
    found = []
    for path, _, boxes, crops, how in faces.find_in_files(args.images):
        probs = predict_proba(nets, torch.from_numpy(crops), device, args.tta)  # one batch per picture
        if how == "faces":
            print(f"{path}: {len(boxes)} face{'s' * (len(boxes) > 1)}")
            for k, (box, pr) in enumerate(zip(boxes, probs), 1):
                print(f"  face {k} at x={box[0]} y={box[1]} w={box[2]} h={box[3]}: {top3(pr)}")
        else:
            print(f"{path} (classified whole: {how}): {top3(probs[0])}")
        found.append({"file": str(path), "whole": how != "faces", "note": how,
                      "faces": [{"box": [int(v) for v in box], "emotion": data.CLASSES[int(pr.argmax())],
                                 "probs": [round(float(v), 6) for v in pr]} for box, pr in zip(boxes, probs)]})
        if args.out:
            texts = [f"{data.CLASSES[int(pr.argmax())]} {100 * float(pr.max()):.0f}%" for pr in probs]
            marked = faces.label_faces(faces.read_rgb(path), boxes, texts)
            name = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0] + "_faces.png")
            data.atomic_write(name, lambda t: Image.fromarray(marked).save(t))
            print(f"  wrote {name}")
    if args.json:
        data.atomic_write(args.json, lambda t: open(t, "w").write(json.dumps({"images": found}, indent=1) + "\n"))
        print(f"wrote {args.json}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.error = lambda msg: p.exit(2, f"evaluate.py: error: {msg}\n")
    p.add_argument("--weights", nargs="+", required=True, help="model.pth file(s); several = an ensemble")
    p.add_argument("--data", default="data/fer2013.csv", help="as train.py's --data")
    p.add_argument("--split", choices=["test", "val", "train", "all"], help="default: test if the data has "
                   "one, else val")
    p.add_argument("--images", nargs="+", metavar="IMAGE", help="predict every face in these photos instead (a "
                   "picture of 96 px or less, or with no face found, is classified whole)")
    p.add_argument("--tta", action="store_true", help="average over ten views: mirror x (as is, zoom 0.9 "
                   "and 1.1, rotation -6 and +6 degrees)")
    p.add_argument("--out", help="folder for confusion_matrix.png (default: beside the first weights); with "
                   "--images, for each photo annotated with its faces")
    p.add_argument("--json", metavar="PATH", help="write accuracy, per-class figures and the confusion matrix; with "
                   "--images, each face's box, emotion and probabilities")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but PyTorch sees no CUDA GPU")
    if args.json:  # every output checked before the work, not after the figures are written
        data.check_writable(args.json)
    if not args.images or args.out:
        data.check_writable(args.out or os.path.dirname(os.path.abspath(args.weights[0])), folder=True)
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    nets = load_nets(args.weights, device)

    if args.images:
        return predict_files(nets, args, device)

    if args.data != "synthetic" and not os.path.exists(args.data):
        p.error(f"--data {args.data}: no such file or folder")
    splits = data.load(args.data)
    split = args.split or ("test" if "test" in splits else "val")
    if split == "all":
        images = torch.cat([splits[k][0] for k in splits])
        labels = torch.cat([splits[k][1] for k in splits])
    elif split in splits:
        images, labels = splits[split]
    else:
        p.error(f"--split {split}: {args.data} has no {split} split (it has {', '.join(splits)})")
    m = metrics(labels, predict_proba(nets, images, device, args.tta))
    title = f"{' + '.join(os.path.basename(w) for w in args.weights)} on {split}{' (TTA)' if args.tta else ''}"
    print_report(m, title)
    out = args.out or os.path.dirname(os.path.abspath(args.weights[0]))
    os.makedirs(out, exist_ok=True)
    plot_confusion(m, os.path.join(out, "confusion_matrix.png"), title)
    print(f"wrote {os.path.join(out, 'confusion_matrix.png')}")
    if args.json:
        m.update({"split": split, "weights": args.weights, "tta": args.tta, "data": args.data})
        data.atomic_write(args.json, lambda t: open(t, "w").write(json.dumps(m, indent=2) + "\n"))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    try:
        main()
    except (data.DataError, models.WeightsError) as e:
        sys.exit(f"evaluate.py: {e}")
    except KeyboardInterrupt:
        sys.exit("\nevaluate.py: interrupted")
    except BrokenPipeError:  # `evaluate.py ... | head` closed the pipe: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit would fail
        sys.exit(1)
