"""Shared fixtures: tiny CIFAR-10 archives in the official python layout, written into tmp_path.

The tiny dataset has 5 train batches of 20 images (100 in all, 10 per class) and a test batch of 20 images
(2 per class), with seeded random pixels. It is written as the official release lays it out: each batch a
protocol-2 pickle of {batch_label, labels, data, filenames}, with `data` a uint8 (N, 3072) array whose rows
are 1024 red, 1024 green, 1024 blue values, row-major. Keys can be str (as Python 3 writes them) or bytes (as
the original Python 2 pickles decode with encoding="bytes"); the layout can be the .tar.gz or the extracted
folder.

Every test runs with $RESNET_CIFAR_CACHE and $TFDS_DATA_DIR pointing at tmp folders of its own and without
$CIFAR10_DIR, so no test reads or writes the user's cache or data, except tests marked `real_data`, which see the
environment as is.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
BATCHES_DIR = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
PER_TRAIN_BATCH = 20
N_TEST = 20


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "real_data: needs the real CIFAR-10 via $CIFAR10_DIR; keeps the user's environment and cache")


@pytest.fixture(autouse=True)
def _isolated_data_env(request, tmp_path_factory, monkeypatch):
    """Point the decoded-array cache at a fresh tmp folder and hide $CIFAR10_DIR, unless marked real_data."""
    if request.node.get_closest_marker("real_data") is not None:
        yield None
        return
    cache = tmp_path_factory.mktemp("resnet-cifar-cache")
    monkeypatch.setenv("RESNET_CIFAR_CACHE", str(cache))
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path_factory.mktemp("tfds-data-dir")))  # no user's TFDS copy either
    yield cache


@pytest.fixture
def data_dir(tmp_path) -> str:
    """A synthetic CIFAR-10 archive for the trainers (180 train, 20 val, 40 test images; tests/trainer_runs.py)."""
    from trainer_runs import write_data  # imports both trainers: only the tests that train pay for it

    return write_data(tmp_path / "data")


@pytest.fixture
def cache_dir(_isolated_data_env) -> Path:
    """The tmp folder $RESNET_CIFAR_CACHE points at for this test."""
    return _isolated_data_env


@dataclasses.dataclass
class TinyCifar:
    """The tiny dataset's contents, and a writer for it in the official formats."""

    seed: int
    rows: dict  # file name -> uint8 (N, 3072)
    labels: dict  # file name -> list of int

    @classmethod
    def make(cls, seed: int = 0) -> "TinyCifar":
        rng = np.random.default_rng(seed)
        train_labels = rng.permutation(np.repeat(np.arange(10), 10))  # 100 images, 10 per class
        test_labels = rng.permutation(np.repeat(np.arange(10), N_TEST // 10))
        rows, labels = {}, {}
        for i, name in enumerate(TRAIN_FILES):
            rows[name] = rng.integers(0, 256, size=(PER_TRAIN_BATCH, 3072), dtype=np.uint8)
            labels[name] = [int(v) for v in train_labels[i * PER_TRAIN_BATCH:(i + 1) * PER_TRAIN_BATCH]]
        rows[TEST_FILE] = rng.integers(0, 256, size=(N_TEST, 3072), dtype=np.uint8)
        labels[TEST_FILE] = [int(v) for v in test_labels]
        return cls(seed, rows, labels)

    # -------------------------------------------------------------------------------- expected arrays
    @property
    def train_rows(self) -> np.ndarray:
        return np.concatenate([self.rows[name] for name in TRAIN_FILES])

    @property
    def train_labels(self) -> np.ndarray:
        return np.array(sum((self.labels[name] for name in TRAIN_FILES), []), np.int64)

    @property
    def test_rows(self) -> np.ndarray:
        return self.rows[TEST_FILE]

    @property
    def test_labels(self) -> np.ndarray:
        return np.array(self.labels[TEST_FILE], np.int64)

    @staticmethod
    def to_nhwc(rows: np.ndarray) -> np.ndarray:
        """The documented conversion, written out pixel by pixel: row[c*1024 + y*32 + x] -> image[y, x, c]."""
        images = np.zeros((len(rows), 32, 32, 3), np.uint8)
        for c in range(3):
            for y in range(32):
                images[:, y, :, c] = rows[:, c * 1024 + y * 32:c * 1024 + (y + 1) * 32]
        return images

    # -------------------------------------------------------------------------------- writing
    def batch_dict(self, name: str, keys: str = "str") -> dict:
        n = len(self.labels[name])
        label = "testing batch 1 of 1" if name == TEST_FILE else f"training batch {name[-1]} of 5"
        filenames = [f"tiny_{name}_{i:03d}.png" for i in range(n)]
        if keys == "str":
            return {"batch_label": label, "labels": list(self.labels[name]), "data": self.rows[name],
                    "filenames": filenames}
        if keys == "bytes":
            return {b"batch_label": label.encode(), b"labels": list(self.labels[name]), b"data": self.rows[name],
                    b"filenames": [f.encode() for f in filenames]}
        raise ValueError(keys)

    def meta_dict(self, keys: str = "str") -> dict:
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        if keys == "bytes":
            return {b"num_cases_per_batch": PER_TRAIN_BATCH, b"label_names": [n.encode() for n in names],
                    b"num_vis": 3072}
        return {"num_cases_per_batch": PER_TRAIN_BATCH, "label_names": names, "num_vis": 3072}

    def file_bytes(self, keys: str = "str", replace: dict | None = None, drop: tuple = ()) -> dict:
        """File name -> bytes of every file in cifar-10-batches-py/. `replace` maps a file name to either raw
        bytes (written as is) or a dict of entries to override in that batch's dict; `drop` leaves files out."""
        replace = replace or {}
        files = {}
        for name in TRAIN_FILES + (TEST_FILE, "batches.meta"):
            if name in drop:
                continue
            content = self.meta_dict(keys) if name == "batches.meta" else self.batch_dict(name, keys)
            change = replace.get(name)
            if isinstance(change, bytes):
                files[name] = change
                continue
            if change:
                for key, value in change.items():
                    content[key.encode() if keys == "bytes" else key] = value
            files[name] = pickle.dumps(content, protocol=2)
        return files

    def write(self, root: Path, layout: str = "tar", keys: str = "str", replace: dict | None = None,
              drop: tuple = ()) -> Path:
        """Write into `root` (created) either root/cifar-10-python.tar.gz holding cifar-10-batches-py/<files>
        (layout "tar") or the extracted root/cifar-10-batches-py/<files> (layout "dir"); return `root`."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        files = self.file_bytes(keys, replace, drop)
        if layout == "dir":
            folder = root / BATCHES_DIR
            folder.mkdir()
            for name, blob in files.items():
                (folder / name).write_bytes(blob)
        elif layout == "tar":
            with tarfile.open(root / ARCHIVE_NAME, "w:gz") as tar:
                info = tarfile.TarInfo(BATCHES_DIR)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                for name, blob in files.items():
                    info = tarfile.TarInfo(f"{BATCHES_DIR}/{name}")
                    info.size, info.mode = len(blob), 0o644
                    tar.addfile(info, io.BytesIO(blob))
        else:
            raise ValueError(layout)
        return root


@pytest.fixture(scope="session")
def tiny() -> TinyCifar:
    return TinyCifar.make(seed=0)


@pytest.fixture
def tiny_tar(tiny, tmp_path) -> Path:
    """A folder holding a tiny cifar-10-python.tar.gz (str keys)."""
    return tiny.write(tmp_path / "tiny_tar", "tar", "str")


@pytest.fixture
def tiny_dir(tiny, tmp_path) -> Path:
    """A folder holding a tiny extracted cifar-10-batches-py/ (str keys)."""
    return tiny.write(tmp_path / "tiny_dir", "dir", "str")


@pytest.fixture(params=[("tar", "str"), ("tar", "bytes"), ("dir", "str"), ("dir", "bytes")],
                ids=["tar-strkeys", "tar-byteskeys", "dir-strkeys", "dir-byteskeys"])
def tiny_any(request, tiny, tmp_path) -> Path:
    """Every layout x key convention."""
    layout, keys = request.param
    return tiny.write(tmp_path / f"tiny_{layout}_{keys}", layout, keys)
