"""Grad-CAM (Selvaraju et al. 2017), by hand with hooks: which parts of a face drove the network's decision.

    python gradcam.py --weights model.pth --data PATH --out gradcam.png [--split test] [--n 8]
    python app/photos.py --weights model.pth --images photo.jpg --gradcam gradcam.png    your photos' faces

For the chosen class c and a layer with activations A (channels k): weights a_k = mean over positions of
d logit_c / d A_k; the map is ReLU(sum_k a_k A_k), upsampled to 48x48 and scaled to [0, 1] per image.
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import cli
import data
import model
import peers
import weights

# The layer each network is explained at by default: its last convolutional block before the classifier.
TARGET_LAYERS = {model.ResNet: "stage3.3", model.VGG: "features.26", peers.VGGBase: "features.20",
                 peers.CNN3: "features.12", peers.CNN2: "features.4"}  # the MLP has no spatial layer


class LayerError(ValueError):
    """The layer asked for does not exist in the network or gives no spatial map to explain."""


def gradcam(net, x, layer, classes=None):
    """Maps [B, 48, 48] in [0, 1] and logits [B, 7] for normalised images x [B, 1, 48, 48]. `layer` names a
    module of `net` (e.g. "stage3.3"); `classes` is a class per image, default the predicted. In eval mode
    every image is independent (BatchNorm uses its running statistics), so a batch gives the same maps as
    its images one by one. The gradient is taken with respect to the kept activation alone
    (torch.autograd.grad), so backward stops at that layer instead of running down to the image: the same
    maps, sooner. The weights' .grad are untouched. Every submodule's
    train/eval flag is restored afterwards, and it works inside torch.inference_mode() too."""
    module = dict(net.named_modules()).get(layer)
    if module is None:
        raise LayerError(f"no layer {layer!r}")
    kept = {}
    hook = module.register_forward_hook(lambda mod, inputs, output: kept.__setitem__("act", output))
    modes = {m: m.training for m in net.modules()}
    try:
        net.eval()
        with torch.inference_mode(False), torch.enable_grad():
            logits = net(x.detach().clone())  # a clone outside inference mode: a tensor autograd may use
            act = kept["act"]
            if act.dim() != 4:
                raise LayerError(f"layer {layer!r} gives a {list(act.shape[1:])} output, not a spatial map")
            target = logits.argmax(1) if classes is None else \
                torch.as_tensor(classes, device=x.device).expand(len(x))
            grad, = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), act)
    finally:
        hook.remove()
        for m, training in modes.items():
            m.training = training
    act = act.detach()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp(min=1e-12)[:, None, None]
    return cam / peak, logits.detach()


def conv_layers(net):
    """The layers worth explaining, in forward order: residual blocks, else the activation after each conv."""
    names = [n for n, m in net.named_modules() if isinstance(m, model.ResidualBlock)]
    return names or [n for n, m in net.named_modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))
                     and n.startswith("features.")]


def pick(labels, pred, n, seed):
    """n indices, half of them predicted right and half wrong where there are enough of each."""
    rng = np.random.default_rng(seed)
    right = np.flatnonzero(pred == labels)
    wrong = np.flatnonzero(pred != labels)
    n_wrong = min(len(wrong), n // 2)
    n_right = min(len(right), n - n_wrong)
    n_wrong = min(len(wrong), n - n_right)
    chosen = np.concatenate([rng.choice(right, n_right, replace=False),
                             rng.choice(wrong, n_wrong, replace=False)])
    return rng.permutation(chosen).astype(np.int64)


def draw(images, maps, probs, titles, path, layer, truth=None, explained=None):
    """figure(...) written to `path` (its format from the name)."""
    import matplotlib.pyplot as plt
    fig = figure(images, maps, probs, titles, layer, truth, explained)
    cli.atomic_write(path, lambda t: fig.savefig(t, dpi=130, bbox_inches="tight"))
    plt.close(fig)


def figure(images, maps, probs, titles, layer, truth=None, explained=None):
    """Each face above its heat-map overlay, with true/predicted label and confidence, like the report's Fig.
    10. The colour bar has a column of its own, so every overlay sits under its face. `explained`: the
    class each map explains (default the predicted); a map that is all zero says so on its panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(images)
    fig, axes = plt.subplots(2, n + 1, figsize=(1.9 * n + 0.8, 4.6), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * n + [0.07]})
    for i in range(n):
        axes[0, i].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        axes[0, i].set_title(titles[i], fontsize=8)
        axes[1, i].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        heat = axes[1, i].imshow(maps[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        top = int(probs[i].argmax())
        wrong = truth is not None and top != truth[i]
        shown = f"pred {data.CLASSES[top]} {100 * probs[i][top]:.0f}%"
        if explained is not None and explained[i] != top:  # the map explains the asked class, not the answer
            asked = explained[i]
            shown = f"map: {data.CLASSES[asked]} {100 * probs[i][asked]:.0f}%\n{shown}"
        axes[1, i].set_title(shown, fontsize=8, color="tab:red" if wrong else "black")
        if not maps[i].any():  # ReLU removed everything: the layer holds no evidence *for* this class
            cls = data.CLASSES[top if explained is None else explained[i]]
            axes[1, i].text(0.5, 0.5, f"no positive\nevidence for\n{cls} at\n{layer}",
                            transform=axes[1, i].transAxes,
                            ha="center", va="center", fontsize=7, color="white",
                            bbox={"facecolor": "black", "alpha": 0.6, "linewidth": 0})
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("face", fontsize=9)
    axes[1, 0].set_ylabel(f"Grad-CAM ({layer}): " + ("predicted class" if explained is None else
                          f"class {data.CLASSES[explained[0]]}"), fontsize=9)
    axes[0, n].axis("off")
    fig.colorbar(heat, cax=axes[1, n], label="importance")
    return fig


def layer_to_explain(p, net, asked, source):
    """The module --layer names, by default the network's last convolutional block (TARGET_LAYERS); a wrong
    name is a one-line error that lists the right ones."""
    name = type(net).__name__
    if not asked and type(net) not in TARGET_LAYERS:
        p.error(f"{source} holds a {name!r} network, which has no convolutional layer to explain")
    layer = asked or TARGET_LAYERS[type(net)]
    if layer not in dict(net.named_modules()) or layer == "":
        p.error(f"--layer {layer}: no such module in this {name} network; "
                f"try one of {', '.join(conv_layers(net))}")
    return layer


def explain(p, net, images, titles, layer, cls, out, device, truth=None, probs=None):
    """Grad-CAM of uint8 faces [N, 48, 48], drawn to `out` with a line per face; the predictions shown are
    the network's on each face as it is, or `probs` where the caller has its own (with TTA, say)."""
    try:
        maps, logits = gradcam(net, next(data.batches(images, len(images), device)), layer, cls)
    except LayerError as e:
        p.error(f"--layer {layer}: {e}; try one of {', '.join(conv_layers(net))}")
    probs = F.softmax(logits.float() / getattr(net, "temperature", 1.0), 1).cpu().numpy() if probs is None else probs
    draw(images.numpy(), maps.cpu().numpy(), probs, titles, out, layer, truth,
         None if cls is None else [cls] * len(images))
    for t, pr in zip(titles, probs):
        print(f"{t}: predicted {data.CLASSES[int(pr.argmax())]} {100 * pr.max():.1f}%")
    print(f"wrote {out}")


IMAGE_FORMATS = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def parse_class(text):
    if text is None:
        return None
    if text.isdigit() and int(text) < len(data.CLASSES):
        return int(text)
    if text.lower() in data.CLASSES:
        return data.CLASSES.index(text.lower())
    raise argparse.ArgumentTypeError(f"{text!r} is not a class (0-6 or one of {', '.join(data.CLASSES)})")


def make_parser():
    p = cli.parser("gradcam.py", __doc__)
    p.add_argument("--weights", required=True, help="a model.pth")
    p.add_argument("--data", default="data/fer2013.csv", help="as train.py's --data")
    p.add_argument("--split", choices=data.SPLIT_CHOICES, help="default: as evaluate.py's")
    p.add_argument("--n", type=cli.positive_int, default=8, help="how many images from the split")
    p.add_argument("--layer", help="the module to explain (default: the last residual block)")
    p.add_argument("--class", dest="cls", type=parse_class,
                   help="explain this class instead of the predicted")
    p.add_argument("--out", required=True, help="the figure to write (.png, .jpg, .pdf, .svg)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="which images --n picks")
    cli.add_device_flag(p)
    return p


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    if os.path.splitext(args.out)[1].lower() not in IMAGE_FORMATS:
        p.error(f"--out {args.out}: name an image file ({', '.join(IMAGE_FORMATS)})")
    device = cli.pick_device(args.device)
    cli.check_writable(args.out, inputs=[args.weights, args.data])
    net, _ = weights.load(args.weights, device)
    layer = layer_to_explain(p, net, args.layer, args.weights)

    splits = data.load(args.data, whole=True)
    split, all_images, labels = data.choose_split(splits, args.split, args.data)
    pred = model.predict_proba([net], all_images, device).argmax(1)
    idx = torch.from_numpy(pick(labels.numpy(), pred.numpy(), args.n, args.seed))
    print(f"{len(idx)} faces from {splits.title(split)}"
          f"{f' (--n {args.n}, but it holds only {len(idx)})' if len(idx) < args.n else ''}")
    titles = [f"true {data.CLASSES[int(labels[i])]}" for i in idx]
    explain(p, net, all_images[idx], titles, layer, args.cls, args.out, device, truth=labels[idx].tolist())


if __name__ == "__main__":
    cli.run(main, "gradcam.py")
