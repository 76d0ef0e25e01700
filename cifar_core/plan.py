"""The augmentation plan: every training batch's images, crops and flips, decided from (seed, epoch) alone.

Iterations map to epochs without state: with ``steps_per_epoch = n_train // batch_size``, step ``s`` reads
positions ``[b * batch_size, (b + 1) * batch_size)`` of epoch ``s // steps_per_epoch``'s permutation, where
``b = s % steps_per_epoch``. The last partial batch of an epoch is dropped (45,000 images at batch 128: 351
steps, 72 images left out, different ones each epoch). Because a batch is a pure function of (seed, step),
a resumed run, either backend and any number of devices see the same pixels.

Augmentation, as in the paper and fb.resnet.torch: the normalised image is zero-padded by 4 pixels on each
side (zero in mean-subtracted space), a 32x32 window at offset (dy, dx) in [0, 8]^2 is cut out, then the
window is mirrored left-right if the flip bit is set. The ablations' other modes read the same plan: "flip" keeps
its flip bits with the centred window (offset PAD, no pixel cropped away), "none" the centred window unflipped.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import numpy as np

PAD = 4
CROP = 32


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    order: np.ndarray  # (n_train,) int64: positions into the train split, in visiting order
    offsets: np.ndarray  # (n_train, 2) int64: (dy, dx) of each visit, in [0, 2 * PAD]
    flips: np.ndarray  # (n_train,) bool: mirror left-right


@functools.lru_cache(maxsize=4)
def epoch_plan(seed: int, epoch: int, n_train: int) -> EpochPlan:
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_train)
    offsets = rng.integers(0, 2 * PAD + 1, size=(n_train, 2))
    flips = rng.integers(0, 2, size=n_train).astype(bool)
    return EpochPlan(order, offsets, flips)


def plan_hash(seed: int, epoch: int, n_train: int) -> str:
    plan = epoch_plan(seed, epoch, n_train)
    digest = hashlib.sha256()
    for array in (plan.order.astype("<i8"), plan.offsets.astype("<i8"), plan.flips.astype("u1")):
        digest.update(array.tobytes())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """What one (slice of a) batch is: rows of the train split, with their crop offsets and flip bits."""

    rows: np.ndarray  # (B,) int64 positions into the train split
    offsets: np.ndarray  # (B, 2)
    flips: np.ndarray  # (B,)

    def shard(self, index: int, count: int) -> "BatchPlan":
        """Contiguous slice `index` of `count` equal parts: device/rank/process `index`'s share."""
        size = len(self.rows) // count
        part = slice(index * size, (index + 1) * size)
        return BatchPlan(self.rows[part], self.offsets[part], self.flips[part])


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    if batch_size > n_train:
        raise ValueError(f"batch size {batch_size} exceeds the {n_train} training images; lower --batch-size.")
    return n_train // batch_size


def batch_plan(seed: int, step: int, n_train: int, batch_size: int) -> BatchPlan:
    epoch, position = divmod(step, steps_per_epoch(n_train, batch_size))
    plan = epoch_plan(seed, epoch, n_train)
    window = slice(position * batch_size, (position + 1) * batch_size)
    return BatchPlan(plan.order[window], plan.offsets[window], plan.flips[window])


def augment(images: np.ndarray, offsets: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """Pad, crop and flip a batch of normalised NHWC images; the reference every device version must equal."""
    batch = len(images)
    padded = np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))
    rows = offsets[:, 0, None] + np.arange(CROP)  # (B, 32)
    cols = offsets[:, 1, None] + np.arange(CROP)
    cols = np.where(flips[:, None], cols[:, ::-1], cols)  # a flipped window reads its columns backwards
    return padded[np.arange(batch)[:, None, None], rows[:, :, None], cols[:, None, :]]


class TrainStream:
    """Materialises planned batches from the normalised train split, in NumPy."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int, batch_size: int, augment: str = "crop-flip"):
        self.images = images  # (n_train, 32, 32, 3) float32, normalised
        self.labels = np.asarray(labels, np.int32)
        self.seed = seed
        self.batch_size = batch_size
        self.augment = augment  # "crop-flip", "flip" or "none" (Recipe.augment)
        self.steps_per_epoch = steps_per_epoch(len(images), batch_size)

    def plan(self, step: int) -> BatchPlan:
        plan = batch_plan(self.seed, step, len(self.images), self.batch_size)
        if self.augment != "crop-flip":  # the centred window, so every materializer crops nothing away
            flips = plan.flips if self.augment == "flip" else np.zeros_like(plan.flips)
            plan = BatchPlan(plan.rows, np.full_like(plan.offsets, PAD), flips)
        return plan

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch

    def materialize(self, plan: BatchPlan) -> tuple[np.ndarray, np.ndarray]:
        return augment(self.images[plan.rows], plan.offsets, plan.flips), self.labels[plan.rows]

    def batch(self, step: int, shard: int = 0, num_shards: int = 1) -> tuple[np.ndarray, np.ndarray]:
        return self.materialize(self.plan(step).shard(shard, num_shards))


def eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int):
    """Val/test images in order, unaugmented; the last batch may be short."""
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size], np.asarray(labels[start:start + batch_size], np.int32)
