"""Convert weights between the backends through the neutral format (safetensors, PyTorch names/layouts).

    python scripts/convert.py IN OUT

IN: a torch checkpoint, a JAX checkpoint or a neutral file, recognised by content (interop.weights.read_any).
OUT: .safetensors (neutral), .pt (a torch state_dict) or .msgpack (Flax {"params", "batch_stats"}).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cifar_core import cli, weights  # noqa: E402
from interop.weights import read_any  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    if args.output.suffix not in (".safetensors", ".pt", ".msgpack"):
        cli.fail(f"{args.output}: unknown kind; expected .pt, .msgpack or .safetensors")
    try:
        tensors, depth, metadata = read_any(args.input)
    except weights.WeightsError as error:
        cli.fail(error)
    meta = {k: v for k, v in metadata.items() if k not in ("format", "depth") and v is not None}
    if args.output.suffix == ".safetensors":
        weights.save(args.output, tensors, depth, meta)
    elif args.output.suffix == ".pt":
        import torch
        from torch_impl.checkpoint import from_neutral
        from torch_impl.model import resnet
        torch.save(from_neutral(resnet(depth), tensors).state_dict(), args.output)
    elif args.output.suffix == ".msgpack":
        from flax import serialization
        from jax_impl.checkpoint import from_neutral
        args.output.write_bytes(serialization.msgpack_serialize(from_neutral(tensors)))
    else:
        cli.fail(f"{args.output}: unknown kind; expected .pt, .msgpack or .safetensors")
    print(f"{args.input} -> {args.output} (ResNet-{depth}, {weights.parameter_count(depth):,} parameters)")


if __name__ == "__main__":
    main()
