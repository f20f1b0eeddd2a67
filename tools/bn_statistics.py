"""How much of a network's score is its BatchNorm running statistics, and which training faces they fit:
recompute them from the training faces, drawn class-balanced as train.py's sampler draws them and warped as
training warps them (bilinear, nearest, or not at all), then score the split. Nothing is written.

    python tools/bn_statistics.py --weights weights/seeds/report.pth --data data/fer2013.csv

A network whose score rises when its statistics come from sharper faces than it trained on learned them on
faces unlike the test faces: that is how the bilinear warp was found to cost the report's network 2.6 points
(docs/results.md, docs/differences.md). The weights are untouched; only the statistics change.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import augment  # noqa: E402
import cli  # noqa: E402
import data  # noqa: E402
import inference  # noqa: E402

WARPS = ("bilinear", "nearest", "none")


def training_batches(images, labels, warp, generator, batch_size=512):
    """Normalised batches of the training faces, one class-balanced draw with replacement (the sampler's
    1/class-count weights), flipped and warped with the report's ranges unless warp is "none"."""
    weights = 1.0 / data.class_counts(labels).double()[labels]
    order = torch.multinomial(weights, len(labels), replacement=True, generator=generator)
    for i in range(0, len(order), batch_size):
        x = images[order[i:i + batch_size], None].float() / 255
        if warp != "none":
            x = augment.augment(x, generator, interpolation=warp)
        yield data.normalize(x).contiguous(memory_format=torch.channels_last)


def recompute_statistics(net, batches):
    """Every BatchNorm's running mean and variance, replaced by their plain average over `batches` (momentum
    None), in train mode for the BatchNorms only; the network is returned in eval mode."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        for x in batches:
            net(x)
    return net.eval()


def main(argv=None):
    p = cli.parser("bn_statistics.py", __doc__)
    p.add_argument("--weights", required=True, help="a weights file (model.pth, weights/*.pth)")
    p.add_argument("--data", required=True, help="the data it trained on, as train.py's --data")
    p.add_argument("--split", choices=data.SPLIT_CHOICES, help="the split to score (default: as evaluate.py)")
    p.add_argument("--seed", type=int, default=0, help="the draws of faces and warps")
    cli.add_device_flag(p)
    args = p.parse_args(argv)
    if args.data != "synthetic" and not os.path.exists(args.data):
        p.error(f"--data {args.data}: no such file or folder")
    device = cli.pick_device(args.device)
    splits = data.load_for_training(args.data)
    split, images, labels = data.choose_split(splits, args.split, args.data)

    def score(net):
        probs = inference.predict_proba([net], images, device)
        return 100 * (probs.argmax(1) == labels).float().mean().item()

    train_images, train_labels = (t.to(device) for t in splits["train"])
    net = inference.load_nets([args.weights], device)[0]
    print(f"{args.weights} on {splits.title(split)} ({len(labels)} faces)")
    print(f"  {'the statistics it shipped with':<48} {score(net):6.2f}%")
    for warp in WARPS:
        net = inference.load_nets([args.weights], device)[0]
        generator = torch.Generator(device).manual_seed(args.seed)
        recompute_statistics(net, training_batches(train_images, train_labels, warp, generator))
        what = "unwarped" if warp == "none" else f"warped {warp}"
        print(f"  {'recomputed from training faces ' + what:<48} {score(net):6.2f}%")


if __name__ == "__main__":
    cli.run(main, "bn_statistics.py")
