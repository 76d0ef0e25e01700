"""CIFAR-10 from a prepared TensorFlow Datasets (TFDS) `cifar10`, the JAX world's usual copy, read without
TensorFlow: `tfds` reads its ArrayRecord files (`builder.as_data_source`), images decode with pillow or OpenCV.

TFDS stores the examples shuffled. Each carries its `id` (b"train_16399"), whose number is the example's index
in the official release, so the arrays are put back in that order: they then equal the archive's byte for byte,
and so do the content hashes, the split, the augmentation plan and every result. Reading all 60,000 takes ~10 s;
cifar_core.data caches the decoded arrays as it does an archive's.

Preparing the dataset needs TensorFlow, once: scripts/prepare_tfds.py does it offline from the archive this
project already reads (or use a copy `tfds.load("cifar10")` made).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from .dataset import IMAGE_SHAPE, Cifar10, DataError

NAME = "cifar10"
SPLITS = ("train", "test")
READ_CHUNK = 1000
PREPARE_HINT = ("prepare it once with `python scripts/prepare_tfds.py --tfds-data-dir DIR` (in an environment with "
                "tensorflow-cpu and tensorflow-datasets), or point --tfds-data-dir at a folder where "
                "tfds.load('cifar10') put it")


def data_root(tfds_data_dir=None) -> Path:
    """--tfds-data-dir, else $TFDS_DATA_DIR, else TFDS's default ~/tensorflow_datasets."""
    if tfds_data_dir:
        return Path(tfds_data_dir).expanduser()
    return Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets").expanduser()


def _version(path: Path) -> tuple:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", path.name)
    return tuple(int(g) for g in match.groups()) if match else (-1,)


def prepared_dir(tfds_data_dir=None) -> Path | None:
    """The newest prepared ArrayRecord `cifar10` under the data root (`<root>/cifar10/<version>/`), or None."""
    root = data_root(tfds_data_dir) / NAME
    found = [info.parent for info in root.glob("*/dataset_info.json")
             if _version(info.parent) >= (0,) and any(info.parent.glob(f"{NAME}-*.array_record*"))]
    return max(found, key=_version) if found else None


def import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DataError(f"--data-source tfds needs tensorflow-datasets and array-record ({error}); install them "
                        "with pip install -e '.[tfds]'.") from None
    return tfds


def rows_sha256(images: np.ndarray) -> str:
    """SHA-256 of NHWC uint8 images laid out as the official release's `data` rows (1024 R, 1024 G, 1024 B)."""
    return hashlib.sha256(np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)
                          .tobytes()).hexdigest()


def read(version_dir: Path) -> Cifar10:
    """The dataset prepared in `version_dir`, in the official order. DataError, one line, if it is not a
    readable, complete CIFAR-10."""
    tfds = import_tfds()
    arrays = {}
    try:
        builder = tfds.builder_from_directory(str(version_dir))
        for split in SPLITS:
            arrays[split] = _read_split(builder.as_data_source(split=split), split, version_dir)
    except DataError:
        raise
    except Exception as error:  # what TFDS raises for a damaged or partial dataset varies by version
        text = str(error).strip().splitlines()
        raise DataError(f"{version_dir}: not a readable TFDS cifar10 ({type(error).__name__}: "
                        f"{text[0] if text else ''}); {PREPARE_HINT}.") from None
    (train_images, train_labels), (test_images, test_labels) = arrays["train"], arrays["test"]
    hashes = {"train": rows_sha256(train_images), "test": rows_sha256(test_images)}
    return Cifar10(train_images, train_labels, test_images, test_labels, hashes, source(version_dir))


def source(version_dir: Path) -> str:
    """How config.json names the data: not a path, so that --resume does not take it for a --data-dir."""
    return f"tfds:{version_dir}"


def _read_split(data_source, split: str, version_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    count = len(data_source)
    images = np.zeros((count, *IMAGE_SHAPE), np.uint8)
    labels = np.zeros(count, np.int64)
    seen = np.zeros(count, bool)
    for start in range(0, count, READ_CHUNK):
        for example in data_source.__getitems__(list(range(start, min(count, start + READ_CHUNK)))):
            ident = example["id"]
            ident = ident.decode() if isinstance(ident, bytes) else str(ident)
            prefix, _, number = ident.rpartition("_")
            if prefix != split or not number.isdigit() or not int(number) < count or seen[int(number)]:
                raise DataError(f"{version_dir}: the {split} split holds an example with id {ident!r}; the ids of a "
                                f"TFDS cifar10 run from {split}_00000 to {split}_{count - 1:05d}, once each.")
            index = int(number)
            image = np.asarray(example["image"])
            if image.shape != IMAGE_SHAPE or image.dtype != np.uint8:
                raise DataError(f"{version_dir}: {ident} is a {image.dtype} image of shape {image.shape}, "
                                f"not uint8 {IMAGE_SHAPE}.")
            images[index], labels[index], seen[index] = image, int(example["label"]), True
    return images, labels
