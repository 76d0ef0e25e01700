"""Prepare TensorFlow Datasets' `cifar10` (ArrayRecord files) offline, from the CIFAR-10 archive this project reads,
for `--data-source tfds` and for anyone whose JAX code reads CIFAR-10 through TFDS.

    python scripts/prepare_tfds.py [--data-dir D] [--tfds-data-dir T]
    # T: default $TFDS_DATA_DIR, ~/tensorflow_datasets

Run it where tensorflow-cpu, tensorflow-datasets and array-record are installed (the stock builder extracts and
PNG-encodes through TensorFlow; the trainers read the result without it):

    python -m venv .venv-tf &&
        .venv-tf/bin/pip install tensorflow-cpu tensorflow-datasets array-record pillow importlib_resources
    .venv-tf/bin/python scripts/prepare_tfds.py --data-dir ../shared/data/cifar10

TFDS's builder downloads the BINARY archive (cifar-10-binary.tar.gz). This script writes that archive from the
images of the python one (label byte, then the 3,072 bytes of the image, the batches in order), and puts it in
TFDS's download folder under the name TFDS gives the registered download, with its .INFO file: TFDS then takes
it as downloaded, and the build reads it offline. The re-made archive holds the same images but not the same
bytes as Toronto's (tar and gzip headers), hence this route rather than a checksum TFDS would refuse. Finally the
prepared dataset is read back as the trainers read it, and its content hashes must equal the archive's.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cifar_core import data, tfds_data  # noqa: E402
from cifar_core.files import replace_atomically  # noqa: E402

BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
BINARY_FOLDER = "cifar-10-batches-bin"
LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = 5


def fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def binary_records(images: np.ndarray, labels: np.ndarray) -> bytes:
    """CIFAR-10's binary format: per image a label byte, then the image as 1024 R, 1024 G, 1024 B bytes."""
    records = np.empty((len(images), 1 + 3072), np.uint8)
    records[:, 0] = labels
    records[:, 1:] = np.asarray(images).transpose(0, 3, 1, 2).reshape(len(images), -1)
    return records.tobytes()


def write_binary_archive(dataset: data.Cifar10, path: Path) -> None:
    """cifar-10-binary.tar.gz's layout, written atomically to `path`."""
    files = {f"data_batch_{i}.bin": binary_records(dataset.train_images[part], dataset.train_labels[part])
             for i, part in enumerate(np.array_split(np.arange(len(dataset.train_labels)), TRAIN_BATCHES), 1)}
    files["test_batch.bin"] = binary_records(dataset.test_images, dataset.test_labels)
    files["batches.meta.txt"] = ("\n".join(LABEL_NAMES) + "\n").encode()
    with replace_atomically(path) as tmp, tarfile.open(tmp, mode="w:gz") as tar:
        for name, content in files.items():
            member = tarfile.TarInfo(f"{BINARY_FOLDER}/{name}")
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))


def place_as_downloaded(dataset: data.Cifar10, download_dir: Path) -> Path:
    """Write the binary archive where TFDS looks for its registered download, with the .INFO file it checks."""
    from tensorflow_datasets.core.download import checksums, resource

    url_info = checksums.get_all_url_infos().get(BINARY_URL)
    if url_info is None:
        fail(f"this tensorflow-datasets registers no download for {BINARY_URL}; its cifar10 builder changed.")
    download_dir.mkdir(parents=True, exist_ok=True)
    target = download_dir / resource.get_dl_fname(BINARY_URL, url_info.checksum)
    write_binary_archive(dataset, target)
    info = {"urls": [BINARY_URL], "dataset_names": [tfds_data.NAME], "original_fname": Path(BINARY_URL).name}
    Path(f"{target}.INFO").write_text(json.dumps(info))
    for stale in (download_dir / "extracted").glob(f"*{target.name}"):  # an extraction of an earlier archive
        shutil.rmtree(stale, ignore_errors=True)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="the archive's folder (default: $CIFAR10_DIR, the cache, the download)")
    parser.add_argument("--tfds-data-dir",
                        help="TFDS's data folder (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    args = parser.parse_args(argv)
    root = tfds_data.data_root(args.tfds_data_dir)
    missing = [name for name in ("tensorflow", "tensorflow_datasets", "array_record")
               if importlib.util.find_spec(name) is None]  # the stock builder prepares through TensorFlow
    if missing:
        fail(f"preparing needs tensorflow-cpu, tensorflow-datasets and array-record (missing: {', '.join(missing)}); "
             "see this script's docstring for an environment of their own.")
    import tensorflow_datasets as tfds
    try:
        dataset = data.load(args.data_dir, source="archive")
    except data.DataError as error:
        fail(str(error))
    try:
        return prepare(dataset, root, tfds_data.prepared_dir(args.tfds_data_dir), tfds)
    except data.DataError as error:
        fail(str(error))


def prepare(dataset: data.Cifar10, root: Path, existing: Path | None, tfds) -> int:
    if existing is not None:
        have = tfds_data.read(existing)
        if have.content_sha256 != dataset.content_sha256:
            fail(f"{existing} already holds a cifar10 with other images than {dataset.source}; choose another "
                 "--tfds-data-dir or remove it. Nothing was changed.")
        print(f"{existing}: already prepared, the same images as {dataset.source}")
        return 0
    download_dir = root / "downloads"
    place_as_downloaded(dataset, download_dir)
    builder = tfds.builder(tfds_data.NAME, data_dir=str(root), file_format="array_record")
    builder.download_and_prepare(download_dir=str(download_dir))
    prepared = tfds_data.read(Path(builder.data_dir))
    if prepared.content_sha256 != dataset.content_sha256:
        fail(f"{builder.data_dir}: read back, the images differ from {dataset.source} "
             f"({prepared.content_sha256} vs {dataset.content_sha256}).")
    print(f"{builder.data_dir}: TFDS cifar10 prepared from {dataset.source}; read back in the official order, its "
          f"images equal the archive's (train {prepared.content_sha256['train'][:16]}…, "
          f"test {prepared.content_sha256['test'][:16]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
