"""7. Evaluation: the final weights of each committed real run (results/runs/*), converted through the
neutral format, give the same predictions on the whole CIFAR-10 test set in both backends, and the backend
that did not train them gets the test error its run recorded in final.json."""

import json
from pathlib import Path

import numpy as np
import pytest

from . import harness

RUNS = Path(__file__).resolve().parent.parent / "results" / "runs"
CHECKPOINTS = sorted(RUNS.glob("*/checkpoints/final.safetensors"))


@pytest.mark.skipif(not CHECKPOINTS, reason="no committed run with final weights under results/runs")
@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.parent.parent.name)
def test_same_predictions_on_the_test_set(path):
    if harness.real_data_dir() is None:
        pytest.skip("real CIFAR-10 not available: set CIFAR10_DIR")
    torch_logits, jax_logits, labels = harness.test_set_logits(path, harness.real_data_dir())
    harness.assert_close(jax_logits, torch_logits, 1e-4)  # float32
    torch_pred, jax_pred = torch_logits.argmax(1), jax_logits.argmax(1)
    np.testing.assert_array_equal(jax_pred, torch_pred)
    final = json.loads((path.parent.parent / "final.json").read_text())
    other_backend_pred = {"torch_impl": jax_pred, "jax_impl": torch_pred}[final["backend"]]
    assert np.mean(other_backend_pred != labels) == pytest.approx(final["final_test_error"], abs=1e-12)
