"""Confidences that mean what they say: temperatures per weights file and per ensemble, fitted on PublicTest and
written beside the files.

    python tools/calibrate.py --weights weights/resnet.pth weights/vgg.pth --data data/fer2013.csv [--figure F.png]
    python tools/calibrate.py --weights weights/resnet.pth weights/vgg.pth --ensemble --data ...   and the pair's

Three temperatures, each a softmax over scores / T, each fitted by one protocol:
- a network's, on its logits: every answer of that file divides its logits by it;
- its TTA answer's, on the log of its ten views' calibrated probabilities averaged (an average of views is less
  sure than it is right: T < 1 sharpens it);
- with --ensemble, the files' averaged answer's, plain and with TTA, kept under the ensemble's name (its files'
  names) in each member's file; weights.load_nets applies it when given exactly those files.
The protocol, fixed before it ran: the val split's faces (PublicTest) are halved by index (even, odd); T is fitted
on the even half (the T of least cross-entropy, Guo et al. 2017) and the expected calibration error (ECE: 15
equal-width confidence bins) measured on the odd half with T = 1 and with the fitted T. Where the fitted T lowers
it, T is fitted again on every face; where it does not, T stays 1. Each file's NAME_calibration.json is written
whole, with the figures (ensembles fitted in an earlier run are not kept: fit them again). weights.py reads it, so
every answer (evaluate.py, the Python call, the page, camera.py's CSV, ONNX) applies it. A file that trained on
PublicTest (--train-on-val) has no held-out faces to fit on and is refused.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
import data  # noqa: E402
import model  # noqa: E402
import weights  # noqa: E402

BINS = 15
EVEN, ODD = slice(0, None, 2), slice(1, None, 2)
PROTOCOL = ("T fitted on the even-indexed half, ECE (15 bins) measured on the odd half; refitted on all where it "
            "lowered that ECE, else 1")


def logits_of(net, images):
    """[10, N, 7]: the logits of each TTA view (model.tta_views), the face as it is first."""
    with torch.no_grad():
        return torch.cat([torch.stack([net(v).float() for v in model.tta_views(x, net.trained["interpolation"])])
                          for x in data.batches(images, 512, "cpu")], 1)


def fit_temperature(logits, labels):
    """The T > 0 of least mean cross-entropy of softmax(logits / T), by a search over log T."""
    grid = torch.linspace(-3, 4, 701).exp()  # T from 0.05 to 55, steps of 1%
    losses = torch.stack([F.cross_entropy(logits / t, labels) for t in grid])
    return float(grid[losses.argmin()])


def confidence_bins(probs, labels, bins=BINS):
    """Per non-empty equal-width bin of top confidence: (share of the faces, mean confidence, accuracy, count)."""
    confidence, predicted = probs.max(1)
    right = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            yield (float(inside.float().mean()), float(confidence[inside].mean()), float(right[inside].mean()),
                   int(inside.sum()))


def ece(probs, labels, bins=BINS):
    """Expected calibration error: the faces' share-weighted |accuracy - mean confidence| over confidence bins."""
    return sum(share * abs(accuracy - mean) for share, mean, accuracy, _ in confidence_bins(probs, labels, bins))


def protocol(scores, labels):
    """The temperature for softmax(scores / T) by the protocol above, and its figures."""
    t_half = fit_temperature(scores[EVEN], labels[EVEN])
    before, after = (ece(F.softmax(scores[ODD] / t, 1), labels[ODD]) for t in (1.0, t_half))
    t = fit_temperature(scores, labels) if after < before else 1.0
    return {"temperature": round(t, 4), "half_temperature": round(t_half, 4), "ece_before": round(before, 4),
            "ece_after": round(after, 4)}


def averaged(logits, temperatures, views):
    """log of the calibrated probabilities averaged over networks and their first `views` views, as
    model.predict_proba averages them: the scores of an averaged answer."""
    probs = torch.cat([F.softmax(v[:views] / t, -1) for v, t in zip(logits, temperatures)]).mean(0)
    return probs.clamp_min(1e-30).log()


def fit(logits, temperatures, labels):
    """An average's two temperatures (plain, TTA) and their figures."""
    plain, tta = (protocol(averaged(logits, temperatures, views), labels) for views in (1, 10))
    return {"temperature": plain["temperature"], "tta_temperature": tta["temperature"],
            "figures": {"plain": plain, "tta": tta}}


def reliability(ax, scores, labels, style, label):
    """Accuracy against mean confidence per bin of five or more faces (fewer say little); none drawn on a tiny split,
    the legend kept."""
    points = [(mean, accuracy) for _, mean, accuracy, count in confidence_bins(F.softmax(scores, 1), labels)
              if count >= 5]
    ax.plot([mean for mean, _ in points], [accuracy for _, accuracy in points], style, ms=3, label=label)


