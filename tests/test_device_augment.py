"""On-device augmentation (the GPU fast path) equals the NumPy materializer bit for bit, in both backends,
and a run with --data-on-device trains exactly as one fed from the host."""

import chex
import numpy as np
import pytest
import torch

from cifar_core import data, plan
from cifar_core.synthetic import make_dataset
from jax_impl import train as jax_train
from torch_impl import train as torch_train


@pytest.fixture(scope="module")
def stream():
    dataset = make_dataset(300, 10)
    splits = data.make_splits(dataset)
    images = data.normalize(np.asarray(dataset.train_images)[splits.train_indices], splits.mean_image)
    return plan.TrainStream(images, np.asarray(dataset.train_labels)[splits.train_indices], seed=5, batch_size=64)


@pytest.mark.parametrize("step", [0, 3, 7])  # 4 steps per epoch: several epochs
def test_torch_device_stream_equals_numpy(stream, step):
    expected_images, expected_labels = stream.batch(step)
    images, labels = torch_train.DeviceStream(stream, torch.device("cpu")).batch(step)
    np.testing.assert_array_equal(images.numpy(), expected_images)
    np.testing.assert_array_equal(labels.numpy(), expected_labels)


@pytest.mark.parametrize("step", [0, 3, 7])
def test_jax_device_stream_equals_numpy(stream, step):
    expected_images, expected_labels = stream.batch(step)
    images, labels = jax_train.DeviceStream(stream, jax_train.make_mesh(4)).batch(step)
    np.testing.assert_array_equal(np.asarray(images), expected_images)
    np.testing.assert_array_equal(np.asarray(labels), expected_labels)


def test_edge_offsets_and_flips():
    """Every corner offset, with and without flip, on random images: both device versions equal NumPy."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(18, 32, 32, 3)).astype(np.float32)
    offsets = np.array([[dy, dx] for dy in (0, 4, 8) for dx in (0, 4, 8)] * 2)
    flips = np.repeat([False, True], 9)
    expected = plan.augment(images, offsets, flips)
    got_torch = torch_train.augment_on_device(torch.from_numpy(images), torch.from_numpy(offsets),
                                              torch.from_numpy(flips)).numpy()
    got_jax = np.asarray(jax_train.augment_on_device(images, offsets, flips))
    np.testing.assert_array_equal(got_torch, expected)
    np.testing.assert_array_equal(got_jax, expected)


class TestChexVariantsJaxAugmentJittedAndNot(chex.TestCase):
    """The JAX augmentation is traced into the training programs: the same pixels jitted as eager."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_random_plan_equals_numpy(self):
        rng = np.random.default_rng(1)
        images = rng.normal(size=(32, 32, 32, 3)).astype(np.float32)
        offsets = rng.integers(0, 2 * plan.PAD + 1, size=(32, 2))
        flips = rng.random(32) < 0.5
        got = self.variant(jax_train.augment_on_device)(images, offsets, flips)
        np.testing.assert_array_equal(np.asarray(got), plan.augment(images, offsets, flips))
