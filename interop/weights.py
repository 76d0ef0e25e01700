"""Read any weights file the project writes, recognised by its content, as neutral tensors.

Neutral safetensors, a PyTorch training checkpoint or state_dict (torch.load with weights_only=True), a JAX
training checkpoint or Flax variables (msgpack). Reading none of them can run code, and only the framework whose
checkpoint it is gets imported. Anything else is a one-line WeightsError naming the file.
"""

from __future__ import annotations

from pathlib import Path

from cifar_core import weights


def read_any(path) -> tuple[dict, int, dict]:
    """(neutral tensors, depth, metadata) of `path`, checked: names, shapes (the depth follows), finite values."""
    path = Path(path)
    if not path.is_file():
        raise weights.WeightsError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(16)
    kind = weights.kind_of(head)
    if kind == "safetensors":
        return weights.read(path)
    if kind == "torch":
        from torch_impl.checkpoint import read_neutral
    elif kind == "msgpack":
        from jax_impl.checkpoint import read_neutral
    else:
        raise weights.refusal(path, head)
    tensors, metadata = read_neutral(path)
    return tensors, weights.checked(tensors, path), metadata