def draw(path, columns, labels):
    """Per column (a file or the ensemble), the odd half's reliability: top at T = 1, bottom at the even half's T."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, len(columns), figsize=(2.7 * len(columns), 5.8), squeeze=False)
    for k, (name, scores, figures) in enumerate(columns):
        for row in (0, 1):
            ax = axes[row, k]
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
            lines = []
            for (kind, s), style in zip(scores.items(), ("o-", "s--")):
                f = figures[kind]
                t = 1.0 if row == 0 else f["half_temperature"]
                reliability(ax, s[ODD] / t, labels[ODD], style, f"{kind}{'' if row == 0 else f' T={t:.2f}'}")
                kept = "" if row == 0 or f["temperature"] != 1 else " (1 kept)"
                lines.append(f"{kind} {100 * f['ece_before' if row == 0 else 'ece_after']:.1f}%{kept}")
            ax.set(title=f"{name}{'' if row == 0 else ', even half T'}\nECE " + ", ".join(lines), xlim=(0, 1),
                   ylim=(0, 1), xlabel="confidence", ylabel="accuracy" if k == 0 else None)
            ax.title.set_fontsize(8)
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    cli.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))


def main(argv=None):
    p = cli.parser("calibrate.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="weights files; each gets NAME_calibration.json")
    p.add_argument("--data", required=True, help="the data whose val split (PublicTest) the temperature is fitted on")
    p.add_argument("--ensemble", action="store_true", help="also fit the files' averaged answer's temperatures")
    p.add_argument("--figure", help="also draw each file's reliability before and after (odd half) here (.png)")
    args = p.parse_args(argv)
    if args.ensemble and len(args.weights) < 2:
        p.error("--ensemble: give two or more --weights files")
    if len({os.path.basename(w) for w in args.weights}) < len(args.weights):
        p.error("--weights: two files of one name (an ensemble is named by its files' names)")
    outputs = [weights.calibration_path(w) for w in args.weights] + [args.figure] * bool(args.figure)
    for out in outputs:
        cli.check_writable(out, inputs=[*args.weights, args.data])
    nets = [weights.load(w)[0] for w in args.weights]
    trained_on_val = [w for w, net in zip(args.weights, nets) if net.trained["train_on_val"]]
    if trained_on_val:
        raise cli.UserError(f"{trained_on_val[0]}: trained on the val split too (--train-on-val): no held-out faces "
                            f"to fit a temperature on")
    splits = data.load(args.data)
    _, images, labels = data.choose_split(splits, "val", args.data)
    logits, records, columns = [], [], []
    for path, net in zip(args.weights, nets):
        logits.append(logits_of(net, images))
        plain = protocol(logits[-1][0], labels)
        tta = protocol(averaged(logits[-1:], [plain["temperature"]], 10), labels)
        records.append({"temperature": plain["temperature"], "tta_temperature": tta["temperature"],
                        "fitted_on": f"{splits.title('val')}, all {len(labels)} faces", "protocol": PROTOCOL,
                        "figures": {"plain": plain, "tta": tta}})
        columns.append((os.path.basename(path), {"plain": logits[-1][0],
                                                 "tta": averaged(logits[-1:], [plain["temperature"]], 10)},
                        records[-1]["figures"]))
        print(f"{os.path.basename(path)}: " + "; ".join(
            f"{kind} T = {f['temperature']:.3f} (on the even half {f['half_temperature']:.3f}), ECE on the odd half "
            f"{100 * f['ece_before']:.2f}% -> {100 * f['ece_after']:.2f}%"
            f"{'' if f['ece_after'] < f['ece_before'] else ', not lower: T = 1 kept'}"
            for kind, f in (("plain", plain), ("TTA", tta))))
    if args.ensemble:
        name = weights.ensemble_name(args.weights)
        entry = fit(logits, [r["temperature"] for r in records], labels)
        for record in records:
            record["ensembles"] = {name: entry}
        columns.append(("ensemble", {kind: averaged(logits, [r["temperature"] for r in records], views)
                                     for kind, views in (("plain", 1), ("tta", 10))}, entry["figures"]))
        print(f"{name}: " + "; ".join(f"{kind} T = {f['temperature']:.3f}, ECE on the odd half "
                                      f"{100 * f['ece_before']:.2f}% -> {100 * f['ece_after']:.2f}%"
                                      for kind, f in entry["figures"].items()))
    for path, record in zip(args.weights, records):
        cli.write_json(weights.calibration_path(path), record)
    if args.figure:
        draw(args.figure, columns, labels)
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    cli.run(main, "calibrate.py")
