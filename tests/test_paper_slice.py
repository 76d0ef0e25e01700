"""scripts/paper_slice.sh carries both backends' runs forward in slices, as the paper runs are: a budget stops
them resumable (exit 75), the next call continues each from its run directory, a finished run is left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_core import synthetic
from cifar_core.run import read_metrics

ROOT = Path(__file__).resolve().parent.parent
TINY = "--depth 8 --batch-size 16 --iterations 4 --eval-every 2 --log-every 1"


def slice_(tmp_path, budget):
    env = {**os.environ, "PYTHON": sys.executable, "RUNS": str(tmp_path / "runs"), "DATA_DIR": str(tmp_path / "data"),
           "START_FLAGS": TINY, "PYTHONWARNINGS": "ignore"}
    env.pop("XLA_FLAGS", None)  # one CPU device, as in a real slice (conftest's four are for the other tests)
    return subprocess.run(["bash", str(ROOT / "scripts" / "paper_slice.sh"), budget], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.filterwarnings("ignore:.*differ from official CIFAR-10:UserWarning")
def test_slices_carry_both_runs_to_the_end(tmp_path):
    synthetic.write_archive(tmp_path / "data", train_per_batch=40, test_size=40)
    first = slice_(tmp_path, "0")  # stops each run after its first step
    assert first.returncode == 75, first.stdout + first.stderr
    runs = {b: tmp_path / "runs" / f"{b}-resnet32-64k-seed0" for b in ("torch_impl", "jax_impl")}
    for backend, run in runs.items():
        assert f"{run}: stopped, resumable (exit 75)" in first.stdout
        config = json.loads((run / "config.json").read_text())
        assert config["recipe"]["full_train"] and config["recipe"]["iterations"] == 4  # protocol + START_FLAGS
        assert config["options"].get("threads", 1) == 1  # one thread each, side by side
    second = slice_(tmp_path, "1h")
    assert second.returncode == 0, second.stdout + second.stderr
    for backend, run in runs.items():
        assert f"{run}: finished" in second.stdout
        assert [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"] == [1, 2, 3, 4]
        slices = json.loads((run / "config.json").read_text())["slices"]
        assert [(s["from_step"], s["to_step"], s["stopped"]) for s in slices] == \
            [(0, 1, "time budget"), (1, 4, "finished")]
        log = (run / "train.log").read_text()
        assert log.count("=== slice started") == 2 and "--resume --run-dir" in log
    third = slice_(tmp_path, "1h")
    assert third.returncode == 0 and third.stdout.count("finished; nothing to do") == 2
