"""scripts/device/pack_data.py cuts the data into parts that each fit into one device call beside the working
tree that travels with it (64 MiB in all)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "pack_data", Path(__file__).resolve().parent.parent / "scripts" / "device" / "pack_data.py")
pack_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pack_data)

MiB = 2**20
COMPRESSED = 124_782_792  # CIFAR-10 as pack_data compresses it


def test_parts_fit_beside_the_working_tree():
    assert pack_data.parts_needed(COMPRESSED, 12 * MiB) == 3  # the first kit's tree
    assert pack_data.parts_needed(COMPRESSED, 28 * MiB) == 4  # December 2026, where 3 parts were refused
    for tree in (0, 12 * MiB, 28 * MiB, 50 * MiB):
        n = pack_data.parts_needed(COMPRESSED, tree)
        assert -(-COMPRESSED // n) + tree + pack_data.HEADROOM <= pack_data.CALL_LIMIT
        assert n == 1 or -(-COMPRESSED // (n - 1)) + tree + pack_data.HEADROOM > pack_data.CALL_LIMIT  # fewest
    with pytest.raises(SystemExit, match="leaves no room"):
        pack_data.parts_needed(COMPRESSED, 62 * MiB)


@pytest.mark.skipif(not shutil.which("git"), reason="needs git")
def test_working_tree_counts_what_travels(tmp_path):
    """Tracked and untracked-not-ignored files travel; ignored ones do not; outside a checkout: 0."""
    assert pack_data.working_tree_bytes(tmp_path) == 0
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("build/\n")  # 7 bytes
    (tmp_path / "tracked.bin").write_bytes(b"x" * 1000)
    subprocess.run(["git", "-C", str(tmp_path), "add", "tracked.bin"], check=True)
    (tmp_path / "new.txt").write_bytes(b"y" * 10)
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "part").write_bytes(b"z" * 5000)
    assert pack_data.working_tree_bytes(tmp_path) == 1000 + 10 + 7
