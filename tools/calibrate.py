"""Confidences that mean what they say: a temperature per weights file, fitted on PublicTest, written beside it.

    python tools/calibrate.py --weights weights/resnet.pth weights/vgg.pth --data data/fer2013.csv [--figure F.png]

A network's softmax over logits / T. The protocol, fixed before it ran: the val split's faces (PublicTest) are
halved by index (even, odd); T is fitted on the even half (the T of least cross-entropy, Guo et al. 2017) and the
expected calibration error (ECE: 15 equal-width confidence bins) measured on the odd half with T = 1 and with the
fitted T. Where the fitted T lowers it, T is fitted again on every face; where it does not, T stays 1. Either is
written, with the figures, to NAME_calibration.json, which weights.py reads beside NAME.pth, so every answer
(evaluate.py, the Python call, the page, camera.py's CSV, ONNX) applies it. A file that trained on PublicTest
(--train-on-val) has no held-out faces to fit on and is refused.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
import data  # noqa: E402
import weights  # noqa: E402

BINS = 15


def logits_of(net, images):
    with torch.no_grad():
        return torch.cat([net(x).float() for x in data.batches(images, 512, "cpu")])


def fit_temperature(logits, labels):
    """The T > 0 of least mean cross-entropy of softmax(logits / T), by a search over log T."""
    grid = torch.linspace(-3, 4, 701).exp()  # T from 0.05 to 55, steps of 1%
    losses = torch.stack([F.cross_entropy(logits / t, labels) for t in grid])
    return float(grid[losses.argmin()])


def ece(probs, labels, bins=BINS):
    """Expected calibration error: the faces' share-weighted |accuracy - mean confidence| over confidence bins."""
    confidence, predicted = probs.max(1)
    right = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.float().mean() * (right[inside].mean() - confidence[inside].mean()).abs()
    return float(total)


def reliability(ax, probs, labels, title):
    confidence, predicted = probs.max(1)
    right = (predicted == labels).float()
    edges = torch.linspace(0, 1, BINS + 1)
    mids, accs = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.sum() >= 5:
            mids.append(float(confidence[inside].mean()))
            accs.append(float(right[inside].mean()))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.plot(mids, accs, "o-", ms=3)
    ax.set(title=title, xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))


def main(argv=None):
    p = cli.parser("calibrate.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="weights files; each gets NAME_calibration.json")
    p.add_argument("--data", required=True, help="the data whose val split (PublicTest) the temperature is fitted on")
    p.add_argument("--figure", help="also draw each file's reliability before and after (odd half) here (.png)")
    args = p.parse_args(argv)
    outputs = [os.path.splitext(w)[0] + "_calibration.json" for w in args.weights] + [args.figure] * bool(args.figure)
    for out in outputs:
        cli.check_writable(out, inputs=[*args.weights, args.data])
    nets = [weights.load(w)[0] for w in args.weights]
    trained_on_val = [w for w, net in zip(args.weights, nets) if net.trained["train_on_val"]]
    if trained_on_val:
        raise cli.UserError(f"{trained_on_val[0]}: trained on the val split too (--train-on-val): no held-out faces "
                            f"to fit a temperature on")
    splits = data.load(args.data)
    _, images, labels = data.choose_split(splits, "val", args.data)
    rows = []
    for path, net in zip(args.weights, nets):
        logits = logits_of(net, images)
        even, odd = slice(0, None, 2), slice(1, None, 2)
        t_half = fit_temperature(logits[even], labels[even])
        before, after = (ece(F.softmax(logits[odd] / t, 1), labels[odd]) for t in (1.0, t_half))
        t = fit_temperature(logits, labels) if after < before else 1.0
        record = {"temperature": round(t, 4), "fitted_on": f"{splits.title('val')}, all {len(labels)} faces",
                  "protocol": "T fitted on the even-indexed half, ECE (15 bins) measured on the odd half; refitted on "
                              "all where it lowered that ECE, else 1",
                  "half_temperature": round(t_half, 4), "ece_before": round(before, 4), "ece_after": round(after, 4)}
        cli.write_json(os.path.splitext(path)[0] + "_calibration.json", record)
        rows.append((path, logits, t_half, record))
        print(f"{os.path.basename(path)}: T = {t:.3f} (on the even half {t_half:.3f}); ECE on the odd half "
              f"{100 * before:.2f}% -> {100 * after:.2f}%{'' if after < before else ', not lower: T = 1 kept'}")
    if args.figure:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(2, len(rows), figsize=(2.6 * len(rows), 5.4), squeeze=False)
        for k, (path, logits, t_half, record) in enumerate(rows):
            odd = slice(1, None, 2)
            for row, (t, when) in enumerate(((1.0, "before"), (t_half, "after"))):
                ece_value = record["ece_before" if row == 0 else "ece_after"]
                reliability(axes[row, k], F.softmax(logits[odd] / t, 1), labels[odd],
                            f"{os.path.basename(path)} {when}\nECE {100 * ece_value:.1f}%")
        fig.tight_layout()
        cli.atomic_write(args.figure, lambda tmp: fig.savefig(tmp, dpi=110))
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    cli.run(main, "calibrate.py")
