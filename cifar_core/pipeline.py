"""Everything a trainer reads: the planned train stream and the normalised val and test sets."""

from __future__ import annotations

import dataclasses

import numpy as np

from . import data
from .plan import TrainStream
from .recipe import Recipe


@dataclasses.dataclass
class Pipeline:
    train: TrainStream
    val_images: np.ndarray  # float32 NHWC, normalised with the train mean (unless recipe.eval_subtract_mean is False)
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    mean_image: np.ndarray  # what was subtracted from the train images: zeros with recipe.subtract_mean False
    eval_mean_image: np.ndarray  # what was subtracted from the val and test images: shipped with the weights
    info: dict  # source, content hashes and split sizes, for config.json


def build(recipe: Recipe, data_dir=None, dataset: data.Cifar10 | None = None) -> Pipeline:
    dataset = dataset if dataset is not None else data.load(data_dir)
    splits = data.make_splits(dataset, recipe.val_fraction, recipe.split_seed, recipe.full_train)
    train_images = np.asarray(dataset.train_images)
    train_labels = np.asarray(dataset.train_labels)

    zeros = np.zeros_like(splits.mean_image)
    mean_image = splits.mean_image if recipe.subtract_mean else zeros
    eval_mean = splits.mean_image if recipe.eval_subtract_mean else zeros  # val and test: the test-time choice

    stream = TrainStream(data.normalize(train_images[splits.train_indices], mean_image),
                         train_labels[splits.train_indices], recipe.seed, recipe.batch_size, recipe.augment)
    info = {"source": dataset.source, "content_sha256": dataset.content_sha256,
            "n_train": int(len(splits.train_indices)), "n_val": int(len(splits.val_indices)),
            "n_test": int(len(dataset.test_labels)), "steps_per_epoch": stream.steps_per_epoch}
    return Pipeline(stream, data.normalize(train_images[splits.val_indices], eval_mean),
                    train_labels[splits.val_indices].astype(np.int32),
                    data.normalize(dataset.test_images, eval_mean), np.asarray(dataset.test_labels, np.int32),
                    mean_image, eval_mean, info)
