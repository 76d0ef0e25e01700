"""7. Evaluation: the final weights of the committed real runs (results/runs/*), converted through the neutral
format, give the same predictions in both backends.

A fixed sample is evaluated on the whole CIFAR-10 test set, and there the backend that did not train gets the test
error the run recorded in final.json: the seed-0 JAX ResNet-32 run here, and the PyTorch run the hub serves in
tests/test_hub.py (a JAX model of PyTorch's weights, from the raw test images). Every other run is checked on the
first 1,000 test images, so a run added to results/runs costs the suite seconds, not a minute. CROSS_EVALUATE=all
evaluates every run on the whole test set."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cifar_core.pretrained import pretrained_weights

from . import harness

RUNS = Path(__file__).resolve().parent.parent / "results" / "runs"
CHECKPOINTS = sorted(RUNS.glob("*/checkpoints/final.safetensors"))
SAMPLE = {"jax_impl-resnet32-64k-seed0"}
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


def test_the_sample_is_committed_and_covers_both_directions():
    """The whole-test-set sample names runs that exist, so the slow check above cannot silently shrink, and with the
    hub's ResNet-32 (tests/test_hub.py) it has a run of each backend evaluated by the other."""
    assert SAMPLE <= {run_name(p) for p in CHECKPOINTS}
    hub_run = pretrained_weights(32).parent.parent
    trained_by = {json.loads((RUNS / name / "final.json").read_text())["backend"] for name in SAMPLE | {hub_run.name}}
    assert trained_by == {"torch_impl", "jax_impl"}, f"add a run of the missing backend to SAMPLE: {trained_by}"
