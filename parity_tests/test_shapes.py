"""1. Shapes: the two parameter trees map one to one, with equal shapes after the layout change."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cifar_core import weights
from jax_impl import checkpoint as jax_ckpt
from jax_impl.model import ResNet
from torch_impl.checkpoint import to_neutral
from torch_impl.model import count_parameters, resnet

PAPER_COUNTS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth", sorted(PAPER_COUNTS))
def test_trees_map_one_to_one_with_paper_counts(depth):
    torch_model = resnet(depth)
    torch_shapes = {k: v.shape for k, v in to_neutral(torch_model).items()}
    abstract = jax.eval_shape(lambda: ResNet(depth).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
    jax_shapes = {k: v.shape for k, v in jax_ckpt.to_neutral(
        jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)).items()}
    assert torch_shapes == jax_shapes == weights.layer_shapes(depth)
    jax_count = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(abstract["params"]))
    assert count_parameters(torch_model) == jax_count == weights.parameter_count(depth) == PAPER_COUNTS[depth]


def test_activation_shapes_match_per_stage():
    """conv1 32x32x16, stage 1 32x32x16, stage 2 16x16x32, stage 3 8x8x64, logits 10, in both backends."""
    import torch
    model = resnet(20).eval()
    seen = {}
    for name in ("bn1", "layer1", "layer2", "layer3", "fc"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape)))
    with torch.no_grad():
        model(torch.zeros(2, 3, 32, 32))
    assert seen == {"bn1": (2, 16, 32, 32), "layer1": (2, 16, 32, 32), "layer2": (2, 32, 16, 16),
                    "layer3": (2, 64, 8, 8), "fc": (2, 10)}
    flax_model = ResNet(20)
    variables = jax.eval_shape(lambda: flax_model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3))))
    _, state = jax.eval_shape(lambda v: flax_model.apply(v, jnp.zeros((2, 32, 32, 3)), capture_intermediates=True,
                                                         mutable=["intermediates"]), variables)
    inter = state["intermediates"]
    nhwc = {name: tuple(inter[name]["__call__"][0].shape) for name in ("bn1", "layer1_2", "layer2_2", "layer3_2", "fc")}
    assert nhwc == {"bn1": (2, 32, 32, 16), "layer1_2": (2, 32, 32, 16), "layer2_2": (2, 16, 16, 32),
                    "layer3_2": (2, 8, 8, 64), "fc": (2, 10)}


def test_jax_model_refuses_a_pytorch_layout_batch_chex():
    """chex at the model's boundary: an NCHW batch fails with the shape named, before any convolution."""
    model = ResNet(8)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)), train=False))
    with pytest.raises(AssertionError, match="equal to '3' on axis '3' but got '32'"):
        jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 3, 32, 32)), train=False), variables)
