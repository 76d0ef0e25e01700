"""ResNet-(6n+2) for CIFAR-10, He et al. 2015 §4.2, in Flax Linen. Mirror: torch_impl/model.py.

Functional: `model.init(key, x, train=False)` gives {"params", "batch_stats"}; `model.apply(variables, x,
train=True, mutable=["batch_stats"])` returns logits and the updated statistics. Inputs are NHWC.

Every choice equals the PyTorch model's; the Flax defaults that differ are overridden on purpose:
- padding: explicit ((1, 1), (1, 1)). Flax's 'SAME' pads a stride-2 conv (0, 1), PyTorch pads (1, 1).
- conv init: He normal with fan_out and NO truncation (jax's he_normal truncates; Flax defaults to lecun).
- linear init: weight U(-1/sqrt(64), 1/sqrt(64)), bias 0 (Flax's Dense defaults to lecun_normal).
- BatchNorm: our own small module, because PyTorch updates the running variance with the UNBIASED batch
  variance (n/(n-1)) while normalising with the biased one; Flax's nn.BatchNorm uses the biased variance for
  both. Its momentum is PyTorch's 0.1, the new batch's weight in the running averages (Flax's nn.BatchNorm
  writes the same as momentum=0.9, the old average's weight); eps 1e-5.
- Option-A shortcut: x[:, ::2, ::2, :] with the zero channels appended after the existing ones.
- conv_kernels: "xla" runs the convolutions as lax.conv_general_dilated; "onednn" (CPU, float32 or bfloat16) through
  jax_impl/cpu_conv.py, the same function on oneDNN's faster kernels. Parameters are the same either way.
- dtype and param_dtype, as in Flax's ImageNet example: the convolutions and the linear layer compute in `dtype`,
  parameters and BN statistics are kept in `param_dtype`. dtype=bfloat16 is the trainer's --amp bf16 and does
  what PyTorch's bf16 autocast does to this network: BN computes its statistics and normalises in float32 and
  returns the input's dtype; ReLUs, the residual sums and the pooling run in bfloat16.
Module names map one to one onto PyTorch's: layer{s}_{j} <-> layer{s}.{j} (jax_impl/checkpoint.py).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cifar_core.recipe import DOWNSAMPLING

STAGE_WIDTHS = (16, 32, 64)
BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # PyTorch's convention, the new batch's weight (Flax's nn.BatchNorm would say 0.9)

conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # "normal" is untruncated


CONV_KERNELS = ("xla", "onednn")


def conv_function(conv_kernels: str):
    """flax.linen.Conv's conv_general_dilated for `conv_kernels` (None: Flax's default, lax's)."""
    if conv_kernels not in CONV_KERNELS:
        raise ValueError(f"conv_kernels {conv_kernels!r}: choose one of {', '.join(CONV_KERNELS)}")
    if conv_kernels == "xla":
        return None
    from . import cpu_conv
    cpu_conv.require()
    return cpu_conv.conv_general_dilated


def linear_init(fan_in: int):
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


class BatchNorm(nn.Module):
    """BN over N, H, W with PyTorch's conventions; `axis_name` makes the batch statistics cross-device.
    `momentum` is PyTorch's too: the new batch's weight in the running averages."""

    axis_name: str | None = None
    param_dtype: Any = jnp.float32
    eps: float = BN_EPS
    momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, x, train: bool):
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), self.param_dtype)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), self.param_dtype)
        # A bfloat16 input is normalised in float32 and the result rounded back, as PyTorch's batch_norm does
        # under bf16 autocast (float32 accumulation, output in the input's dtype).
        out_dtype, x = x.dtype, x.astype(jnp.promote_types(x.dtype, self.param_dtype))
        if train:
            # Two passes (mean, then mean squared deviation), as PyTorch computes it: the one-pass
            # E[x^2] - E[x]^2 (Flax's use_fast_variance) cancels badly once |mean| >> std.
            mean = jnp.mean(x, axis=(0, 1, 2))
            if self.axis_name is not None:
                mean = jax.lax.pmean(mean, self.axis_name)
            var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
            count = x.size // features
            if self.axis_name is not None:
                var = jax.lax.pmean(var, self.axis_name)
                count = count * jax.lax.axis_size(self.axis_name)
            if not self.is_initializing():
                keep = 1 - self.momentum
                running_mean.value = keep * running_mean.value + self.momentum * mean
                running_var.value = keep * running_var.value + self.momentum * var * (count / (count - 1))
        else:
            mean, var = running_mean.value, running_var.value
        return ((x - mean) * jax.lax.rsqrt(var + self.eps) * scale + bias).astype(out_dtype)


