"""Scores of predictions against labels: accuracy, per-class precision/recall/F1 and the confusion matrix;
printed, drawn (the report's Figure 9) and recorded as evaluate.py's --json and tools/ship.py's
NAME_publictest.json."""
import numpy as np

import data
import files


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
    panels = ((axes[0], cm, "d", "counts"), (axes[1], norm, ".2f", "row-normalised (recall)"))
    for ax, mat, fmt, sub in panels:
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
    files.atomic_write(path, lambda t: fig.savefig(t, dpi=120))
    plt.close(fig)


def record(m, weights, splits, split, tta, path):
    """The scores with what was scored: the JSON's one shape."""
    return {**m, "split": split, "split_title": splits.title(split), "weights": list(weights), "tta": tta,
            "data": path}
