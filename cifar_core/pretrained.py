"""Which committed weights `pretrained=True` means, for torch.hub (hubconf.py) and its JAX twin (jax_impl/hub.py):
the final weights of a finished run of that depth under results/runs/; and the preprocessing they carry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data import normalize
from .recipe import Recipe
from .weights import WeightsError, read_mean_image

RUNS_DIR = Path(__file__).resolve().parent.parent / "results" / "runs"


def pretrained_weights(depth: int, runs_dir=RUNS_DIR) -> Path:
    """checkpoints/final.safetensors of the finished ResNet-`depth` run with the longest schedule (the paper's 64k
    once there is one), trained on the most images; among equals the lowest final test error, then the name."""
    candidates, depths = [], set()
    for final_path in sorted(Path(runs_dir).glob("*/final.json")):
        weights = final_path.parent / "checkpoints" / "final.safetensors"
        try:
            final = json.loads(final_path.read_text())
        except ValueError:
            continue
        if not weights.is_file() or final.get("steps_completed") != final.get("iterations") \
                or departs_from_paper(final_path.parent):
            continue
        depths.add(final.get("depth"))
        if final.get("depth") == depth:
            rank = (-final["iterations"], -final.get("n_train_images", 0), final["final_test_error"],
                    final_path.parent.name)
            candidates.append((rank, weights))
    if not candidates:
        have = ", ".join(f"ResNet-{d}" for d in sorted(d for d in depths if d)) or "none"
        raise WeightsError(f"no finished ResNet-{depth} run with weights under {runs_dir} (pretrained: {have}); "
                           "use pretrained=False for a freshly initialised network.")
    return min(candidates)[1]


def departs_from_paper(run_dir: Path) -> bool:
    """Whether the run's recipe departs from the paper's in an ablation's way (cifar_core/recipe.py)."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())["recipe"]
        return bool(Recipe.from_dict(saved).departures())
    except (OSError, ValueError, KeyError, TypeError):
        return True  # no readable recipe: not offered as the paper's weights


def preprocess(images_uint8, mean_image: np.ndarray) -> np.ndarray:
    """uint8 images, NHWC (as CIFAR-10's arrays and PIL give them) or NCHW (as torchvision's PILToTensor), one
    or a batch -> float32 NHWC scaled to [0, 1] minus the weights' mean image: what the network saw in training."""
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8:
        raise ValueError(f"images of dtype {images.dtype}: give uint8 pixels (0-255), as decoded from the files")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or (images.shape[-1] != 3 and images.shape[1] != 3):
        raise ValueError(f"images of shape {images.shape}: give (N, 32, 32, 3) or (N, 3, 32, 32)")
    if images.shape[-1] != 3:
        images = images.transpose(0, 2, 3, 1)
    return normalize(images, mean_image)


def pretrained_mean_image(depth: int, runs_dir=RUNS_DIR) -> np.ndarray:
    """The mean image the pretrained ResNet-`depth` weights carry (HWC)."""
    path = pretrained_weights(depth, runs_dir)
    mean = read_mean_image(path)
    if mean is None:
        raise WeightsError(f"{path}: carries no mean image; add it with `python scripts/convert.py {path} {path} "
                           "--add-mean-image`.")
    return mean
