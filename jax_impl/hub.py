"""The JAX twin of hubconf.py: a ResNet and its variables, freshly initialised or with committed weights.

    from jax_impl.hub import resnet
    model, variables = resnet(32, pretrained=True)
    logits = model.apply(variables, images, train=False)     # NHWC float32, train mean subtracted

pretrained=True loads the same file as torch.hub.load(..., "resnet32", pretrained=True) (cifar_core.pretrained).
"""

from __future__ import annotations

from cifar_core import weights
from cifar_core.pretrained import pretrained_weights

from .checkpoint import from_neutral
from .model import ResNet, init_variables


def resnet(depth: int = 32, pretrained: bool = False, seed: int = 0) -> tuple[ResNet, dict]:
    """(ResNet-`depth`, its {"params", "batch_stats"}): He-initialised from `seed`, or the committed weights."""
    model = ResNet(depth)
    if not pretrained:
        return model, init_variables(model, seed)
    tensors, _, _ = weights.read(pretrained_weights(depth))
    return model, from_neutral(tensors)
