"""7. Evaluation: the final weights of the committed real runs (results/runs/*), converted through the neutral
format, give the same predictions in both backends.

Every run is checked in both backends on the first QUICK_IMAGES test images (one compilation per depth, so a run
added to results/runs costs the suite about a second). A fixed sample is evaluated on the whole CIFAR-10 test set
in the backend that did not train it, which must get the test error the run recorded in final.json: the seed-0
JAX ResNet-32 run here, and the PyTorch run the hub serves in tests/test_hub.py (a JAX model of PyTorch's weights,
from the raw test images). CROSS_EVALUATE=all evaluates every run so."""

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
QUICK_IMAGES = 200
OTHER_BACKEND = {"torch_impl": "jax_impl", "jax_impl": "torch_impl"}


def run_name(path: Path) -> str:
    return path.parent.parent.name


def real_data_dir() -> str:
    if harness.real_data_dir() is None:
        pytest.skip("real CIFAR-10 not available: set CIFAR10_DIR")
    return harness.real_data_dir()


@pytest.mark.slow
@pytest.mark.skipif(not CHECKPOINTS, reason="no committed run with final weights under results/runs")
@pytest.mark.parametrize("path", CHECKPOINTS, ids=run_name)
def test_same_predictions_on_the_first_test_images(path):
    logits, _ = harness.test_set_logits(path, real_data_dir(), QUICK_IMAGES)
    harness.assert_close(logits["jax_impl"], logits["torch_impl"], 1e-4)  # float32
    np.testing.assert_array_equal(logits["jax_impl"].argmax(1), logits["torch_impl"].argmax(1))


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in CHECKPOINTS
                                  if os.environ.get("CROSS_EVALUATE") == "all" or run_name(p) in SAMPLE], ids=run_name)
def test_the_backend_that_did_not_train_gets_the_recorded_error(path):
    final = json.loads((path.parent.parent / "final.json").read_text())
    other = OTHER_BACKEND[final["backend"]]
    logits, labels = harness.test_set_logits(path, real_data_dir(), backends=(other,))
    assert np.mean(logits[other].argmax(1) != labels) == pytest.approx(final["final_test_error"], abs=1e-12)


def test_the_sample_is_committed_and_covers_both_directions():
    """The whole-test-set sample names runs that exist, so the slow check above cannot silently shrink, and with the
    hub's ResNet-32 (tests/test_hub.py) it has a run of each backend evaluated by the other."""
    assert SAMPLE <= {run_name(p) for p in CHECKPOINTS}
    hub_run = pretrained_weights(32).parent.parent
    trained_by = {json.loads((RUNS / name / "final.json").read_text())["backend"] for name in SAMPLE | {hub_run.name}}
    assert trained_by == {"torch_impl", "jax_impl"}, f"add a run of the missing backend to SAMPLE: {trained_by}"
