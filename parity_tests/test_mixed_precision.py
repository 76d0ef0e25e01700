"""bf16 mixed precision (--amp bf16 in both trainers): from the same weights, each backend's bf16 logits lie
within bf16 rounding of its float32 logits, the two backends' bf16 errors are of one size, the parameters and
BN running statistics stay float32, and BN takes its batch statistics of bf16 activations in float32.

The tolerance comes from bf16's 8-bit significand: one rounding moves a value by at most u = 2^-8 of itself.
Along the longest path each of the `depth` weighted layers (the stem, 6n convolutions, the linear layer) rounds
its input and its weights, then its result, and BN or the residual sum rounds again: n = 4 * depth roundings.
BN rescales every layer's output to unit size, so an error relative to a tensor's scale is carried on, not
amplified. Independent roundings add like a random walk, sqrt(n) * u rather than n * u (Higham and Mary,
"A new approach to probabilistic rounding error analysis", SIAM J. Sci. Comput. 2019). The global average
pool then averages the body's errors over the 8x8 positions, so the logits sit well inside the bound; and
float32 is ~1e-7 from the float64 result (test_function.py), so an error above u / 8 shows bf16 was used.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from . import harness

BF16_UNIT_ROUNDOFF = 2.0 ** -8  # 8 significant bits, round to nearest
ROUNDINGS_PER_LAYER = 4  # a layer's input, its weights, its result; BN's output or the residual sum
BF16_FACTOR = 2  # the backends round at the same places: their bf16 errors differ by less than this factor


def bf16_tolerance(depth: int) -> float:
    return math.sqrt(ROUNDINGS_PER_LAYER * depth) * BF16_UNIT_ROUNDOFF


@pytest.mark.parametrize("depth", [8, 14])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_bf16_logits_within_bf16_rounding_of_float32(depth, train):
    tensors = harness.initial_weights(depth, seed=0)
    images, _ = harness.train_batches(harness.Recipe(depth=depth, batch_size=16), 1)[0][0]
    torch32, _ = harness.torch_forward(tensors, images, train, np.float32)
    jax32, _ = harness.jax_forward(tensors, images, train, np.float32)
    torch16, torch_after = harness.torch_forward(tensors, images, train, np.float32, amp=True)
    jax16, jax_after = harness.jax_forward(tensors, images, train, np.float32, amp=True)
    torch_err, jax_err = harness.relative_error(torch16, torch32), harness.relative_error(jax16, jax32)
    tol = bf16_tolerance(depth)
    assert BF16_UNIT_ROUNDOFF / 8 < torch_err < tol and BF16_UNIT_ROUNDOFF / 8 < jax_err < tol, (torch_err, jax_err)
    assert jax_err <= BF16_FACTOR * torch_err and torch_err <= BF16_FACTOR * jax_err
    for after in (torch_after, jax_after):
        assert {str(t.dtype) for t in after.values()} == {"float32"}


@pytest.mark.parametrize("forward", [harness.torch_forward, harness.jax_forward], ids=["torch", "jax"])
def test_bn_statistics_of_bf16_activations_are_taken_in_float32(forward):
    """Under bf16 the first BN's statistics are float32 sums of the bf16 stem output, not bf16 ones. The stem is
    made to pass one image channel through at its centre tap, and the images lie near 300, where bf16's values
    are 2 apart: a mean or variance taken or kept in bf16 would be off by up to 1 or 1/32, a few 1e-3 of itself.
    The running statistics must equal float64 statistics of the same rounded values to far better than that."""
    tensors = harness.initial_weights(8, seed=0)
    stem = np.zeros_like(tensors["conv1.weight"])  # OIHW: output channel c copies input channel c % 3
    for c in range(stem.shape[0]):
        stem[c, c % 3, 1, 1] = 1.0
    tensors["conv1.weight"] = stem
    rng = np.random.default_rng(0)
    images = (300 + 3 * rng.standard_normal((16, 32, 32, 3))).astype(np.float32)
    _, after = forward(tensors, images, True, np.float32, amp=True)
    rounded = np.asarray(jnp.asarray(images, jnp.bfloat16), np.float64)  # the stem's bf16 output, channel by channel
    channels = rounded[..., [c % 3 for c in range(stem.shape[0])]].reshape(-1, stem.shape[0])
    momentum = 0.1
    expected_mean = momentum * channels.mean(0)
    expected_var = (1 - momentum) + momentum * channels.var(0, ddof=1)
    tol = BF16_UNIT_ROUNDOFF / 16
    np.testing.assert_allclose(after["bn1.running_mean"], expected_mean, rtol=tol)
    np.testing.assert_allclose(after["bn1.running_var"], expected_var, rtol=tol)
