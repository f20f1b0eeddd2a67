"""Grad-CAM (Selvaraju et al. 2017), by hand with hooks: which parts of a face drove the network's decision.

    python gradcam.py --weights model.pth --data PATH [--split test] [--n 8] [--out gradcam.png]
    python gradcam.py --weights model.pth --images me.jpg you.png [--class happy] [--layer stage2]

For the chosen class c and a layer with activations A (channels k): weights a_k = mean over positions of
d logit_c / d A_k; the map is ReLU(sum_k a_k A_k), upsampled to 48x48 and scaled to [0, 1] per image.
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

import data
import model as models


def gradcam(net, x, layer, classes=None):
    """Maps [B, 48, 48] in [0, 1] and logits [B, 7] for normalised images x [B, 1, 48, 48].
    `layer` names a module of `net` (e.g. "stage3.3"); `classes` is a class per image, default the predicted.
    In eval mode every image is independent (BatchNorm uses its running statistics), so a batch gives the
    same maps as its images one by one. The weights' .grad stay untouched: backward runs into x only."""
    module = dict(net.named_modules()).get(layer)
    if module is None:
        raise ValueError(f"no layer {layer!r}")
    kept = {}

    def keep_activation(mod, inputs, output):
        kept["act"] = output
        output.register_hook(lambda grad: kept.__setitem__("grad", grad))  # the gradient reaching this output

    hook = module.register_forward_hook(keep_activation)
    was_training = net.training
    try:
        net.eval()
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            logits = net(x)
            target = logits.argmax(1) if classes is None else torch.as_tensor(classes, device=x.device).expand(len(x))
            logits.gather(1, target[:, None]).sum().backward(inputs=[x])
    finally:
        hook.remove()
        net.train(was_training)
    act, grad = kept["act"].detach(), kept["grad"]
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp(min=1e-12)[:, None, None]
    return cam / peak, logits.detach()


def pick(labels, pred, n, seed):
    """n indices, half of them predicted right and half wrong where there are enough of each."""
    rng = np.random.default_rng(seed)
    right = np.flatnonzero(pred == labels)
    wrong = np.flatnonzero(pred != labels)
    n_wrong = min(len(wrong), n // 2)
    n_right = min(len(right), n - n_wrong)
    n_wrong = min(len(wrong), n - n_right)
    chosen = np.concatenate([rng.choice(right, n_right, replace=False), rng.choice(wrong, n_wrong, replace=False)])
    return rng.permutation(chosen).astype(np.int64)


def draw(images, maps, probs, titles, path, layer, truth=None):
    """Each face above its heat-map overlay, with true/predicted label and confidence, like the report's Fig. 10."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n + 0.8, 4.6), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        axes[0, i].set_title(titles[i], fontsize=8)
        axes[1, i].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        heat = axes[1, i].imshow(maps[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        top = int(probs[i].argmax())
        wrong = truth is not None and top != truth[i]
        axes[1, i].set_title(f"pred {data.CLASSES[top]} {100 * probs[i][top]:.0f}%", fontsize=8,
                             color="tab:red" if wrong else "black")
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("face", fontsize=9)
    axes[1, 0].set_ylabel(f"Grad-CAM ({layer})", fontsize=9)
    fig.colorbar(heat, ax=axes[1, :].tolist(), fraction=0.02, pad=0.01, label="importance")
    data.atomic_write(path, lambda t: fig.savefig(t, dpi=130, bbox_inches="tight"))
    plt.close(fig)


def parse_class(text):
    if text is None:
        return None
    if text.isdigit() and int(text) < len(data.CLASSES):
        return int(text)
    if text.lower() in data.CLASSES:
        return data.CLASSES.index(text.lower())
    raise argparse.ArgumentTypeError(f"{text!r} is not a class (0-6 or one of {', '.join(data.CLASSES)})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.error = lambda msg: p.exit(2, f"gradcam.py: error: {msg}\n")
    p.add_argument("--weights", required=True)
    p.add_argument("--data", default="data/fer2013.csv", help="as train.py's --data")
    p.add_argument("--split", choices=["test", "val", "train"], help="default: test if the data has one, else val")
    p.add_argument("--images", nargs="+", metavar="IMAGE", help="explain these image files instead")
    p.add_argument("--n", type=int, default=8, help="how many images from the split")
    p.add_argument("--layer", help="the module to explain (default: the last residual block)")
    p.add_argument("--class", dest="cls", type=parse_class, help="explain this class instead of the predicted")
    p.add_argument("--out", default="gradcam.png")
    p.add_argument("--seed", type=int, default=0, help="which images --n picks")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = p.parse_args(argv)
    if args.n <= 0:
        p.error("--n must be positive")
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    net, name = models.load_weights(args.weights, device)
    if not args.layer and name not in models.TARGET_LAYERS:
        p.error(f"{args.weights} holds a {name!r} network, which has no convolutional layer to explain")
    layer = args.layer or models.TARGET_LAYERS[name]
    if layer not in dict(net.named_modules()):
        p.error(f"--layer {layer}: no such module; try one of "
                f"{', '.join(n for n, m in net.named_modules() if isinstance(m, models.ResidualBlock))}")

    if args.images:
        images = torch.from_numpy(np.stack([data.read_image(f) for f in args.images]))
        titles = [os.path.basename(f)[:18] for f in args.images]
        truth = None
    else:
        if args.data != "synthetic" and not os.path.exists(args.data):
            p.error(f"--data {args.data}: no such file or folder")
        splits = data.load(args.data)
        split = args.split or ("test" if "test" in splits else "val")
        if split not in splits:
            p.error(f"--split {split}: {args.data} has no {split} split (it has {', '.join(splits)})")
        all_images, labels = splits[split]
        with torch.no_grad():
            pred = torch.cat([net(x).argmax(1).cpu() for x in data.batches(all_images, 512, device)])
        idx = torch.from_numpy(pick(labels.numpy(), pred.numpy(), args.n, args.seed))
        images = all_images[idx]
        titles = [f"true {data.CLASSES[int(labels[i])]}" for i in idx]
        truth = labels[idx].tolist()
    maps, logits = gradcam(net, next(data.batches(images, len(images), device)), layer, args.cls)
    probs = F.softmax(logits.float(), 1).cpu().numpy()
    draw(images.numpy(), maps.cpu().numpy(), probs, titles, args.out, layer, truth)
    for t, pr in zip(titles, probs):
        print(f"{t}: predicted {data.CLASSES[int(pr.argmax())]} {100 * pr.max():.1f}%")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    try:
        main()
    except (data.DataError, models.WeightsError) as e:
        sys.exit(f"gradcam.py: {e}")
