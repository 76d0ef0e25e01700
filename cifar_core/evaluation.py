"""What both `evaluate` commands share: the flags, and the test set normalised as the weights were trained."""

from __future__ import annotations

import argparse
import json

import numpy as np

from . import data
from .cli import add_data_source_flags
from .recipe import Recipe
from .weights import WeightsError, first_line


def build_parser(backend: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {backend}.evaluate",
                                     description="Print the CIFAR-10 test error of a checkpoint or neutral weights "
                                                 "file.")
    parser.add_argument("--checkpoint", required=True,
                        help="a .safetensors neutral weights file, or this backend's training checkpoint")
    parser.add_argument("--data-dir")
    add_data_source_flags(parser)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--no-mean-subtraction", dest="subtract_mean", action="store_const", const=False,
                        default=None, help="feed the test images without subtracting the train mean image, whatever "
                                           "the weights were trained with (a common bug; results/ablations.md)")
    return parser


def recipe_of(metadata: dict | None, source="weights") -> Recipe:
    """The recipe saved with the weights: it fixes the train split and so the mean image to subtract, and the
    model options of an ablation's network. Weights without one are taken to be the paper's."""
    saved = (metadata or {}).get("recipe")
    if saved is None:
        return Recipe()
    try:
        return Recipe.from_dict(json.loads(saved) if isinstance(saved, str) else saved)
    except (ValueError, TypeError, AttributeError) as error:
        raise WeightsError(f"{source}: the recipe stored with the weights is not readable "
                           f"({first_line(error)}).") from None


def test_set(recipe: Recipe, data_dir=None, subtract_mean: bool | None = None, source: str | None = None,
             tfds_data_dir=None):
    """The test images as the weights' recipe fed them at test time (Recipe.eval_subtract_mean), or with
    `subtract_mean` given, with or without the mean image whatever it did (question 3 of results/ablations.md),
    and their labels. `source`, `tfds_data_dir`: as cifar_core.data.load's."""
    dataset = data.load(data_dir, source=source or "auto", tfds_data_dir=tfds_data_dir)
    return data.normalize(dataset.test_images, test_mean_image(recipe, dataset, subtract_mean)), dataset.test_labels


def test_mean_image(recipe: Recipe, dataset, subtract_mean: bool | None = None) -> np.ndarray:
    """What `recipe` subtracts from a test image (HWC): its train split's per-pixel mean, or zeros; `subtract_mean`
    overrides the recipe's test-time choice."""
    splits = data.make_splits(dataset, recipe.val_fraction, recipe.split_seed, recipe.full_train)
    subtract = recipe.eval_subtract_mean if subtract_mean is None else subtract_mean
    return splits.mean_image if subtract else np.zeros_like(splits.mean_image)
