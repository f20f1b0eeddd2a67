"""The networks. Each takes a batch of normalised grey 48x48 faces [B, 1, 48, 48] and returns logits [B, 7].

`resnet` is the report's network exactly (its Appendix 1, the layer table): 3,817,079 parameters, LeakyReLU,
Kaiming-normal init. One change: it returns logits. The report ended in a Softmax and then used
CrossEntropyLoss, which applies log-softmax again; the double softmax squashes the gradients and slows
learning, so the Softmax is gone (predictions are the same argmax; train.py --double-softmax puts it back).

Weights files live in checkpoint.py, prediction in inference.py; this file needs only torch.

    python model.py [--model NAME]      the layer table with output shapes and parameter counts
"""
import torch
import torch.nn as nn


def conv3x3(cin, cout):
    # No bias: a BatchNorm follows every conv (the report's 144 = 1*16*9 stem parameters say so too).
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """conv-BN-LeakyReLU-conv-BN, plus the shortcut, then LeakyReLU. The first block of a stage changes the
    width, so its shortcut is a 3x3 conv + BN projection (4,672 = 16*32*9 + 2*32 parameters in Appendix 1).
    Two LeakyReLU modules, as Appendix 1 lists them (neither holds a parameter)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.shortcut = nn.Sequential(conv3x3(cin, cout), nn.BatchNorm2d(cout)) if cin != cout else \
            nn.Identity()
        self.conv1, self.bn1, self.act1 = conv3x3(cin, cout), nn.BatchNorm2d(cout), nn.LeakyReLU()
        self.conv2, self.bn2, self.act2 = conv3x3(cout, cout), nn.BatchNorm2d(cout), nn.LeakyReLU()

    def forward(self, x):
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act2(y + self.shortcut(x))


def stage(cin, cout, blocks):
    layers = [ResidualBlock(cin if i == 0 else cout, cout) for i in range(blocks)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class ResNet(nn.Module):
    """Appendix 1: 48x48 -> stem 16 @24 -> 32 @12 -> 64 @6 -> 128 @3 -> 1152 -> 2048 -> 7.
    The report gives no dropout rates, so PyTorch's defaults (0.5) are used."""

    def __init__(self, num_classes=7, widths=(16, 32, 64, 128), blocks=(2, 3, 4), hidden=2048):
        super().__init__()
        self.stem = nn.Sequential(conv3x3(1, widths[0]), nn.BatchNorm2d(widths[0]), nn.LeakyReLU(),
                                  nn.MaxPool2d(2))
        self.stage1 = stage(widths[0], widths[1], blocks[0])
        self.stage2 = stage(widths[1], widths[2], blocks[1])
        self.stage3 = nn.Sequential(*stage(widths[2], widths[3], blocks[2]), nn.Dropout2d())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(widths[3] * 3 * 3, hidden), nn.LeakyReLU(),
                                  nn.Dropout(), nn.Linear(hidden, num_classes))
        kaiming_init(self)

    def forward(self, x):
        return self.head(self.stage3(self.stage2(self.stage1(self.stem(x)))))


