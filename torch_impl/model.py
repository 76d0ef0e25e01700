"""ResNet-(6n+2) for CIFAR-10, He et al. 2015 §4.2, in PyTorch. Mirror: jax_impl/model.py.

conv3x3(16) -> BN -> ReLU -> 3 stages of n basic blocks (16, 32, 64 filters; the first block of stages 2
and 3 has stride 2) -> global average pool -> linear(10). No dropout; BN after every conv, before the ReLU.

Option-A shortcut: identity where shapes match; where they change, the input is subsampled with stride 2
(x[:, :, ::2, ::2]) and zero channels are appended AFTER the existing ones (the layout of the paper's Torch
code, fb.resnet.torch, which concatenates the subsampled input with zeros). No shortcut parameters.

Initialisation (identical in JAX):
- conv: He normal, not truncated, std = sqrt(2 / fan_out), fan_out = 3*3*out_channels, as the paper's
  reference code (fb.resnet.torch) does; with ReLU either fan mode keeps activations stable in depth, and
  fan_out keeps the backward pass's gradient variance constant.
- linear: weight U(-1/sqrt(64), 1/sqrt(64)) (PyTorch's and Torch7's default for a 64-input layer), bias 0
  (fb.resnet.torch zeroes it).
- BN: gamma 1, beta 0, eps 1e-5, running-average momentum 0.1 (Flax: 0.9).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from cifar_core.recipe import DOWNSAMPLING

STAGE_WIDTHS = (16, 32, 64)
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def he_init_(module: nn.Module) -> None:
    """He normal (fan_out) for a conv, gamma 1 and beta 0 for a BN; other modules are left as they are. The
    init of fb.resnet.torch and of torchvision's ResNets."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, norm_layer=nn.BatchNorm2d,
                 downsample: str = "stride"):
        super().__init__()
        # downsample="maxpool": a block that halves the resolution max-pools its input 2x2 first, both branches
        # then see the pooled map and the conv has stride 1; "none": it does not halve it (ablation, question 5).
        self.pool = stride == 2 and downsample == "maxpool"
        self.stride = stride if downsample == "stride" else 1
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=self.stride, padding=1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.extra_channels = planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.extra_channels == 0:
            return x
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # zeros after the existing channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool:
            x = F.max_pool2d(x, 2)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """The paper's network; the keyword options (Recipe.model_options) default to it and exist for the
    ablations (results/ablations.md): BN's eps and momentum, how stages downsample, a ReLU on the logits."""

    def __init__(self, depth: int = 32, num_classes: int = 10, *, logit_relu: bool = False, bn_eps: float = BN_EPS,
                 bn_momentum: float = BN_MOMENTUM, downsample: str = "stride"):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth {depth} is not 6n+2 (8, 20, 32, 44, 56, 110, ...)")
        if downsample not in DOWNSAMPLING:
            raise ValueError(f"downsample {downsample!r}: choose one of {', '.join(DOWNSAMPLING)}")
        n = (depth - 2) // 6
        self.depth = depth
        self.logit_relu = logit_relu
        norm_layer = functools.partial(nn.BatchNorm2d, eps=bn_eps, momentum=bn_momentum)  # as torchvision's
        self.conv1 = nn.Conv2d(3, STAGE_WIDTHS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = norm_layer(STAGE_WIDTHS[0])
        in_planes = STAGE_WIDTHS[0]
        for stage, width in enumerate(STAGE_WIDTHS, start=1):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, width, 2 if stage > 1 and j == 0 else 1, norm_layer, downsample))
                in_planes = width
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.fc = nn.Linear(STAGE_WIDTHS[-1], num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            he_init_(module)
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        logits = self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return F.relu(logits) if self.logit_relu else logits


def resnet(depth: int, seed: int | None = None, **options) -> ResNet:
    """A freshly initialised ResNet-`depth` (`options`: ResNet's keyword options); with `seed`, its weights depend
    on nothing else."""
    if seed is None:
        return ResNet(depth, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ResNet(depth, **options)


def build(recipe, seed: int | None = None) -> nn.Module:
    """The network a recipe trains: the paper's ResNet-(6n+2) with its model options, or, for the ablation of
    question 6 and the ladder, torchvision's ImageNet ResNet-18 with recipe.imagenet_head outputs (its init: He
    normal fan_out convs, BN 1 and 0, PyTorch's default linear layer)."""
    if recipe.architecture == "imagenet-resnet18":
        from torchvision.models import resnet18  # imported here: the CIFAR networks do without it
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed if seed is None else seed)
            return resnet18(num_classes=recipe.imagenet_head)
    return resnet(recipe.depth, recipe.seed if seed is None else seed, **recipe.model_options())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------- cross-device BN


class _AllReduceSum(torch.autograd.Function):
    """all_reduce(SUM) whose backward is again an all_reduce(SUM) of the incoming gradients."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BN whose batch statistics span all ranks: the CPU (gloo) stand-in for nn.SyncBatchNorm, which
    only runs on accelerators. Mean and variance of the global batch (biased for normalising, unbiased for the
    running variance, as nn.BatchNorm2d), gradients flowing through the all-reduce."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        # Two passes (global mean, then global mean squared deviation), as jax_impl's BatchNorm: the one-pass
        # E[x^2] - E[x]^2 cancels badly once |mean| >> std.
        c = x.shape[1]
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dim=(0, 2, 3)), count]))
        total = sums[-1]
        mean = sums[:c] / total
        var = _AllReduceSum.apply(torch.square(x - mean.view(1, c, 1, 1)).sum(dim=(0, 2, 3))) / total
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * total / (total - 1))
            self.num_batches_tracked.add_(1)
        shape = (1, c, 1, 1)
        x_hat = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return x_hat * self.weight.view(shape) + self.bias.view(shape)


def convert_to_cross_rank_bn(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by its cross-rank twin: nn.SyncBatchNorm on CUDA, our gloo version on CPU."""
    if next(model.parameters()).is_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = CrossRankBatchNorm2d(child.num_features, child.eps, child.momentum,
                                               device=child.weight.device, dtype=child.weight.dtype)
            replacement.load_state_dict(child.state_dict())
            setattr(model, name, replacement)
        else:
            convert_to_cross_rank_bn(child)
    return model
