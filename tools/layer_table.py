"""A network's layer table as the report's Appendix 1 prints it: each layer's output shape and parameters, and the
total (the report's network: 3,817,079).

    python tools/layer_table.py [--model vgg]
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
from model import MODELS, count_parameters  # noqa: E402


def layer_table(net, input_size=(1, 1, 48, 48)):
    """Rows of (name, type, output shape, parameters held directly), like the report's Appendix 1."""
    rows, hooks = [], []
    for name, m in net.named_modules():
        if name == "":
            continue

        def hook(mod, inp, out, name=name):
            direct = sum(p.numel() for p in mod.parameters(recurse=False))
            if isinstance(mod, nn.Sequential):  # the report counts a projection shortcut as one row
                direct = count_parameters(mod) if name.endswith("shortcut") else 0
            rows.append((name, type(mod).__name__, list(out.shape), direct))
        hooks.append(m.register_forward_hook(hook))
    order = {name: i for i, (name, _) in enumerate(net.named_modules())}
    with torch.no_grad():
        net.eval()(torch.zeros(input_size))
    for h in hooks:
        h.remove()
    return sorted(rows, key=lambda r: order[r[0]])


def main(argv=None):
    p = cli.parser("layer_table.py", __doc__)
    p.add_argument("--model", default="resnet", choices=list(MODELS))
    net = MODELS[p.parse_args(argv).model]()
    print(f"{'Layer (type)':<44}{'Output shape':>20}{'Param #':>14}")
    for name, kind, shape, n in layer_table(net):
        if "shortcut." in name or kind == "Identity":  # counted in the shortcut's own row / holds nothing
            continue
        print(f"{'  ' * name.count('.') + name.split('.')[-1] + ' (' + kind + ')':<44}{str(shape):>20}{n:>14,}")
    print(f"Total params: {count_parameters(net):,}")


if __name__ == "__main__":
    cli.run(main, "layer_table.py")
