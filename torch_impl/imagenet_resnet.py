"""The ImageNet ResNet-18 (He et al. 2015, Table 1), laid out as torchvision.models.resnet18(num_classes=10):
the network people often reach for on CIFAR-10, and the answer to question 6 of results/ablations.md.

A 7x7 stride-2 conv and a 3x3 stride-2 max-pool shrink a 32x32 image to 8x8 before the first block; four
stages of two basic blocks (64, 128, 256, 512 filters; stages 2-4 start with stride 2, so the last runs at 1x1)
with projection shortcuts (1x1 conv + BN, option B) where the shape changes; global average pool; linear(10).
11,181,642 parameters (the paper's CIFAR ResNet-20: 269,722). Initialised as torchvision does: He normal
(fan_out) convs, BN 1 and 0, PyTorch's default linear layer. Used by the ablations only, in PyTorch only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import he_init_

WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.depth = 18
        self.conv1 = nn.Conv2d(3, WIDTHS[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_planes = WIDTHS[0]
        for stage, width in enumerate(WIDTHS, start=1):
            blocks = []
            for j in range(BLOCKS_PER_STAGE):
                blocks.append(BasicBlock(in_planes, width, 2 if stage > 1 and j == 0 else 1))
                in_planes = width
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.fc = nn.Linear(WIDTHS[-1], num_classes)
        for module in self.modules():
            he_init_(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet18(num_classes: int = 10) -> ResNet18:
    return ResNet18(num_classes)
