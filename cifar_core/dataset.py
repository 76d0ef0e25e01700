"""What the rest of the core means by CIFAR-10: the arrays' container, their shape and classes, and the error a
missing or damaged copy raises. Every reader (cifar_core/data.py, cifar_core/tfds_data.py) returns a Cifar10."""

from __future__ import annotations

import dataclasses

import numpy as np

NUM_CLASSES = 10
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")  # batches.meta
IMAGE_SHAPE = (32, 32, 3)  # the core hands out NHWC: see cifar_core.data.normalize()


class DataError(RuntimeError):
    """CIFAR-10 is missing or damaged. The message names the file and what to do."""


@dataclasses.dataclass(frozen=True)
class Cifar10:
    """The raw dataset: uint8 NHWC images and int64 labels, in the official order."""

    train_images: np.ndarray  # (50000, 32, 32, 3) uint8
    train_labels: np.ndarray  # (50000,) int64
    test_images: np.ndarray  # (10000, 32, 32, 3) uint8
    test_labels: np.ndarray  # (10000,) int64
    content_sha256: dict  # {"train": ..., "test": ...} of the raw `data` rows
    source: str
