"""python -m torch_impl.evaluate --checkpoint C: test error of either backend's checkpoint or a neutral weights file."""

from __future__ import annotations

from pathlib import Path

import torch

from cifar_core import cli, evaluation, weights
from cifar_core.data import DataError
from interop.weights import read_any

from . import checkpoint
from .train import evaluate


def main(argv=None) -> float:
    args = evaluation.build_parser("torch_impl").parse_args(argv)
    path = Path(args.checkpoint)
    try:
        tensors, _, metadata = read_any(path)
        model = checkpoint.model_from_neutral(tensors, metadata, path)
        recipe = evaluation.recipe_of(metadata, path)
        images, labels = evaluation.test_set(recipe, args.data_dir, args.subtract_mean, args.data_source,
                                             args.tfds_data_dir)
    except (FileNotFoundError, DataError, weights.WeightsError) as error:
        cli.fail(error)
    error = evaluate(model, images, labels, args.batch_size, torch.device("cpu"))
    print(f"{path}: test error {100 * error:.2f}% on {len(labels)} images")
    return error


if __name__ == "__main__":
    main()
