"""Tiny stand-ins for CIFAR-10, for tests, rehearsals and machines without the data.

`write_archive` writes the official python layout (protocol-2 pickles, str or bytes keys, as a .tar.gz or an
extracted folder); `make_dataset` builds a Cifar10 in memory. Labels are balanced, pixels seeded-random.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from .data import ARCHIVE_NAME, BATCHES_DIR, NUM_CLASSES, TEST_FILE, TRAIN_FILES, Cifar10, _rows_to_nhwc


def _batch(rng, count: int, name: str, bytes_keys: bool) -> dict:
    labels = [int(i % NUM_CLASSES) for i in range(count)]
    rng.shuffle(labels)
    batch = {"batch_label": f"{name} of synthetic CIFAR-10", "labels": labels,
             "data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
             "filenames": [f"synthetic_{name}_{i}.png" for i in range(count)]}
    if bytes_keys:  # as Python 2 pickles decode with encoding="bytes"
        batch = {k.encode(): (v.encode() if isinstance(v, str) else v) for k, v in batch.items()}
    return batch


def batch_files(train_per_batch: int = 20, test_size: int = 20, seed: int = 0, bytes_keys: bool = False) -> dict:
    """file name -> pickled bytes of the official layout."""
    rng = np.random.default_rng(seed)
    files = {name: pickle.dumps(_batch(rng, train_per_batch, name, bytes_keys), protocol=2) for name in TRAIN_FILES}
    files[TEST_FILE] = pickle.dumps(_batch(rng, test_size, TEST_FILE, bytes_keys), protocol=2)
    meta = {"label_names": [f"class_{i}" for i in range(NUM_CLASSES)], "num_cases_per_batch": train_per_batch,
            "num_vis": 3072}
    files["batches.meta"] = pickle.dumps(meta, protocol=2)
    return files


def write_archive(directory, layout: str = "tar", **kwargs) -> Path:
    """Write a tiny CIFAR-10 into `directory` as cifar-10-python.tar.gz (layout "tar") or
    cifar-10-batches-py/ (layout "dir"); return the path written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = batch_files(**kwargs)
    if layout == "dir":
        folder = directory / BATCHES_DIR
        folder.mkdir(exist_ok=True)
        for name, raw in files.items():
            (folder / name).write_bytes(raw)
        return folder
    path = directory / ARCHIVE_NAME
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in files.items():
            info = tarfile.TarInfo(f"{BATCHES_DIR}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def make_dataset(n_train: int = 500, n_test: int = 100, seed: int = 0) -> Cifar10:
    rng = np.random.default_rng(seed)
    train_rows = rng.integers(0, 256, size=(n_train, 3072), dtype=np.uint8)
    test_rows = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    hashes = {"train": hashlib.sha256(train_rows.tobytes()).hexdigest(),
              "test": hashlib.sha256(test_rows.tobytes()).hexdigest()}
    return Cifar10(_rows_to_nhwc(train_rows), rng.permutation(np.arange(n_train) % NUM_CLASSES),
                   _rows_to_nhwc(test_rows), rng.permutation(np.arange(n_test) % NUM_CLASSES), hashes, "synthetic")
