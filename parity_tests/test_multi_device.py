"""6. Multi-device: JAX on 4 (virtual CPU) devices and PyTorch DDP on 2 gloo processes, in both BN modes,
float64, from the same weights on the same global batches.

- cross-device BN (JAX bn axis / PyTorch SyncBN): every configuration computes the single-device function,
  so JAX x4, JAX x1, PyTorch DDP x2 and PyTorch x1 all agree.
- per-device BN: the result depends on how the batch is split, so JAX runs on 2 of its 4 devices to match
  the 2 DDP ranks (each device/rank normalises its own half; running statistics follow device/rank 0).
"""

import jax
import numpy as np
import pytest

from . import harness

DEPTH, BATCH, STEPS = 8, 16, 12
TOL = 1e-10


@pytest.fixture(scope="module")
def setup(weights0):
    if jax.device_count() < 4:
        pytest.fail("needs 4 CPU devices: run pytest from the repository root (conftest.py sets XLA_FLAGS)")
    recipe = harness.Recipe(depth=DEPTH, batch_size=BATCH, iterations=STEPS)
    batches, _ = harness.train_batches(recipe, STEPS)
    single_torch = harness.torch_train_losses(weights0, batches, recipe)
    return recipe, batches, single_torch


def assert_same(run, reference):
    (losses, weights), (ref_losses, ref_weights) = run, reference
    harness.assert_close(losses, ref_losses, TOL)
    harness.assert_close(weights, ref_weights, TOL)


def test_jax_four_devices_cross_bn_equals_one_device(weights0, setup):
    recipe, batches, single_torch = setup
    one = harness.jax_train_losses(weights0, batches, recipe, num_devices=1)
    four = harness.jax_train_losses(weights0, batches, recipe, num_devices=4, cross_device_bn=True)
    assert_same(four, one)
    assert_same(four, single_torch)


@pytest.mark.slow
def test_torch_ddp_sync_bn_equals_one_process_and_jax(weights0, setup):
    recipe, batches, single_torch = setup
    ddp = harness.torch_ddp_train_losses(weights0, batches, recipe, world=2, sync_bn=True)
    assert_same(ddp, single_torch)
    assert_same(ddp, harness.jax_train_losses(weights0, batches, recipe, num_devices=4, cross_device_bn=True))


@pytest.mark.slow
def test_per_device_bn_jax_equals_torch_ddp(weights0, setup):
    recipe, batches, single_torch = setup
    ddp = harness.torch_ddp_train_losses(weights0, batches, recipe, world=2, sync_bn=False)
    jax_two = harness.jax_train_losses(weights0, batches, recipe, num_devices=2, cross_device_bn=False)
    assert_same(jax_two, ddp)
    # and per-device BN really is a different function from the single-device one
    assert harness.relative_error(ddp[0], single_torch[0]) > 1e-6


@pytest.mark.parametrize("num_devices, cross_device_bn", [(1, False), (4, True), (2, False)])
def test_jax_two_program_step_equals_one_program(weights0, setup, num_devices, cross_device_bn):
    """On CPU jax_impl runs each step as two programs (forward; backward and update) so that XLA keeps the
    activations instead of recomputing them; that must compute exactly what the one-program step computes."""
    recipe, batches, _ = setup
    (one_losses, one_weights), (two_losses, two_weights) = (
        harness.jax_train_losses(weights0, batches, recipe, num_devices=num_devices,
                                 cross_device_bn=cross_device_bn, split=split) for split in (False, True))
    assert two_losses == one_losses
    assert two_weights.keys() == one_weights.keys()
    for name in one_weights:
        np.testing.assert_array_equal(two_weights[name], one_weights[name], err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("num_devices, cross_device_bn", [(1, False), (4, True)])
def test_jax_scanned_steps_equal_single_steps(weights0, setup, num_devices, cross_device_bn):
    """Several steps per jitted call (jax_impl.train.train_steps: a lax.scan that gathers, crops and flips each
    batch from the split on the devices) compute exactly what one step per call on host-materialised batches
    computes: the same weights, bit for bit, and the same losses."""
    recipe, batches, _ = setup
    stream, _ = harness.train_stream(recipe)
    per_call = 5  # 12 steps: calls of 5, 5 and 2
    losses, weights = harness.jax_train_losses(weights0, batches, recipe, num_devices=num_devices,
                                               cross_device_bn=cross_device_bn, split=False)
    scanned_sums, scanned_weights = harness.jax_scanned_train(weights0, stream, recipe, STEPS, per_call,
                                                              num_devices=num_devices,
                                                              cross_device_bn=cross_device_bn)
    loss_sums = [BATCH * sum(losses[i:i + per_call]) for i in range(0, STEPS, per_call)]
    assert scanned_sums == pytest.approx(loss_sums, rel=1e-13)
    assert scanned_weights.keys() == weights.keys()
    for name in weights:
        np.testing.assert_array_equal(scanned_weights[name], weights[name], err_msg=name)
