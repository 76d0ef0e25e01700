"""CIFAR-10: find it, decode it once, check it, split it, normalise it. NumPy only.

Search order for the data: ``--data-dir``, then ``$CIFAR10_DIR``, then the per-user cache directory
(``$RESNET_CIFAR_CACHE``, else ``$XDG_CACHE_HOME/resnet-cifar``, else ``~/.cache/resnet-cifar``). Each place
may hold ``cifar-10-python.tar.gz`` or the extracted ``cifar-10-batches-py/`` (or be that folder itself).
Nothing found: download the official archive into the cache (MD5-checked, atomic, retried).

Decoding ~180 MB of pickles takes seconds, so the decoded uint8 arrays are cached as ``.npy`` files keyed by
the source's path, size and mtime; a second start memory-maps them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np

from . import tfds_data
from .dataset import CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES, Cifar10, DataError  # noqa: F401  (re-exported)

ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
# SHA-256 of the concatenated `data` arrays of the official release, in batch order.
CONTENT_SHA256 = {
    "train": "9d5c2eddadb0deff02c14c350c0385aab7b1d5ff1edfeb4997c8dc8644960111",
    "test": "177777c33ba79825320efa646ad04a94bdc3c80e4ebe3bd21724f8cdfd4b9d56",
}
CACHE_VERSION = 1


# ----------------------------------------------------------------------------------------------- locating


def cache_root() -> Path:
    if os.environ.get("RESNET_CIFAR_CACHE"):
        return Path(os.environ["RESNET_CIFAR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "resnet-cifar"


def _source_in(directory: Path) -> Path | None:
    """The archive or batches folder inside `directory` (or `directory` itself if it is the folder)."""
    if (directory / BATCHES_DIR).is_dir():
        return directory / BATCHES_DIR
    if (directory / ARCHIVE_NAME).is_file():
        return directory / ARCHIVE_NAME
    if (directory / TEST_FILE).is_file() or (directory / "data_batch_1").is_file():
        return directory
    return None


def locate(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the path of a CIFAR-10 archive or batches folder, downloading it if allowed."""
    candidates = []
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.exists():
            raise DataError(f"--data-dir {data_dir} does not exist. Point it at a folder holding "
                            f"{ARCHIVE_NAME} or {BATCHES_DIR}/, or leave it out to use $CIFAR10_DIR or the cache.")
        candidates.append(data_dir)
    if os.environ.get("CIFAR10_DIR"):
        candidates.append(Path(os.environ["CIFAR10_DIR"]).expanduser())
    candidates.append(cache_root())
    for directory in candidates:
        found = _source_in(directory)
        if found is not None:
            return found
    if data_dir is not None:
        raise DataError(f"--data-dir {data_dir} holds neither {ARCHIVE_NAME} nor {BATCHES_DIR}/ "
                        "nor the data_batch_* files.")
    if not download:
        raise DataError(_not_found_message())
    return download_archive(cache_root())


def _not_found_message(extra: str = "") -> str:
    return (f"CIFAR-10 not found{extra}. Pass --data-dir DIR or set CIFAR10_DIR=DIR, where DIR holds "
            f"{ARCHIVE_NAME} (from {URL}) or its extracted {BATCHES_DIR}/; "
            f"or allow the download into {cache_root()}.")


