"""The lr warm-up (He et al. §4.2, ResNet-110; cifar_core.loop.WarmUp) across its end: from identical weights,
both backends train STEPS steps in float64 at WARMUP_LR, with a record every LOG_EVERY steps, until a record's
running train error is below THRESHOLD, then at the recipe's lr; JAX also with several steps per call, as on a
GPU. Both end the warm-up at the same step, give every step the same lr, and agree on every record's train error
(exactly), its summed loss (1e-9) and the final weights (1e-10).

The data are the synthetic stand-in whatever CIFAR10_DIR says: THRESHOLD is chosen from its train errors (0.875,
0.9375, 0.917, 0.854 at steps 3 to 12), so that the warm-up outlasts three records and ends with steps to spare.
"""

import pytest

from cifar_core.synthetic import make_dataset

from . import harness
from .conftest import BATCH, DEPTH

pytestmark = pytest.mark.slow  # float64 training in lockstep over many steps

STEPS, LOG_EVERY, STEPS_PER_CALL = 18, 3, 4
WARMUP_LR, THRESHOLD = 0.01, 0.86


@pytest.fixture(scope="module")
def runs(weights0):
    # iterations: the paper's, so that no milestone falls within STEPS and the end of the warm-up raises the lr
    recipe = harness.Recipe(depth=DEPTH, batch_size=BATCH, log_every=LOG_EVERY, warmup_lr=WARMUP_LR,
                            warmup_until_train_error=THRESHOLD)
    stream, _ = harness.train_stream(recipe, make_dataset(2000, 200))
    return (recipe, harness.torch_warmup_train(weights0, stream, recipe, STEPS),
            {per_call: harness.jax_warmup_train(weights0, stream, recipe, STEPS, per_call)
             for per_call in (1, STEPS_PER_CALL)})


def test_the_warmup_ends_within_the_steps(runs):
    recipe, torch_run, _ = runs
    ended = torch_run["ended_at"]
    assert LOG_EVERY < ended < STEPS  # records at the warm-up lr before its end, and steps after it
    assert torch_run["lrs"] == [WARMUP_LR] * ended + [recipe.lr] * (STEPS - ended)
    errors = {step: error for step, _, error in torch_run["records"]}
    assert all(error >= THRESHOLD for step, error in errors.items() if step < ended) and errors[ended] < THRESHOLD


@pytest.mark.parametrize("per_call", [1, STEPS_PER_CALL])
def test_both_backends_take_the_same_steps_across_the_end_of_the_warmup(runs, per_call, float64_tol):
    _, torch_run, jax_runs = runs
    jax_run = jax_runs[per_call]
    assert jax_run["ended_at"] == torch_run["ended_at"]
    assert jax_run["lrs"] == torch_run["lrs"]
    assert [r[::2] for r in jax_run["records"]] == [r[::2] for r in torch_run["records"]]  # steps, train errors
    harness.assert_close([r[1] for r in jax_run["records"]], [r[1] for r in torch_run["records"]], 1e-9)
    harness.assert_close(jax_run["final"], torch_run["final"], float64_tol)
