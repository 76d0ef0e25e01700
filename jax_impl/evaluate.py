"""python -m jax_impl.evaluate --checkpoint C: test error of a JAX checkpoint or a neutral weights file."""

from __future__ import annotations

from pathlib import Path

from cifar_core import cli, evaluation, weights
from cifar_core.data import DataError
from interop.weights import read_any

from . import checkpoint
from .model import ResNet
from .platforms import resolve_conv_kernels
from .train import evaluate, make_mesh, replicate


def main(argv=None) -> float:
    args = evaluation.build_parser("jax_impl").parse_args(argv)
    path = Path(args.checkpoint)
    try:
        tensors, depth, metadata = read_any(path)
        variables = checkpoint.from_neutral(tensors)
        recipe = evaluation.recipe_of(metadata, path)
        images, labels = evaluation.test_set(recipe, args.data_dir, args.subtract_mean, args.data_source,
                                             args.tfds_data_dir)
    except (FileNotFoundError, DataError, weights.WeightsError) as error:
        cli.fail(error)
    mesh = make_mesh()
    model = ResNet(depth, conv_kernels=resolve_conv_kernels("auto", mesh.devices.flat[0].platform),
                   **recipe.model_options())
    error = evaluate(model, replicate(mesh, variables), images, labels, args.batch_size, mesh)
    print(f"{path}: test error {100 * error:.2f}% on {len(labels)} images")
    return error


if __name__ == "__main__":
    main()
