import pytest

from . import harness

# Sizes for CI's budget; scripts/parity_report.py runs the same checks at ResNet-32, batch 128.
DEPTH = 8
BATCH = 16
STEPS = 100


@pytest.fixture(scope="session")
def weights0():
    return harness.initial_weights(DEPTH, seed=0)


@pytest.fixture(scope="session")
def batch():
    recipe = harness.Recipe(depth=DEPTH, batch_size=BATCH)
    batches, _ = harness.train_batches(recipe, 1)
    images, labels = batches[0]
    return images, labels


@pytest.fixture(scope="session")
def float64_tol():
    return 1e-10
