"""The JAX twin of hubconf.py: a ResNet and its variables, freshly initialised or with committed weights, and the
preprocessing those weights expect.

    from jax_impl.hub import resnet, transform
    model, variables = resnet(32, pretrained=True)
    logits = model.apply(variables, transform(32)(images), train=False)   # images: uint8 NHWC (or NCHW)

pretrained=True loads the same file as torch.hub.load(..., "resnet32", pretrained=True) (cifar_core.pretrained).
"""

from __future__ import annotations

import jax.numpy as jnp

from cifar_core import weights
from cifar_core.pretrained import preprocess, pretrained_mean_image, pretrained_weights

from .checkpoint import from_neutral
from .model import ResNet, init_variables


def resnet(depth: int = 32, pretrained: bool = False, seed: int = 0) -> tuple[ResNet, dict]:
    """(ResNet-`depth`, its {"params", "batch_stats"}): He-initialised from `seed`, or the committed weights."""
    model = ResNet(depth)
    if not pretrained:
        return model, init_variables(model, seed)
    tensors, _, _ = weights.read(pretrained_weights(depth))
    return model, from_neutral(tensors)


def transform(depth: int = 32):
    """The preprocessing of the pretrained ResNet-`depth`: uint8 images (NHWC or NCHW) -> float32 NHWC in [0, 1]
    minus the mean image its weights carry."""
    mean = pretrained_mean_image(depth)
    return lambda images: jnp.asarray(preprocess(images, mean))
