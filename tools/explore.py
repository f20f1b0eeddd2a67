"""A look at a data set before training, like the report's first section: the class counts of each split,
and with --out its Figures 2 and 3 (distribution.png, samples.png).

    python tools/explore.py data/fer2013.csv                  class counts per split
    python tools/explore.py data/fer2013.csv --out figs/      and distribution.png, samples.png
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
from data import CLASSES, load  # noqa: E402

def explore(path, out_dir, seed=0):
    """The class counts, and distribution.png and samples.png in out_dir, like the report's Figures 2
    and 3."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    splits, names, counts = explore_counts(path)
    os.makedirs(out_dir, exist_ok=True)

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(names)
    for j, k in enumerate(names):
        bars = ax.bar(np.arange(len(CLASSES)) + j * width, counts[k], width, label=k)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(np.arange(len(CLASSES)) + width * (len(names) - 1) / 2,
                  [f"{i} {c}" for i, c in enumerate(CLASSES)])
    ax.set_ylabel("images")
    ax.set_title(f"Emotion distribution: {os.path.basename(path.rstrip('/'))}")
    ax.legend()
    fig.tight_layout()
    cli.atomic_write(os.path.join(out_dir, "distribution.png"), lambda t: fig.savefig(t, dpi=120))
    plt.close(fig)

    images, labels = splits[names[0]]  # training images, or the first split a test-only file has
    rng = np.random.default_rng(seed)
    per_class = 6
    fig, axes = plt.subplots(len(CLASSES), per_class, figsize=(per_class * 1.1, len(CLASSES) * 1.2))
    for i, c in enumerate(CLASSES):
        idx = np.flatnonzero(labels.numpy() == i)
        pick = rng.choice(idx, min(per_class, idx.size), replace=False) if idx.size else []
        for j in range(per_class):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(pick):
                ax.imshow(images[pick[j]].numpy(), cmap="gray", vmin=0, vmax=255)
        axes[i, 0].set_title(f"{i} {c}", fontsize=8, loc="left")
    fig.tight_layout()
    cli.atomic_write(os.path.join(out_dir, "samples.png"), lambda t: fig.savefig(t, dpi=120))
    plt.close(fig)
    print(f"wrote {os.path.join(out_dir, 'distribution.png')} and {os.path.join(out_dir, 'samples.png')}")


def explore_counts(path):
    """Class counts per split, printed; returns the Splits."""
    splits = load(path)
    for note in splits.notes:
        print(f"note: {note}")
    names = [k for k in ("train", "val", "test") if k in splits]
    counts = {k: np.bincount(splits[k][1].numpy(), minlength=len(CLASSES)) for k in names}
    print(f"{'class':<10}" + "".join(f"{k:>8}" for k in names))
    for i, c in enumerate(CLASSES):
        print(f"{i} {c:<8}" + "".join(f"{counts[k][i]:>8}" for k in names))
    print(f"{'total':<10}" + "".join(f"{counts[k].sum():>8}" for k in names))
    own = [f"{k} = {splits.names[k]}" for k in names if splits.title(k) != k]
    if own:
        print(f"the data's own names: {', '.join(own)}")
    return splits, names, counts


def make_parser():
    p = cli.parser("explore.py", __doc__)
    p.add_argument("path", help="fer2013.csv, train.csv, icml_face_data.csv (.gz too) or an image folder")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="which faces samples.png shows")
    p.add_argument("--out", help="folder for distribution.png and samples.png (default: no figures)")
    return p


def main(argv=None):
    args = make_parser().parse_args(argv)
    if args.out:
        cli.check_writable(args.out, folder=True, inputs=[args.path])
        explore(args.path, args.out, args.seed)
    else:
        explore_counts(args.path)


if __name__ == "__main__":
    cli.run(main, "explore.py")
