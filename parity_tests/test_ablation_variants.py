"""The ablations' departures from the paper (results/ablations.md) compute the same function in both backends:
from identical weights and batches, EARLY float64 steps of each variant give the same losses (1e-9) and weights
(float64_tol), as the paper's recipe does in test_training.py, and differ from the paper's recipe's (so the
option reached the network or the optimiser)."""

import dataclasses

import pytest

from . import harness
from .conftest import BATCH, DEPTH

pytestmark = pytest.mark.slow  # float64 training in lockstep over many steps

EARLY = 10
VARIANTS = {
    "adam": {"optimizer": "adam", "lr": 1e-3},
    "logit-relu": {"logit_relu": True},
    "bn-eps-0.1": {"bn_eps": 0.1},
    "bn-momentum-0.01": {"bn_momentum": 0.01},
    "maxpool-downsampling": {"downsample": "maxpool"},
    "no-downsampling": {"downsample": "none"},
}


@pytest.fixture(scope="module")
def paper_run(weights0):
    recipe = harness.Recipe(depth=DEPTH, batch_size=BATCH, iterations=4 * EARLY)
    batches, _ = harness.train_batches(recipe, EARLY)
    return recipe, batches, harness.torch_train_losses(weights0, batches, recipe)


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_trains_alike_in_both_backends_float64(name, weights0, paper_run, float64_tol):
    paper, batches, (paper_losses, paper_weights) = paper_run
    recipe = dataclasses.replace(paper, **VARIANTS[name])
    torch_losses, torch_weights = harness.torch_train_losses(weights0, batches, recipe)
    jax_losses, jax_weights = harness.jax_train_losses(weights0, batches, recipe)
    harness.assert_close(jax_losses, torch_losses, 1e-9)
    harness.assert_close(jax_weights, torch_weights, float64_tol)
    assert harness.max_relative_error(torch_weights, paper_weights) > 1e-6  # the variant is not the paper's recipe
