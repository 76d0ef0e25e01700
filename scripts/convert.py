"""Convert weights between the backends through the neutral format (safetensors, PyTorch names/layouts).

    python scripts/convert.py IN OUT [--add-mean-image [--data-dir D]]

IN: a torch checkpoint, a JAX checkpoint or a neutral file, recognised by content (interop.weights.read_any).
OUT: .safetensors (neutral), .pt (a torch state_dict) or .msgpack (Flax {"params", "batch_stats"}).
A neutral OUT keeps IN's mean image (the preprocessing the weights expect); --add-mean-image computes it from
CIFAR-10 as the recipe stored with the weights did (train split, test-time choice), for files written without one;
IN and OUT may be the same file (it is replaced atomically).
"""

import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cifar_core import cli, data, evaluation, weights  # noqa: E402
from interop.weights import read_any  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--add-mean-image", action="store_true",
                        help="compute the mean image from CIFAR-10 by the stored recipe (neutral OUT only)")
    parser.add_argument("--data-dir", help="CIFAR-10 for --add-mean-image (default: the trainers' search)")
    args = parser.parse_args(argv)
    if args.output.suffix not in (".safetensors", ".pt", ".msgpack"):
        cli.fail(f"{args.output}: unknown kind; expected .pt, .msgpack or .safetensors")
    if args.add_mean_image and args.output.suffix != ".safetensors":
        cli.fail(f"--add-mean-image: {args.output} is not a neutral .safetensors file, the only kind that carries one")
    try:
        tensors, depth, metadata = read_any(args.input)
        with open(args.input, "rb") as f:
            neutral = weights.kind_of(f.read(16)) == "safetensors"
        mean = weights.read_mean_image(args.input) if neutral else None
        if args.add_mean_image:
            mean = evaluation.test_mean_image(evaluation.recipe_of(metadata, args.input), data.load(args.data_dir))
    except (weights.WeightsError, data.DataError) as error:
        cli.fail(error)
    meta = {k: v for k, v in metadata.items() if k not in ("format", "depth") and v is not None}
    if args.output.suffix == ".safetensors":
        weights.save(args.output, tensors, depth, meta, mean)
    elif args.output.suffix == ".pt":
        import torch
        from torch_impl.checkpoint import from_neutral
        from torch_impl.model import resnet
        torch.save(from_neutral(resnet(depth), tensors).state_dict(), args.output)
    else:
        from flax import serialization
        from jax_impl.checkpoint import from_neutral
        args.output.write_bytes(serialization.msgpack_serialize(from_neutral(tensors)))
    print(f"{args.input} -> {args.output} (ResNet-{depth}, {weights.parameter_count(depth):,} parameters"
          f"{', with its mean image' if mean is not None and args.output.suffix == '.safetensors' else ''})")


if __name__ == "__main__":
    main()
