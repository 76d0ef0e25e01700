"""3-4. The same weights give the same logits (train and eval mode), the same BN running statistics after a
train-mode forward, and the same gradients, in float64 to ~1e-10 and in float32 to measured float32 noise.

BN's running variance: PyTorch updates it with the unbiased batch variance (n / (n - 1), n = N*H*W) while
normalising with the biased one; jax_impl.model.BatchNorm does the same. Flax's nn.BatchNorm would use the
biased variance, a relative error of 1/(n-1), ~3e-5 at batch 32: far above the float64 tolerance, so the
running-statistics check below fails if the convention is lost.

float32: both backends are compared with the shared float64 result. Each backend's float32 error must be
within FLOAT32_FACTOR of the other's: both are then as accurate as float32 allows, and a backend that computed
in lower precision (TF32, bf16) or with a different algorithm of worse conditioning would stand out.
Gradients are compared in float64 only: in float32 they are not a continuous function of the rounding. At
ResNet-8, batch 32, one of layer3.0.bn1's 131,072 pre-ReLU activations lies within float32 rounding of 0 and
takes the other side of the kink in PyTorch float32 than in float64 (JAX float32 happens to agree with float64),
which moves that one gradient entry by its full size, and every gradient upstream of it by up to 1e-2
relative. Losses and logits are continuous and are compared in float32 (here and in test_training.py).
"""

import numpy as np
import pytest

from . import harness

FLOAT32_FACTOR = 8  # a single pass: float32 errors of two correct implementations differ by a small factor


def float32_errors(torch32, jax32, reference):
    return harness.relative_error(torch32, reference), harness.relative_error(jax32, reference)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_logits_and_running_stats_float64(weights0, batch, train, float64_tol):
    images, _ = batch
    torch_logits, torch_after = harness.torch_forward(weights0, images, train)
    jax_logits, jax_after = harness.jax_forward(weights0, images, train)
    harness.assert_close(jax_logits, torch_logits, float64_tol)
    harness.assert_close(jax_after, torch_after, float64_tol)
    if train:  # the statistics did move, so the comparison above tested the update
        assert not np.allclose(torch_after["bn1.running_mean"], weights0["bn1.running_mean"])


def test_gradients_float64(weights0, batch, float64_tol):
    images, labels = batch
    torch_loss, torch_grads = harness.torch_gradients(weights0, images, labels)
    jax_loss, jax_grads = harness.jax_gradients(weights0, images, labels)
    assert abs(torch_loss - jax_loss) / torch_loss < float64_tol
    assert set(torch_grads) == set(jax_grads)
    for name in torch_grads:
        harness.assert_close(jax_grads[name], torch_grads[name], float64_tol, name)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_logits_float32_within_float32_noise(weights0, batch, train):
    images, _ = batch
    reference, _ = harness.torch_forward(weights0, images, train)
    torch32, _ = harness.torch_forward(weights0, images, train, np.float32)
    jax32, _ = harness.jax_forward(weights0, images, train, np.float32)
    torch_err, jax_err = float32_errors(torch32, jax32, reference)
    assert 0 < torch_err < 1e-4 and 0 < jax_err < 1e-4  # float32, not float64 and not worse than float32
    assert jax_err <= FLOAT32_FACTOR * torch_err and torch_err <= FLOAT32_FACTOR * jax_err


def test_chex_assert_close_names_the_tensor_that_differs():
    """The parity comparisons (harness.assert_close): chex checks every tensor against its own scale and names the
    one that is off; within the tolerance they pass."""
    expected = {"conv1.weight": np.array([1.0, -2.0, 4.0]), "fc.bias": np.array([1e-3, 0.0])}
    harness.assert_close({"conv1.weight": np.array([1.0, -2.0, 4.0 + 2e-10]), "fc.bias": np.array([1e-3, 5e-14])},
                         expected, 1e-10)
    with pytest.raises(AssertionError, match="fc.bias"):
        harness.assert_close({**expected, "fc.bias": np.array([1e-3, 1e-12])}, expected, 1e-10)
    with pytest.raises(AssertionError, match="different names"):
        harness.assert_close({"conv1.weight": expected["conv1.weight"]}, expected, 1e-10)
