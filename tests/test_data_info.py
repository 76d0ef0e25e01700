"""scripts/data_info.py end to end, as a user runs it: on a tiny archive, and on the real data when present."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar_core import data, plan

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "data_info.py"


def run_data_info(*args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_data_info_on_tiny_archive(tiny, tiny_tar, tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "RESNET_CIFAR_CACHE": str(cache)}
    env.pop("CIFAR10_DIR", None)
    first = run_data_info("--data-dir", str(tiny_tar), env=env)
    assert "SHA-256" in first.stderr  # not official CIFAR-10: the content warning
    assert len(list((cache / "decoded").iterdir())) == 1  # the decoded arrays were cached
    second = run_data_info("--data-dir", str(tiny_tar), env=env)
    a, b = json.loads(first.stdout), json.loads(second.stdout)

    assert a == b  # the cached second start describes exactly the same data
    assert a["source"] == str(tiny_tar / data.ARCHIVE_NAME)
    assert a["sizes"] == {"train": 90, "val": 10, "test": 20}
    assert a["class_counts"] == {"train": [9] * 10, "val": [1] * 10, "test": [2] * 10}
    assert a["content_sha256"] == {"train": hashlib.sha256(tiny.train_rows.tobytes()).hexdigest(),
                                   "test": hashlib.sha256(tiny.test_rows.tobytes()).hexdigest()}
    assert a["content_matches_official"] is False
    assert a["plan_sha256"] == {"epoch_0": plan.plan_hash(0, 0, 90), "epoch_1": plan.plan_hash(0, 1, 90)}
    assert a["plan_sha256"]["epoch_0"] != a["plan_sha256"]["epoch_1"]
    val = data.split_indices(tiny.train_labels, 0.1, 0)[1]
    assert a["split_sha256"] == hashlib.sha256(val.astype("<i8").tobytes()).hexdigest()
    assert (a["seed"], a["split_seed"]) == (0, 0)

    other = json.loads(run_data_info("--data-dir", str(tiny_tar), "--seed", "1", "--split-seed", "2",
                                     env=env).stdout)
    assert other["plan_sha256"]["epoch_0"] != a["plan_sha256"]["epoch_0"]
    assert other["split_sha256"] != a["split_sha256"]
    assert other["content_sha256"] == a["content_sha256"]


def test_data_info_reports_missing_data(tmp_path):
    env = {**os.environ, "RESNET_CIFAR_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(tmp_path / "nowhere")], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.returncode
    assert "error:" in result.stderr and "--data-dir" in result.stderr and "Traceback" not in result.stderr


def _real_data_dir() -> Path | None:
    value = os.environ.get("CIFAR10_DIR")
    if not value:
        return None
    path = Path(value).expanduser()
    if (path / data.ARCHIVE_NAME).is_file() or (path / data.BATCHES_DIR).is_dir() \
            or (path / data.TEST_FILE).is_file():
        return path
    return None


@pytest.mark.real_data
@pytest.mark.skipif(_real_data_dir() is None, reason="real CIFAR-10 not available: set CIFAR10_DIR")
def test_data_info_on_real_data():
    env = dict(os.environ)  # the user's CIFAR10_DIR and default cache
    info = json.loads(run_data_info(env=env).stdout)
    assert info["sizes"] == {"train": 45_000, "val": 5_000, "test": 10_000}
    assert info["class_counts"] == {"train": [4500] * 10, "val": [500] * 10, "test": [1000] * 10}
    assert info["content_sha256"] == data.CONTENT_SHA256
    assert info["content_matches_official"] is True
    np.testing.assert_allclose(info["mean_rgb"], [0.4914, 0.4822, 0.4465], atol=2e-3)  # the 45k split's mean
