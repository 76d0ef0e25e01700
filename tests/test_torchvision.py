"""torchvision's CIFAR-10 folder as --data-dir (`-k torchvision`): the folder `torchvision.datasets.CIFAR10(root,
download=True)` leaves is read by the core unchanged, and torchvision's own class and the core find the same
images (HWC uint8) and labels, train and test.

torchvision is no dependency of the project (the `torchvision` extra installs it), and on this machine the only
torchvision builds for the CPU torch the project installs do not import beside it. So torchvision runs in a Python
of its own: $TORCHVISION_PYTHON (.ci/run makes one, with the torch that torchvision was built for), else this
Python where it has torchvision; without either the test is skipped. It needs the real CIFAR-10 ($CIFAR10_DIR):
torchvision checks each file's MD5 against the official release.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar_core import data

TORCHVISION_PYTHON = os.environ.get("TORCHVISION_PYTHON") or (
    sys.executable if importlib.util.find_spec("torchvision") else None)
REAL = os.environ.get("CIFAR10_DIR")
REAL_ARCHIVE = Path(REAL or ".") / data.ARCHIVE_NAME

# torchvision's download step without the network (its own extraction of the archive into root), then each split
# read by torchvision's own class. torchvision checks every file's MD5 against the official release's; a copy
# re-packed byte-differently (as this machine's is) fails that check though its pixels are the official ones, so
# then, and only then, the check is switched off and the test checks the content hashes instead.
TORCHVISION_READER = """
import os, sys
import numpy as np
import torchvision
import torchvision.datasets.cifar as tv_cifar
from torchvision.datasets.utils import check_integrity, extract_archive
archive, root, out = sys.argv[1:]
extract_archive(archive, root)
CIFAR10 = tv_cifar.CIFAR10
files = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
official = all(check_integrity(os.path.join(root, CIFAR10.base_folder, name), md5) for name, md5 in files)
if not official:
    tv_cifar.check_integrity = lambda *args, **kwargs: True
train, test = CIFAR10(root, train=True), CIFAR10(root, train=False)
np.savez(out, train_images=train.data, train_labels=np.asarray(train.targets), test_images=test.data,
         test_labels=np.asarray(test.targets), version=torchvision.__version__, official_md5=official)
"""


@pytest.mark.real_data
@pytest.mark.skipif(not TORCHVISION_PYTHON,
                    reason="no torchvision: pip install -e '.[torchvision]', or set TORCHVISION_PYTHON (see .ci/run)")
@pytest.mark.skipif(not REAL_ARCHIVE.is_file(), reason=f"needs $CIFAR10_DIR/{data.ARCHIVE_NAME}, the real CIFAR-10")
def test_torchvision_cifar10_folder_is_a_data_dir_with_the_same_images_and_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_CIFAR_CACHE", str(tmp_path / "cache"))  # decode this folder, not a cached copy
    root = tmp_path / "torchvision-root"
    root.mkdir()
    shutil.copy(REAL_ARCHIVE, root / data.ARCHIVE_NAME)  # where torchvision's download puts it
    done = subprocess.run([TORCHVISION_PYTHON, "-c", TORCHVISION_READER, str(root / data.ARCHIVE_NAME), str(root),
                           str(tmp_path / "tv.npz")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (root / data.BATCHES_DIR).is_dir()  # torchvision's layout: the archive and the folder it extracted
    theirs = np.load(tmp_path / "tv.npz")

    ours = data.load(root, download=False)
    assert Path(ours.source).parent == root  # read from the folder torchvision left, not from a copy elsewhere
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        mine = getattr(ours, name)
        assert mine.shape == theirs[name].shape and mine.dtype.kind == theirs[name].dtype.kind, name
        np.testing.assert_array_equal(mine, theirs[name], err_msg=f"{name} (torchvision {theirs['version']})")
    assert ours.train_images.shape == (50_000, 32, 32, 3) and ours.test_images.dtype == np.uint8
    if not theirs["official_md5"]:  # the MD5 check torchvision skipped: the pixels are the official ones
        assert ours.content_sha256 == data.CONTENT_SHA256