ModuleDef = Callable[..., nn.Module]


class BasicBlock(nn.Module):
    planes: int
    stride: int
    conv: ModuleDef  # a 3x3 nn.Conv with the model's padding, init, dtypes and kernels bound (ResNet.__call__)
    norm: ModuleDef  # BatchNorm with the model's options bound
    downsample: str = "stride"  # as torch_impl's BasicBlock: "maxpool" pools 2x2 first, "none" keeps the resolution

    @nn.compact
    def __call__(self, x, train: bool):
        stride = self.stride if self.downsample == "stride" else 1
        if self.stride == 2 and self.downsample == "maxpool":
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        out = nn.relu(self.norm(name="bn1")(self.conv(self.planes, strides=(stride, stride), name="conv1")(x), train))
        out = self.norm(name="bn2")(self.conv(self.planes, name="conv2")(out), train)
        shortcut = x
        extra_channels = self.planes - x.shape[-1]
        if stride != 1 or extra_channels:
            shortcut = x[:, ::stride, ::stride, :]
            shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (0, extra_channels)))  # zeros after
        return nn.relu(out + shortcut)


class ResNet(nn.Module):
    depth: int = 32
    num_classes: int = 10
    bn_axis_name: str | None = None  # set to the data axis for cross-device BN
    dtype: Any = jnp.float32  # of the convolutions and the linear layer: bfloat16 for --amp bf16
    param_dtype: Any = jnp.float32  # of the parameters and BN statistics: float64 for the parity suite
    conv_kernels: str = "xla"  # or "onednn": CPU, float32 (conv_function)
    # The ablations' options (Recipe.model_options; results/ablations.md), the paper's by default, as torch_impl's.
    logit_relu: bool = False
    bn_eps: float = BN_EPS
    bn_momentum: float = BN_MOMENTUM  # PyTorch's convention
    downsample: str = "stride"

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(f"depth {self.depth} is not 6n+2 (8, 20, 32, 44, 56, 110, ...)")
        if self.downsample not in DOWNSAMPLING:
            raise ValueError(f"downsample {self.downsample!r}: choose one of {', '.join(DOWNSAMPLING)}")
        n = (self.depth - 2) // 6
        chex.assert_rank(x, 4)
        chex.assert_axis_dimension(x, 3, 3)  # NHWC: a PyTorch-style NCHW batch stops here, not inside a conv
        conv = functools.partial(nn.Conv, kernel_size=(3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                                 kernel_init=conv_init, dtype=self.dtype, param_dtype=self.param_dtype,
                                 conv_general_dilated=conv_function(self.conv_kernels))
        norm = functools.partial(BatchNorm, self.bn_axis_name, self.param_dtype, self.bn_eps, self.bn_momentum)
        x = x.astype(self.param_dtype)  # the convolution rounds it to `dtype`, as autocast does
        x = nn.relu(norm(name="bn1")(conv(STAGE_WIDTHS[0], name="conv1")(x), train))
        for stage, width in enumerate(STAGE_WIDTHS, start=1):
            for j in range(n):
                stride = 2 if stage > 1 and j == 0 else 1
                x = BasicBlock(width, stride, conv, norm, self.downsample, name=f"layer{stage}_{j}")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(self.num_classes, kernel_init=linear_init(STAGE_WIDTHS[-1]), bias_init=nn.initializers.zeros,
                          dtype=self.dtype, param_dtype=self.param_dtype, name="fc")(x)
        return nn.relu(logits) if self.logit_relu else logits


def init_variables(model: ResNet, seed: int) -> dict:
    """{"params", "batch_stats"} of a fresh model; a function of `seed` alone."""
    return model.init(jax.random.key(seed), jnp.zeros((1, 32, 32, 3), model.param_dtype), train=False)


def count_parameters(params) -> int:
    return sum(int(p.size) for p in jax.tree.leaves(params))
