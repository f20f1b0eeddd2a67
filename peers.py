"""The four peer reports' networks, rebuilt from their descriptions (recipes: recipes/seeds/); where a report
leaves a size out, the choice is said."""
import torch.nn as nn

from model import conv_bn_relu


class VGGBase(nn.Module):
    """Report 001's "base CNN": 64,64,pool,128,pool,256x3,pool,512x3,pool, Dense 128, Dropout 0.3, ReLU, no
    BatchNorm, Keras's biases and init (Glorot-uniform, zero bias): under PyTorch's default init this 10-conv
    network without BatchNorm never leaves the majority class (docs/results.md)."""

    def __init__(self, num_classes=7):
        super().__init__()
        plan = [64, 64, "M", 128, "M", 256, 256, 256, "M", 512, 512, 512, "M"]
        layers, cin = [], 1
        for v in plan:
            layers += [nn.MaxPool2d(2)] if v == "M" else [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = cin if v == "M" else v
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
    """Report 004: three 3x3 convs 64/128/256 with BatchNorm, ReLU, 2x2 max-pool, Dropout 0.2, then FC 256. Its
    pooling stride 1 would leave a 256x45x45 map (a 132M-weight FC layer): stride 2 here."""

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
    """Report 002: conv 5x5 -> 64, conv 4x4 -> 32, three dense layers with ReLU; the 2x2 max-pools and the dense
    sizes 256 -> 128 -> 7, which it does not give, are our choice."""

    def __init__(self, num_classes=7):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 64, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 44 -> 22
                                      nn.Conv2d(64, 32, 4), nn.ReLU(inplace=True), nn.MaxPool2d(2))  # 19 -> 9
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 9 * 9, 256), nn.ReLU(inplace=True),
                                  nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class MLP(nn.Module):
    """Report 003's baseline: scikit-learn's MLPClassifier(hidden_layer_sizes=(128, 64)), ReLU."""

    def __init__(self, num_classes=7):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 128), nn.ReLU(inplace=True),
                                 nn.Linear(128, 64), nn.ReLU(inplace=True), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.net(x)


MODELS = {"vgg_base": VGGBase, "cnn3": CNN3, "cnn2": CNN2, "mlp": MLP}