def file_digest(path: Path, algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5_of(path: Path) -> str:
    return file_digest(path, "md5")


def download_archive(directory: Path, url: str = URL, attempts: int = 3) -> Path:
    """Download the official archive into `directory`, check its MD5, and rename it into place."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / ARCHIVE_NAME
    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=ARCHIVE_NAME, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            if md5_of(Path(tmp)) != ARCHIVE_MD5:
                raise DataError(f"downloaded {url} but its MD5 is not {ARCHIVE_MD5} (broken transfer?)")
            os.replace(tmp, target)
            return target
        except (OSError, DataError) as error:  # URLError is an OSError
            last_error = error
            if attempt < attempts:
                time.sleep(2 ** attempt)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise DataError(_not_found_message(f" and the download failed ({last_error})"))


# ----------------------------------------------------------------------------------------------- decoding


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only: the CIFAR-10 batches hold nothing else, and any other
    global (os.system, builtins.eval, ...) in a file handed in is refused instead of called."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode"), ("builtins", "bytes")}  # how Python 3 writes bytes at protocol 2

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only arrays, "
                                     "lists and strings")


def _decode_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as error:  # truncated, not a pickle at all, or one that would call other code
        raise DataError(f"{name}: cannot unpickle ({type(error).__name__}: {error}); the file is damaged, "
                        "replace it with a fresh copy of the archive.") from None
    if not isinstance(batch, dict):
        raise DataError(f"{name}: expected a dict, found {type(batch).__name__}.")
    # Python 2 pickles decode with bytes keys, later ones may carry str keys: accept both.
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(f"{name}: no '{key}' entry (keys: {sorted(batch)}).")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{name}: 'data' should be uint8 of shape (N, 3072), found {data.dtype} {data.shape}.")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{name}: {labels.shape[0] if labels.ndim else 0} labels for {data.shape[0]} images.")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{name}: labels out of range [0, {NUM_CLASSES}): min {labels.min()}, max {labels.max()}.")
    return data, labels.astype(np.int64)


def _read_members(source: Path) -> dict[str, tuple[bytes, str]]:
    """Raw bytes of each batch file, with a display name for errors."""
    wanted = TRAIN_FILES + (TEST_FILE,)
    found: dict[str, tuple[bytes, str]] = {}
    if source.is_dir():
        for name in wanted:
            path = source / name
            if path.is_file():
                found[name] = (path.read_bytes(), str(path))
    else:
        try:
            with tarfile.open(source, "r:gz") as tar:
                for member in tar.getmembers():
                    base = os.path.basename(member.name)
                    if base in wanted and member.isfile():
                        found[base] = (tar.extractfile(member).read(), f"{source}:{member.name}")
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DataError(f"{source}: not a readable .tar.gz ({error}); replace it with a fresh copy.") from None
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DataError(f"{source}: missing {', '.join(missing)}; the archive or folder is incomplete.")
    return found


def decode(source: Path) -> Cifar10:
    members = _read_members(source)
    train = [_decode_batch(*members[name]) for name in TRAIN_FILES]
    test_data, test_labels = _decode_batch(*members[TEST_FILE])
    train_data = np.concatenate([d for d, _ in train])
    hashes = {"train": hashlib.sha256(train_data.tobytes()).hexdigest(),
              "test": hashlib.sha256(test_data.tobytes()).hexdigest()}
    return Cifar10(_rows_to_nhwc(train_data), np.concatenate([l for _, l in train]),
                   _rows_to_nhwc(test_data), test_labels, hashes, str(source))


def _rows_to_nhwc(rows: np.ndarray) -> np.ndarray:
    # Each row is 1024 red, 1024 green, 1024 blue values, row-major.
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _check_content(data: Cifar10, source: Path) -> None:
    if source.is_file() and source.name == ARCHIVE_NAME and md5_of(source) == ARCHIVE_MD5:
        return  # the official archive, byte for byte
    differ = [k for k in ("train", "test") if data.content_sha256[k] != CONTENT_SHA256[k]]
    if differ:
        warnings.warn(f"{source}: the {' and '.join(differ)} images differ from official CIFAR-10 "
                      "(content SHA-256 mismatch); results will not be comparable with the paper's.",
                      stacklevel=3)


# ----------------------------------------------------------------------------------------------- caching


def _cache_dir_for(source: Path) -> Path:
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|v{CACHE_VERSION}"
    return cache_root() / "decoded" / hashlib.sha256(key.encode()).hexdigest()[:16]


_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


SOURCES = ("auto", "archive", "tfds")  # --data-source


def load(data_dir: str | os.PathLike | None = None, download: bool = True, source: str = "auto",
         tfds_data_dir: str | os.PathLike | None = None) -> Cifar10:
    """Locate, decode (or reuse the decoded cache), and check CIFAR-10.

    `source` "archive": the python archive or its batches folder (the search in the module docstring, download
    included); "tfds": a prepared TFDS cifar10 under `tfds_data_dir` (cifar_core/tfds_data.py); "auto": the
    archive where the search finds one, else a prepared TFDS copy if there is one (only without --data-dir),
    else the download. Whichever it is, the arrays are the same for the same images."""
    if source not in SOURCES:
        raise DataError(f"--data-source {source!r}: choose one of {', '.join(SOURCES)}.")
    if source == "tfds":
        return _load_tfds(tfds_data_dir)
    try:
        path = locate(data_dir, download=False)
    except DataError:
        if source == "auto" and data_dir is None:
            if tfds_data.prepared_dir(tfds_data_dir) is not None and _importable("tensorflow_datasets"):
                return _load_tfds(tfds_data_dir)
        path = locate(data_dir, download)
    return _load_cached(path, path, lambda: decode(path))


def _importable(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def _load_tfds(tfds_data_dir) -> Cifar10:
    version_dir = tfds_data.prepared_dir(tfds_data_dir)
    if version_dir is None:
        raise DataError(f"no prepared TFDS cifar10 in {tfds_data.data_root(tfds_data_dir)}; {tfds_data.PREPARE_HINT}.")
    tfds_data.import_tfds()  # a missing package is an error before anything is cached
    return _load_cached(version_dir / "dataset_info.json", version_dir, lambda: tfds_data.read(version_dir),
                        tfds_data.source(version_dir))


def _load_cached(key_path: Path, source: Path, decoder, name: str | None = None) -> Cifar10:
    """The decoded arrays from the cache entry of `key_path` (its path, size and mtime), else decoder()'s, checked
    against the official content and cached."""
    name = name or str(source)
    cache = _cache_dir_for(key_path)
    meta_path = cache / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            arrays = {array: np.load(cache / f"{array}.npy", mmap_mode="r") for array in _ARRAYS}
            return Cifar10(**arrays, content_sha256=meta["content_sha256"], source=name)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    data = decoder()
    _check_content(data, source)
    try:
        _write_cache(cache, data)
    except OSError as error:  # a read-only cache only costs speed
        warnings.warn(f"could not cache decoded CIFAR-10 in {cache}: {error}", stacklevel=2)
    return data


def _write_cache(cache: Path, data: Cifar10) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=cache.name + ".tmp"))
    for name in _ARRAYS:
        np.save(tmp / f"{name}.npy", getattr(data, name))
    (tmp / "meta.json").write_text(json.dumps({"content_sha256": data.content_sha256, "source": data.source}))
    if cache.exists():  # a damaged entry (load() could not read it) is replaced
        shutil.rmtree(cache, ignore_errors=True)
    try:
        os.replace(tmp, cache)  # atomic; loses the race harmlessly if another process got there first
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- split, mean


@dataclasses.dataclass(frozen=True)
class Splits:
    """Index sets into the 50,000 official training images, and the normalisation they imply."""

    train_indices: np.ndarray  # sorted
    val_indices: np.ndarray  # sorted; empty when training on all 50,000
    mean_image: np.ndarray  # (32, 32, 3) float32, per-pixel mean of train images scaled to [0, 1]


def split_indices(labels: np.ndarray, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: from each class, a seeded random `val_fraction` of its images goes to val.

    On CIFAR-10 that is 500 images per class, 5,000 in all, 45,000 left to train. The split depends only on
    (labels, val_fraction, seed), not on the training seed, so runs with different seeds share one val set.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    val = []
    for cls in range(NUM_CLASSES):
        members = np.flatnonzero(labels == cls)
        count = int(round(len(members) * val_fraction))
        val.append(rng.permutation(members)[:count])
    val_indices = np.sort(np.concatenate(val)).astype(np.int64)
    train_indices = np.setdiff1d(np.arange(len(labels)), val_indices).astype(np.int64)
    return train_indices, val_indices


def mean_image(images_uint8: np.ndarray) -> np.ndarray:
    """Per-pixel mean of images scaled to [0, 1], accumulated in float64, returned as float32."""
    total = np.zeros(IMAGE_SHAPE, np.float64)
    for start in range(0, len(images_uint8), 10_000):  # bounded memory on a memory-mapped array
        total += images_uint8[start:start + 10_000].sum(axis=0, dtype=np.float64)
    return (total / (255.0 * len(images_uint8))).astype(np.float32)


def make_splits(data: Cifar10, val_fraction: float = 0.1, split_seed: int = 0, full_train: bool = False) -> Splits:
    if full_train:
        train_indices, val_indices = np.arange(len(data.train_labels)), np.zeros(0, np.int64)
    else:
        train_indices, val_indices = split_indices(np.asarray(data.train_labels), val_fraction, split_seed)
    return Splits(train_indices, val_indices, mean_image(np.asarray(data.train_images)[train_indices]))


def normalize(images_uint8: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NHWC in [0, 1] minus the train mean image.

    Written as two correctly rounded float32 operations (divide, subtract) so that any backend doing the same
    on its device gets bit-identical pixels.
    """
    return np.asarray(images_uint8, np.float32) / np.float32(255.0) - mean
