"""Someone else's weights as this project's weights file: a bare state_dict (what torch.save(net.state_dict())
writes), or a dict holding one (under "model_state_dict" or any other key), whose names and shapes fit exactly
one network here; DistributedDataParallel's "module." and torch.compile's "_orig_mod." are taken off the names,
and an output layer trained with another class order ("classes": ["Anger", "HAPPY", ...]) gets its rows in
FER2013's order. The file written is what every script reads.

    python tools/adopt_weights.py theirs.pth ours.pth [--interpolation bilinear]
"""
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
import data  # noqa: E402
import model  # noqa: E402
import readers  # noqa: E402
import weights  # noqa: E402


def is_state_dict(obj):
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def bare(state):
    """Names as the bare network has them."""
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in state.items()}


def fitting(state):
    """The networks whose parameter names and shapes are exactly those of `state`."""
    shapes = {k: tuple(v.shape) for k, v in bare(state).items()}
    return [n for n, make in weights.NETWORKS.items() if {k: tuple(v.shape) for k, v in make().state_dict().items()}
            == shapes]


def adopt(path):
    """(network, its name) from someone else's file."""
    blob = weights.read_file(path)
    inner = [blob] if is_state_dict(blob) else [v for v in blob.values() if is_state_dict(v)] \
        if isinstance(blob, dict) else []
    fits = [(s, fitting(s)) for s in inner]
    fits = [(s, names[0]) for s, names in fits if len(names) == 1]
    if len(fits) != 1:
        raise weights.WeightsError(f"{path}: holds {'no' if not fits else 'more than one'} state_dict that fits exactly "
                                   f"one network here ({', '.join(weights.NETWORKS)})")
    state, name = fits[0]
    net = weights.NETWORKS[name]()
    weights.load_state(net, bare(state), path)
    classes = [str(c) for c in (blob.get("classes") if isinstance(blob, dict) and "classes" in blob else data.CLASSES)]
    index = [readers.class_index(c, data.CLASSES) for c in classes]  # "Anger", "HAPPY": as class folders name them
    if sorted(i for i in index if i is not None) != list(range(len(data.CLASSES))) or len(index) != len(data.CLASSES):
        raise weights.WeightsError(f"{path}: its classes {classes} are not FER2013's seven ({', '.join(data.CLASSES)})")
    with torch.no_grad():
        for p in model.output_layer(net).parameters():
            p.copy_(p[torch.tensor([index.index(i) for i in range(len(data.CLASSES))])])
    return net, name


def main(argv=None):
    p = cli.parser("adopt_weights.py", __doc__)
    p.add_argument("source", help="someone else's .pth")
    p.add_argument("out", help="the weights file to write")
    p.add_argument("--interpolation", choices=["nearest", "bilinear"], default="bilinear",
                   help="how its training warped faces, if you know (TTA resamples its views so)")
    args = p.parse_args(argv)
    cli.check_writable(args.out, inputs=[args.source])
    net, name = adopt(args.source)
    weights.save(args.out, net, name, {"recipe": f"adopted from {args.source}", "interpolation": args.interpolation})
    print(f"{args.source}: a {name} network -> {args.out}")


if __name__ == "__main__":
    cli.run(main, "adopt_weights.py")
