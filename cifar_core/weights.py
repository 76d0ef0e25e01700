"""The framework-neutral weights format: a safetensors file with PyTorch's names and layouts.

Names follow torchvision's ResNet (conv1, bn1, layer{1,2,3}.{j}.{conv1,bn1,conv2,bn2}, fc); convolutions are
OIHW, the linear layer is (out, in). Besides the trainable tensors the file holds each BN layer's
running_mean and running_var, so a file fully determines the eval-mode network. BN's num_batches_tracked is
not stored: with an explicit momentum neither backend reads it. A trainer's file also holds `mean_image`
(3, 32, 32): what its recipe subtracts from a test image scaled to [0, 1] (the train split's per-pixel mean, or
zeros), so that the weights carry their own preprocessing (read_mean_image; cifar_core.pretrained.preprocess).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from .files import replace_atomically

FORMAT = "resnet-cifar-neutral-v1"
MEAN_IMAGE = "mean_image"  # optional, CHW like the convolutions
MEAN_IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
STAGE_WIDTHS = (16, 32, 64)


class WeightsError(ValueError):
    pass


def first_line(error: BaseException) -> str:
    """An exception as one line, for an error message that quotes it."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def layer_shapes(depth: int) -> dict:
    """Every tensor of the neutral format for ResNet-`depth`, name -> shape, in network order."""
    if depth < 8 or (depth - 2) % 6:
        raise WeightsError(f"depth {depth} is not 6n+2")
    n = (depth - 2) // 6
    shapes = {}

    def conv_bn(prefix_conv, prefix_bn, c_in, c_out):
        shapes[f"{prefix_conv}.weight"] = (c_out, c_in, 3, 3)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix_bn}.{name}"] = (c_out,)

    conv_bn("conv1", "bn1", 3, STAGE_WIDTHS[0])
    c_in = STAGE_WIDTHS[0]
    for stage, width in enumerate(STAGE_WIDTHS, start=1):
        for block in range(n):
            prefix = f"layer{stage}.{block}"
            conv_bn(f"{prefix}.conv1", f"{prefix}.bn1", c_in, width)
            conv_bn(f"{prefix}.conv2", f"{prefix}.bn2", width, width)
            c_in = width
    shapes["fc.weight"] = (NUM_CLASSES, STAGE_WIDTHS[-1])
    shapes["fc.bias"] = (NUM_CLASSES,)
    return shapes


def is_buffer(name: str) -> bool:
    return name.endswith(("running_mean", "running_var"))


def parameter_count(depth: int) -> int:
    return sum(int(np.prod(s)) for k, s in layer_shapes(depth).items() if not is_buffer(k))


def check(tensors: dict, depth: int, source: str = "weights") -> None:
    expected = layer_shapes(depth)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise WeightsError(f"{source}: not ResNet-{depth} weights; missing {missing[:5]}, unexpected {extra[:5]}")
    wrong = {k: (tuple(v.shape), expected[k]) for k, v in tensors.items() if tuple(v.shape) != expected[k]}
    if wrong:
        raise WeightsError(f"{source}: wrong shapes (found, expected): {dict(list(wrong.items())[:5])}")


def depth_of(tensors: dict) -> int:
    blocks = {k.split(".")[1] for k in tensors if k.startswith("layer1.")}
    return 6 * len(blocks) + 2


def save(path, tensors: dict, depth: int, metadata: dict | None = None, mean_image: np.ndarray | None = None) -> None:
    """Write atomically: a reader never sees half a file. `mean_image`: HWC, as cifar_core.data.normalize takes it."""
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    check(tensors, depth, str(path))
    if mean_image is not None:
        tensors[MEAN_IMAGE] = np.ascontiguousarray(np.asarray(mean_image, np.float32).transpose(2, 0, 1))
    path = Path(path)
    meta = {"format": FORMAT, "depth": str(depth),
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}}
    with replace_atomically(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load(path) -> tuple[dict, int]:
    """Return (tensors, depth) of a neutral file, checked against the expected names and shapes; the network's
    tensors only (its mean image: read_mean_image)."""
    try:
        tensors = load_file(str(path))
    except Exception as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({first_line(error)})") from None
    check_mean_image(tensors.pop(MEAN_IMAGE, None), path)
    depth = depth_of(tensors)
    check(tensors, depth, str(path))
    return tensors, depth


def read_mean_image(path) -> np.ndarray | None:
    """The mean image a neutral file carries, HWC float32 as cifar_core.data.normalize takes it; None in a file
    written without one (scripts/convert.py --add-mean-image adds it)."""
    try:
        with safe_open(str(path), "np") as f:
            mean = f.get_tensor(MEAN_IMAGE) if MEAN_IMAGE in f.keys() else None
    except Exception as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({first_line(error)})") from None
    check_mean_image(mean, path)
    return None if mean is None else np.ascontiguousarray(mean.transpose(1, 2, 0))


def check_mean_image(mean: np.ndarray | None, source) -> None:
    if mean is not None and mean.shape != MEAN_IMAGE_SHAPE:
        raise WeightsError(f"{source}: its {MEAN_IMAGE} has shape {mean.shape}, not {MEAN_IMAGE_SHAPE}")


def metadata(path) -> dict:
    with safe_open(str(path), "np") as f:
        return dict(f.metadata() or {})


def check_finite(tensors: dict, source: str = "weights") -> None:
    bad = [name for name, array in tensors.items() if not np.all(np.isfinite(array))]
    if bad:
        raise WeightsError(f"{source}: NaN or Inf in {len(bad)} tensors ({', '.join(bad[:3])}, ...); these are the "
                           "weights of a diverged run, not usable ones.")


def kind_of(head: bytes) -> str | None:
    """The format of a file from its first bytes: "safetensors", "torch" (torch.save's zip), "msgpack" (a
    Flax/JAX checkpoint: a map), "pickle" (never read: unpickling can run code), or None."""
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "torch"
    if head[:1] == b"\x80":
        return "pickle"
    if head[:1] and (0x81 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):
        return "msgpack"
    return None


def read(path) -> tuple[dict, int, dict]:
    """(tensors, depth, metadata) of a neutral .safetensors file, checked: names, shapes, finite values."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    tensors = load(path)[0]
    return tensors, checked(tensors, path), metadata(path)


def checked(tensors: dict, source) -> int:
    """The depth of neutral `tensors` read from `source`, after checking names, shapes and finite values."""
    depth = depth_of(tensors)
    if depth < 8:
        raise WeightsError(f"{source}: not ResNet-(6n+2) weights (no layer1 blocks; names: {sorted(tensors)[:4]}).")
    check(tensors, depth, str(source))
    check_finite(tensors, str(source))
    return depth


def refusal(path, head: bytes) -> WeightsError:
    """The error for a file that is none of the formats read here: a bare pickle, or something else."""
    if kind_of(head) == "pickle":
        return WeightsError(f"{path}: a bare pickle, not read (unpickling can run code); give a .safetensors file, "
                            "a torch.save checkpoint or a JAX .msgpack checkpoint.")
    what = "an empty file" if not head else f"a file starting {head[:8]!r}"
    return WeightsError(f"{path}: {what}, not weights this project reads; give a .safetensors file, a PyTorch "
                        "checkpoint (last.pt) or a JAX checkpoint (last.msgpack).")
