"""5. Per-step losses: from identical weights, both backends train STEPS steps on the core's plan (real
CIFAR-10 when CIFAR10_DIR is set, a synthetic stand-in otherwise), across both lr drops (the recipe's
milestones at 50% and 75% of STEPS), with momentum and weight decay. float64: losses agree to 1e-9 at every
step; weights (running statistics included, worst tensor) agree to 1e-10 after EARLY steps and to
FINAL_WEIGHTS_TOL after all STEPS.

The lockstep test (harness.lockstep_train) hands PyTorch's whole state to JAX before every step, so each step
is compared on its own to 1e-10 and no rounding compounds; at full size, where free-running trajectories
cannot stay within 1e-9 (below), it is the per-step check of scripts/parity_report.py.

Why the final weights get a wider bound, measured (scripts/parity_report.py repeats it at full size): PyTorch's
CPU BatchNorm computes its float64 batch mean and inverse std to ~1e-13 relative (against a long-double
reference; XLA's are ~1e-16), so the two backends' float64 trajectories start ~1e-13 apart at the first BN
layer. SGD at lr 0.1 is chaotic: the gap grows ~10% a step (1e-13 at step 0, 1e-9 by step 80 on real
CIFAR-10 at batch 32, ResNet-8), on losses and weights alike. A broken convention (BN momentum, weight decay
after momentum, lr schedule, padding, init) moves the final weights by 1e-3 or more.

float32: a training step's gradient is not a continuous function of rounding (a ReLU input within float32
rounding of zero takes either side of the kink), and training amplifies every difference, so float32
trajectories leave the float64 one at random: measured on real CIFAR-10 (ResNet-8, batch 16), both backends
stay ~1e-7 from float64 for the first steps, then one or the other jumps (1e-6 to 1e-4 by step 5, 1e-2 by
step 10), and by step 200 both have decorrelated (|loss32 - loss64| ~0.2: the same recipe, another
trajectory). So float32 is compared over the first FLOAT32_STEPS steps only, each backend within
FLOAT32_GROWTH x the float32 error of the very first loss (a forward pass, no step yet): at most one unit of
float32 rounding per step and a 10x margin. A backend that computed in lower precision (JAX's TF32 default on
GPUs, bf16) would be off by ~1e-3 at step 0 already.
"""

import numpy as np
import pytest

from . import harness
from .conftest import BATCH, DEPTH, STEPS

pytestmark = pytest.mark.slow  # float64 training in lockstep over many steps

FLOAT32_STEPS = 3
FLOAT32_GROWTH = 10 * FLOAT32_STEPS
EARLY = 10
FINAL_WEIGHTS_TOL = 1e-7


@pytest.fixture(scope="module")
def setup(weights0):
    recipe = harness.Recipe(depth=DEPTH, batch_size=BATCH, iterations=STEPS)
    batches, source = harness.train_batches(recipe, STEPS)
    return recipe, batches, source


@pytest.fixture(scope="module")
def float64_runs(weights0, setup):
    recipe, batches, _ = setup
    return (harness.torch_train_losses(weights0, batches, recipe),
            harness.jax_train_losses(weights0, batches, recipe))


def test_recipe_crosses_both_lr_drops(setup):
    recipe, _, _ = setup
    assert recipe.milestones == (STEPS // 2, 3 * STEPS // 4)
    assert len({recipe.lr_at(s) for s in range(STEPS)}) == 3


def test_per_step_losses_float64(float64_runs):
    (torch_losses, _), (jax_losses, _) = float64_runs
    assert len(torch_losses) == len(jax_losses) == STEPS
    harness.assert_close(jax_losses, torch_losses, 1e-9)
    assert torch_losses[-1] < torch_losses[0]  # it trained


def test_weights_after_early_steps_float64(weights0, setup, float64_tol):
    recipe, batches, _ = setup
    _, torch_weights = harness.torch_train_losses(weights0, batches[:EARLY], recipe)
    _, jax_weights = harness.jax_train_losses(weights0, batches[:EARLY], recipe)
    harness.assert_close(jax_weights, torch_weights, float64_tol)
    assert harness.max_relative_error(torch_weights, weights0) > 1e-3  # the weights moved


def test_final_weights_float64(weights0, float64_runs):
    (_, torch_final), (_, jax_final) = float64_runs
    harness.assert_close(jax_final, torch_final, FINAL_WEIGHTS_TOL)
    assert harness.max_relative_error(torch_final, weights0) > 1e-2  # the weights moved


@pytest.fixture(scope="module")
def lockstep(weights0, setup):
    recipe, batches, _ = setup
    return harness.lockstep_train(weights0, batches, recipe, float32_losses=True)


def test_lockstep_every_step_float64(lockstep, float64_tol):
    """Each of the STEPS steps taken by both backends from PyTorch's state: loss, weights with running
    statistics, and momentum buffers agree, so no step of the schedule (lr drops included) differs."""
    assert len(lockstep["jax_losses"]) == STEPS
    harness.assert_close(lockstep["jax_losses"], lockstep["torch_losses"], 1e-9)
    assert max(lockstep["weights_error"]) < float64_tol
    assert max(lockstep["momentum_error"]) < float64_tol
    harness.assert_close(lockstep["jax_final"], lockstep["torch_final"], float64_tol)


def test_lockstep_float32_losses(lockstep):
    """float32 losses at every lockstep state (a forward pass each): JAX as close to float64 as PyTorch."""
    from .test_function import FLOAT32_FACTOR
    reference = np.asarray(lockstep["torch_losses"])
    torch_dev = np.max(np.abs(np.asarray(lockstep["torch32_losses"]) - reference) / reference)
    jax_dev = np.max(np.abs(np.asarray(lockstep["jax32_losses"]) - reference) / reference)
    assert 0 < torch_dev < 1e-5  # float32 rounding, neither float64 nor worse than float32
    assert jax_dev <= FLOAT32_FACTOR * torch_dev


def test_per_step_losses_float32_within_float32_noise(weights0, setup, float64_runs):
    recipe, batches, _ = setup
    (reference, _), _ = float64_runs
    reference = np.asarray(reference[:FLOAT32_STEPS])
    torch32, _ = harness.torch_train_losses(weights0, batches[:FLOAT32_STEPS], recipe, np.float32)
    jax32, _ = harness.jax_train_losses(weights0, batches[:FLOAT32_STEPS], recipe, np.float32)
    torch_dev, jax_dev = np.abs(torch32 - reference), np.abs(jax32 - reference)
    first_step_noise = max(torch_dev[0], jax_dev[0])
    assert 0 < first_step_noise < 1e-5  # float32 rounding, neither float64 nor worse than float32
    assert torch_dev.max() <= FLOAT32_GROWTH * first_step_noise
    assert jax_dev.max() <= FLOAT32_GROWTH * first_step_noise
