"""What both `evaluate` commands share: the flags, and the test set normalised as the weights were trained."""

from __future__ import annotations

import argparse
import json

from . import data
from .recipe import Recipe


def build_parser(backend: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {backend}.evaluate",
                                     description="Print the CIFAR-10 test error of a checkpoint or neutral weights file.")
    parser.add_argument("--checkpoint", required=True,
                        help="a .safetensors neutral weights file, or this backend's training checkpoint")
    parser.add_argument("--data-dir")
    parser.add_argument("--batch-size", type=int, default=1000)
    return parser


def recipe_of(metadata: dict | None) -> Recipe:
    """The recipe saved with the weights; it fixes the train split and so the mean image to subtract."""
    if metadata and "recipe" in metadata:
        saved = metadata["recipe"]
        return Recipe.from_dict(json.loads(saved) if isinstance(saved, str) else saved)
    return Recipe()


def test_set(recipe: Recipe, data_dir=None):
    dataset = data.load(data_dir)
    splits = data.make_splits(dataset, recipe.val_fraction, recipe.split_seed, recipe.full_train)
    return data.normalize(dataset.test_images, splits.mean_image), dataset.test_labels