def kaiming_init(net):
    """Kaiming-normal weights as the report, except the output layer, which starts at zero. Without the
    report's final Softmax, a Kaiming-initialised output layer starts with logits so large that the loss is
    ~9 instead of ln 7 = 1.95, and the network spends its first epochs only shrinking them
    (docs/differences.md)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.zeros_(output_layer(net).weight)


def output_layer(net):
    return [m for m in net.modules() if isinstance(m, nn.Linear)][-1]


def kaiming_output_layer(net):
    """The report's own start for the output layer, Kaiming-normal like every other layer: with its Softmax
    before the loss (train.py --double-softmax) the large first logits are squashed, not a loss of ~9."""
    nn.init.kaiming_normal_(output_layer(net).weight, nonlinearity="leaky_relu")


# ------------------------------------------------------------------------------------------------------------
# The peer reports' networks, rebuilt from their descriptions for the comparison table,
# and one stronger network of our own. Where a report leaves a size out, the choice is said in a comment.

def conv_bn_relu(cin, cout, k=3):
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGGBase(nn.Module):
    """Peer report 001's "base CNN": VGG-like 64,64,pool,128,pool,256x3,pool,512x3,pool, Dense 128, Dropout
    0.3, ReLU, no BatchNorm (Keras defaults: biases, 'same' padding). 64.5% with augmentation in that report.
    Initialised as Keras initialises it (Glorot-uniform weights, zero biases): under PyTorch's default
    (Kaiming-uniform with a=sqrt(5), weights ~3x smaller in variance for ReLU) this 10-conv network without
    BatchNorm never leaves the majority class (docs/results.md)."""

    def __init__(self, num_classes=7):
        super().__init__()
        plan = [64, 64, "M", 128, "M", 256, 256, 256, "M", 512, 512, 512, "M"]
        layers, cin = [], 1
        for v in plan:
            layers += [nn.MaxPool2d(2)] if v == "M" else \
                [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v if v != "M" else cin
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(512 * 3 * 3, 128), nn.ReLU(inplace=True),
                                  nn.Dropout(0.3), nn.Linear(128, num_classes))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.head(self.features(x))


class CNN3(nn.Module):
    """Peer report 004: three convs 64/128/256 (3x3) with BatchNorm, ReLU, 2x2 max-pool and Dropout 0.2, then FC 256.
    The report pools with stride 1, which would leave a 256x45x45 map (a 132M-weight FC layer); stride 2 is
    used. 60.2% validation accuracy after 200 epochs of SGD in that report."""

    def __init__(self, num_classes=7):
        super().__init__()
        layers, cin = [], 1
        for cout in (64, 128, 256):
            layers += [*conv_bn_relu(cin, cout), nn.MaxPool2d(2), nn.Dropout(0.2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(256 * 6 * 6, 256), nn.ReLU(inplace=True),
                                  nn.Dropout(0.2), nn.Linear(256, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class CNN2(nn.Module):
    """Peer report 002: conv 5x5 -> 64, conv 4x4 -> 32, then three dense layers with ReLU. The report gives no
    pooling or dense sizes: 2x2 max-pool after each conv and dense 256 -> 128 -> 7 are our choice. 51.8% in
    that report."""

    def __init__(self, num_classes=7):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 64, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 44 -> 22
                                      nn.Conv2d(64, 32, 4), nn.ReLU(inplace=True), nn.MaxPool2d(2))  # 19 -> 9
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 9 * 9, 256), nn.ReLU(inplace=True),
                                  nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class MLP(nn.Module):
    """Peer report 003's standard-ML baseline: scikit-learn's MLPClassifier(hidden_layer_sizes=(128, 64)), ReLU."""

    def __init__(self, num_classes=7):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 128), nn.ReLU(inplace=True),
                                 nn.Linear(128, 64), nn.ReLU(inplace=True), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.net(x)


class VGG(nn.Module):
    """Ours, after Khaireddin & Chen (2021, 73.28% single network from scratch): four stages of two 3x3 conv +
    BN + ReLU and a max-pool (64, 128, 256, 512), then two FC layers with dropout. Their FC layers are 4096
    wide; 512 keeps this at 7.3M parameters, so the shipped fp16 weights stay under 16 MB."""

    def __init__(self, num_classes=7, hidden=512):
        super().__init__()
        layers, cin = [], 1
        for cout in (64, 128, 256, 512):
            layers += [*conv_bn_relu(cin, cout), *conv_bn_relu(cout, cout), nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(512 * 3 * 3, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(0.2), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(0.2), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


# name -> constructor. TARGET_LAYERS: Grad-CAM's default layer, the last convolutional block before the
# classifier.
MODELS = {"resnet": ResNet, "vgg": VGG, "vgg_base": VGGBase, "cnn3": CNN3, "cnn2": CNN2, "mlp": MLP}
TARGET_LAYERS = {"resnet": "stage3.3", "vgg": "features.26", "vgg_base": "features.20", "cnn3": "features.12",
                 "cnn2": "features.4"}  # the MLP has no spatial layer to explain


def build(name):
    return MODELS[name]()


def count_parameters(net):
    return sum(p.numel() for p in net.parameters())


def fitting_networks(state):
    """The names of the networks whose parameter names and shapes are exactly those of a state_dict."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    return [name for name, make in MODELS.items()
            if {k: tuple(v.shape) for k, v in make().state_dict().items()} == shapes]


# ------------------------------------------------------------------------------------------------------------

def layer_table(net, input_size=(1, 1, 48, 48)):
    """Rows of (indented name, type, output shape, parameters held directly), like the report's Appendix 1."""
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
    rows.sort(key=lambda r: order[r[0]])
    return rows


def main(argv=None):
    import cli  # the command line only; the networks need nothing but torch
    p = cli.parser("model.py", "Print a network's layer table and parameter count.")
    p.add_argument("--model", default="resnet", choices=list(MODELS))
    args = p.parse_args(argv)
    net = build(args.model)
    print(f"{'Layer (type)':<44}{'Output shape':>20}{'Param #':>14}")
    for name, kind, shape, n in layer_table(net):
        if "shortcut." in name or kind == "Identity":  # counted in the shortcut's own row / holds nothing
            continue
        indent = "  " * name.count(".")
        print(f"{indent + name.split('.')[-1] + ' (' + kind + ')':<44}{str(shape):>20}{n:>14,}")
    print(f"Total params: {count_parameters(net):,}")


if __name__ == "__main__":
    import cli
    cli.run(main, "model.py")
