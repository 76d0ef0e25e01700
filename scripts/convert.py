"""Convert weights between the backends through the neutral format (safetensors, PyTorch names/layouts).

    python scripts/convert.py IN OUT

IN: a torch checkpoint (.pt), a JAX checkpoint (.msgpack) or a neutral file (.safetensors).
OUT: .safetensors (neutral), .pt (a torch state_dict) or .msgpack (Flax {"params", "batch_stats"}).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cifar_core import weights  # noqa: E402


def read_neutral(path: Path) -> tuple[dict, dict]:
    if path.suffix == ".safetensors":
        return weights.load(path)[0], weights.metadata(path)
    if path.suffix == ".pt":
        from torch_impl import checkpoint
        model = checkpoint.load_any(path)
        return checkpoint.to_neutral(model), {}
    if path.suffix == ".msgpack":
        from jax_impl import checkpoint
        variables, _, metadata = checkpoint.load_any(path)
        return checkpoint.to_neutral(variables), metadata
    raise SystemExit(f"error: {path}: unknown kind; expected .pt, .msgpack or .safetensors")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    if not args.input.is_file():
        raise SystemExit(f"error: {args.input}: no such file")
    try:
        tensors, metadata = read_neutral(args.input)
    except weights.WeightsError as error:
        raise SystemExit(f"error: {error}")
    depth = weights.depth_of(tensors)
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
        raise SystemExit(f"error: {args.output}: unknown kind; expected .pt, .msgpack or .safetensors")
    print(f"{args.input} -> {args.output} (ResNet-{depth}, {weights.parameter_count(depth):,} parameters)")


if __name__ == "__main__":
    main()
