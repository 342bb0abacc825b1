"""DeepZero (ICLR'24): ResNet-20 for CIFAR-10, the ZO runtime's reference workload.

Architecture: He et al. 2016 CIFAR ResNet (3 stages x 3 basic blocks, 16/32/64 channels, option-B
1x1 projection shortcuts where the shape changes), as used by DeepZero (OPTML-Group/DeepZero).
The `paper` config has ~0.27 M parameters; `tiny` halves the width for tests and the demo.
"""

from __future__ import annotations

import numpy as np

from tridesign.models.registry import ModelSpec, register

RESNET20_WIDTHS = {"tiny": 8, "paper": 16}


def build_resnet20(config: str = "paper", num_classes: int = 10, in_channels: int = 3):
    """ResNet-20 (3 stages of 3 basic blocks) at the width of `config`."""
    import torch.nn as nn

    width = RESNET20_WIDTHS[config]

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + self.shortcut(x))

    class ResNet20(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU()
            layers, cin = [], width
            for stage, cout in enumerate((width, 2 * width, 4 * width)):
                blocks = []
                for b in range(3):
                    stride = 2 if (stage > 0 and b == 0) else 1
                    blocks.append(BasicBlock(cin, cout, stride))
                    cin = cout
                layers.append(nn.Sequential(*blocks))
            self.layer1, self.layer2, self.layer3 = layers
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(cin, num_classes)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(self.pool(x).flatten(1))

    return ResNet20()


def resnet20_macs(width: int = 16, num_classes: int = 10, hw: int = 32, in_channels: int = 3) -> int:
    """Dense multiply-accumulates of ResNet-20 counted layer by layer (conv, shortcut, fc; no BN/ReLU)."""
    macs = in_channels * width * 9 * hw * hw
    cin = width
    for stage, cout in enumerate((width, 2 * width, 4 * width)):
        for b in range(3):
            stride = 2 if (stage > 0 and b == 0) else 1
            if stride == 2:
                hw //= 2
            macs += cin * cout * 9 * hw * hw + cout * cout * 9 * hw * hw
            if stride != 1 or cin != cout:
                macs += cin * cout * hw * hw
            cin = cout
    return macs + cin * num_classes


def _cifar_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input": rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)}


register(
    ModelSpec(
        name="resnet20",
        project="DeepZero",
        task="image classification (CIFAR-10, 32x32)",
        build=build_resnet20,
        example_inputs=_cifar_inputs,
        output_names=("logits",),
        published_params=269_722,
        published_source="He et al. 2016, Table 6 (ResNet-20: 0.27 M); DeepZero uses it for CIFAR-10",
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
)
