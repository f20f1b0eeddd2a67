"""A run's curves, like the report's Figure 8: loss, accuracy and learning rate per epoch, from its history.csv,
during the run or after it. A run that trained on its validation faces (--train-on-val) gets no "best val" figure.

    python tools/curves.py runs/<stamp>            writes runs/<stamp>/curves.png
"""
import json
import os
import sys

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402


def plot_curves(out, history, trained_on_val=False):
    """Loss, accuracy and learning rate per epoch of a run's history rows, drawn to out/curves.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    h, best = pd.DataFrame(history).set_index("epoch"), max(history, key=lambda r: r["val_acc"])
    h[["train_loss", "val_loss"]].plot(ax=axes[0], title="Cross-entropy loss", grid=True)
    (100 * h[["train_acc", "val_acc"]]).plot(ax=axes[1], grid=True, title="Accuracy (%, val faces trained on too)"
                                             if trained_on_val else f"Accuracy (%): best val {100 * best['val_acc']:.2f}% @ {best['epoch']}")
    h["lr"].plot(ax=axes[2], logy=True, title="Learning rate", grid=True, color="tab:green")
    fig.tight_layout()
    cli.atomic_write(os.path.join(out, "curves.png"), lambda t: fig.savefig(t, dpi=110))
    plt.close(fig)


def main(argv=None):
    p = cli.parser("curves.py", __doc__)
    p.add_argument("run", help="a train.py output folder")
    p.add_argument("--out", help="where curves.png goes (default: the run folder)")
    args = p.parse_args(argv)
    try:
        history = pd.read_csv(os.path.join(args.run, "history.csv")).to_dict("records")
        on_val = json.load(open(os.path.join(args.run, "config.json"))).get("train_on_val", False)
        assert history and {"epoch", "train_loss", "val_loss", "train_acc", "val_acc", "lr"} <= set(history[0])
    except (OSError, ValueError, AssertionError, pd.errors.ParserError) as e:
        raise cli.UserError(f"{args.run}: no readable history.csv and config.json of a train.py run "
                            f"({type(e).__name__})") from None
    cli.check_writable(args.out or args.run, folder=True)
    plot_curves(args.out or args.run, history, on_val)
    print(f"wrote {os.path.join(args.out or args.run, 'curves.png')}")


if __name__ == "__main__":
    cli.run(main, "curves.py")
