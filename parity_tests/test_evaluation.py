"""7. Evaluation: the final weights of the committed real runs (results/runs/*), converted through the neutral
format, give the same predictions in both backends.

A fixed sample (the seed-0 ResNet-32 runs) is evaluated on the whole CIFAR-10 test set, and the backend that did
not train each gets the test error its run recorded in final.json; every other run is checked on the first 1,000
test images, so a run added to results/runs costs the suite seconds, not a minute. CROSS_EVALUATE=all evaluates
every run on the whole test set."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from . import harness

RUNS = Path(__file__).resolve().parent.parent / "results" / "runs"
CHECKPOINTS = sorted(RUNS.glob("*/checkpoints/final.safetensors"))
SAMPLE = {"torch_impl-resnet32-64k-seed0", "jax_impl-resnet32-64k-seed0"}
QUICK_IMAGES = 1000


def run_name(path: Path) -> str:
    return path.parent.parent.name


def whole_test_set(path: Path) -> bool:
    return os.environ.get("CROSS_EVALUATE") == "all" or run_name(path) in SAMPLE


@pytest.mark.slow
@pytest.mark.skipif(not CHECKPOINTS, reason="no committed run with final weights under results/runs")
@pytest.mark.parametrize("path", CHECKPOINTS, ids=run_name)
def test_same_predictions_on_the_test_set(path):
    if harness.real_data_dir() is None:
        pytest.skip("real CIFAR-10 not available: set CIFAR10_DIR")
    limit = None if whole_test_set(path) else QUICK_IMAGES
    torch_logits, jax_logits, labels = harness.test_set_logits(path, harness.real_data_dir(), limit)
    harness.assert_close(jax_logits, torch_logits, 1e-4)  # float32
    torch_pred, jax_pred = torch_logits.argmax(1), jax_logits.argmax(1)
    np.testing.assert_array_equal(jax_pred, torch_pred)
    if limit is None:
        final = json.loads((path.parent.parent / "final.json").read_text())
        other_backend_pred = {"torch_impl": jax_pred, "jax_impl": torch_pred}[final["backend"]]
        assert np.mean(other_backend_pred != labels) == pytest.approx(final["final_test_error"], abs=1e-12)


def test_the_sample_is_committed():
    """The whole-test-set sample names runs that exist, so the slow check above cannot silently shrink."""
    assert SAMPLE <= {run_name(p) for p in CHECKPOINTS}
