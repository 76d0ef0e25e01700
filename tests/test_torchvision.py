"""torchvision's CIFAR-10 folder as --data-dir (`-k torchvision`): the folder `torchvision.datasets.CIFAR10(root,
download=True)` leaves is read by the core unchanged, and torchvision's own class and the core find the same
images (HWC uint8) and labels, train and test. It needs the real CIFAR-10 ($CIFAR10_DIR): torchvision checks each
file's MD5 against the official release.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torchvision
import torchvision.datasets.cifar as tv_cifar
from torchvision.datasets.utils import check_integrity, extract_archive

from cifar_core import data

REAL = os.environ.get("CIFAR10_DIR")
REAL_ARCHIVE = Path(REAL or ".") / data.ARCHIVE_NAME


def read_with_torchvision(archive: Path, root: Path, monkeypatch) -> tuple[dict, bool]:
    """torchvision's download step without the network (its own extraction of the archive into root), then each
    split read by torchvision's own class: (arrays, whether the files have the official MD5s). torchvision checks
    every file's MD5 against the official release's; a copy re-packed byte-differently (as this machine's is) fails
    that check though its pixels are the official ones, so then, and only then, the check is switched off and the
    test checks the content hashes instead."""
    extract_archive(str(archive), str(root))
    CIFAR10 = tv_cifar.CIFAR10
    files = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    official = all(check_integrity(os.path.join(root, CIFAR10.base_folder, name), md5) for name, md5 in files)
    if not official:
        monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    train, test = CIFAR10(str(root), train=True), CIFAR10(str(root), train=False)
    arrays = {"train_images": train.data, "train_labels": np.asarray(train.targets), "test_images": test.data,
              "test_labels": np.asarray(test.targets)}
    return arrays, official


@pytest.mark.real_data
@pytest.mark.skipif(not REAL_ARCHIVE.is_file(), reason=f"needs $CIFAR10_DIR/{data.ARCHIVE_NAME}, the real CIFAR-10")
def test_torchvision_cifar10_folder_is_a_data_dir_with_the_same_images_and_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_CIFAR_CACHE", str(tmp_path / "cache"))  # decode this folder, not a cached copy
    root = tmp_path / "torchvision-root"
    root.mkdir()
    shutil.copy(REAL_ARCHIVE, root / data.ARCHIVE_NAME)  # where torchvision's download puts it
    theirs, official = read_with_torchvision(root / data.ARCHIVE_NAME, root, monkeypatch)
    assert (root / data.BATCHES_DIR).is_dir()  # torchvision's layout: the archive and the folder it extracted

    ours = data.load(root, download=False)
    assert Path(ours.source).parent == root  # read from the folder torchvision left, not from a copy elsewhere
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        mine = getattr(ours, name)
        assert mine.shape == theirs[name].shape and mine.dtype.kind == theirs[name].dtype.kind, name
        np.testing.assert_array_equal(mine, theirs[name], err_msg=f"{name} (torchvision {torchvision.__version__})")
    assert ours.train_images.shape == (50_000, 32, 32, 3) and ours.test_images.dtype == np.uint8
    if not official:  # the MD5 check torchvision skipped: the pixels are the official ones
        assert ours.content_sha256 == data.CONTENT_SHA256
