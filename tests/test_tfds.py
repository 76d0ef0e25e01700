"""TFDS as a data source (`-k tfds`): a cifar10 prepared offline by scripts/prepare_tfds.py from the archive, read
back without TensorFlow and put in the official order, gives the archive's arrays byte for byte, the same content
hashes and the same training losses; `auto` falls back to it; a missing one is a one-line error.

Preparing needs TensorFlow, which the project does not depend on: the tests run prepare_tfds.py with the Python in
$TFDS_PREPARE_PYTHON (.ci/run makes one), once per session, from a small synthetic archive in the official layout;
without that Python they are skipped. Reading needs the `tfds` extra. The real CIFAR-10 takes the same code path
(and a minute to prepare); prepare_tfds.py itself checks, every time it prepares, that what it wrote reads back as
the archive's images byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar_core import data, synthetic, tfds_data
from cifar_core.run import read_metrics
from trainer_runs import TRAINERS

ROOT = Path(__file__).resolve().parent.parent
PREPARE_PYTHON = os.environ.get("TFDS_PREPARE_PYTHON")
needs_prepared = pytest.mark.skipif(not PREPARE_PYTHON, reason="no Python with TensorFlow to prepare a TFDS cifar10: "
                                                               "set TFDS_PREPARE_PYTHON (see .ci/run)")
# slow: prepares a TFDS copy with TensorFlow and trains from it
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*differ from official CIFAR-10:UserWarning")]


@pytest.fixture(scope="session")
def prepared_session(tmp_path_factory):
    pytest.importorskip("tensorflow_datasets", reason="the tfds extra: pip install -e '.[tfds]'")
    root = tmp_path_factory.mktemp("tfds")
    archive = root / "archive"
    synthetic.write_archive(archive, train_per_batch=40, test_size=40)
    env = {**os.environ, "RESNET_CIFAR_CACHE": str(root / "prepare-cache")}
    done = subprocess.run([PREPARE_PYTHON, "scripts/prepare_tfds.py", "--data-dir", str(archive),
                           "--tfds-data-dir", str(root / "tfds")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "images equal the archive's" in done.stdout
    return archive, root / "tfds", root / "cache"


@pytest.fixture
def prepared(prepared_session, monkeypatch):
    """(archive folder, TFDS data folder); the decoded arrays are cached once for all these tests (each other test
    gets a cache of its own)."""
    archive, tfds_dir, cache = prepared_session
    monkeypatch.setenv("RESNET_CIFAR_CACHE", str(cache))
    return archive, tfds_dir


@needs_prepared
def test_tfds_copy_equals_the_archive_byte_for_byte(prepared):
    archive_dir, tfds_dir = prepared
    archive = data.load(archive_dir, source="archive")
    copy = data.load(source="tfds", tfds_data_dir=tfds_dir)
    assert copy.source.startswith("tfds:") and copy.content_sha256 == archive.content_sha256
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(copy, name), getattr(archive, name), err_msg=name)
    again = data.load(source="tfds", tfds_data_dir=tfds_dir)  # the decoded cache
    assert isinstance(again.train_images, np.memmap) and again.content_sha256 == copy.content_sha256


@needs_prepared
@pytest.mark.parametrize("backend", TRAINERS)
def test_training_from_tfds_gives_the_archives_losses(prepared, backend, tmp_path):
    archive_dir, tfds_dir = prepared
    common = ["--preset", "smoke", "--iterations", "4", "--eval-every", "4", "--log-every", "1", "--no-progress"]
    TRAINERS[backend].main([*common, "--data-source", "tfds", "--tfds-data-dir", str(tfds_dir),
                            "--run-dir", str(tmp_path / "tfds")])
    TRAINERS[backend].main([*common, "--data-source", "archive", "--data-dir", str(archive_dir),
                            "--run-dir", str(tmp_path / "archive")])
    losses = {name: [r["loss"] for r in read_metrics(tmp_path / name / "metrics.jsonl") if r["kind"] == "train"]
              for name in ("tfds", "archive")}
    assert len(losses["tfds"]) == 4 and losses["tfds"] == losses["archive"]
    configs = {name: json.loads((tmp_path / name / "config.json").read_text())["data"] for name in ("tfds", "archive")}
    assert configs["tfds"]["content_sha256"] == configs["archive"]["content_sha256"]
    assert configs["tfds"]["source"].startswith("tfds:")


@needs_prepared
def test_auto_falls_back_to_a_prepared_tfds_copy_and_data_info_reads_it(prepared, monkeypatch):
    archive_dir, tfds_dir = prepared
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))  # no archive anywhere: $CIFAR10_DIR unset, empty cache
    assert data.load().source.startswith("tfds:")
    info = subprocess.run([sys.executable, "scripts/data_info.py", "--data-source", "tfds"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["content_sha256"] == data.load(archive_dir, source="archive").content_sha256


@needs_prepared
def test_preparing_again_changes_nothing(prepared):
    archive_dir, tfds_dir = prepared
    before = {p: p.stat().st_mtime_ns for p in tfds_dir.rglob("*") if p.is_file()}
    done = subprocess.run([PREPARE_PYTHON, "scripts/prepare_tfds.py", "--data-dir", str(archive_dir),
                           "--tfds-data-dir", str(tfds_dir)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "already prepared" in done.stdout, done.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in tfds_dir.rglob("*") if p.is_file()} == before


def test_tfds_source_without_a_prepared_copy_is_a_one_line_error(tmp_path):
    with pytest.raises(data.DataError) as error:
        data.load(source="tfds", tfds_data_dir=tmp_path)
    assert "no prepared TFDS cifar10" in str(error.value) and "prepare_tfds.py" in str(error.value)
    assert "\n" not in str(error.value)
    assert tfds_data.prepared_dir(tmp_path) is None


def test_an_unknown_data_source_is_refused_by_the_trainers(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        TRAINERS["jax_impl"].main(["--data-source", "hdf5", "--run-dir", str(tmp_path / "run")])
    assert stopped.value.code == 2 and "--data-source" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
