"""scripts/paper_slice.sh carries both backends' runs forward in slices, as the paper runs are: a budget stops
them resumable (exit 75), the next call continues each from its run directory, a finished run is left alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cifar_core import synthetic
from cifar_core.run import read_metrics

ROOT = Path(__file__).resolve().parent.parent
TINY = "--depth 8 --batch-size 16 --iterations 4 --eval-every 2 --log-every 1"


def slice_(tmp_path, budget, **extra):
    env = {**os.environ, "PYTHON": sys.executable, "RUNS": str(tmp_path / "runs"), "DATA_DIR": str(tmp_path / "data"),
           "START_FLAGS": TINY, "PYTHONWARNINGS": "ignore",
           "TAKEOVER_MIN_S": "1000000000",  # slices exactly as budgeted; the takeover's tests use a stand-in trainer
           **extra}
    env.pop("XLA_FLAGS", None)  # one CPU device, as in a real slice (conftest's four are for the other tests)
    return subprocess.run(["bash", str(ROOT / "scripts" / "paper_slice.sh"), budget], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
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
        assert config["options"]["threads"] == 1  # one thread each, side by side
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


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*differ from official CIFAR-10:UserWarning")
def test_depth_picks_the_run_directories_and_the_network(tmp_path):
    """DEPTH, as SEED: the run directories' names, and the --depth each run starts with (its config.json)."""
    synthetic.write_archive(tmp_path / "data", train_per_batch=40, test_size=40)
    done = slice_(tmp_path, "0", DEPTH="8", SEED="3", START_FLAGS=TINY.replace("--depth 8 ", ""))
    assert done.returncode == 75, done.stdout + done.stderr
    runs = [tmp_path / "runs" / f"{b}-resnet8-64k-seed3" for b in ("jax_impl", "torch_impl")]
    assert sorted((tmp_path / "runs").iterdir()) == runs
    for run in runs:
        recipe = json.loads((run / "config.json").read_text())["recipe"]
        assert (recipe["depth"], recipe["seed"], recipe["iterations"]) == (8, 3, 4)
        assert "--preset paper --depth 8 " in (run / "train.log").read_text()


# Stands in for `python -m <backend>.train ...` (and passes `python -c` on to Python): records how it was started,
# then torch_impl "finishes" after a second, and jax_impl trains until SIGTERM (exit 143) or its --time-budget
# in seconds (exit 75), unless it is continuing a run (--resume), which "finishes" at once.
FAKE_PYTHON = r"""#!/usr/bin/env bash
[ "$1" = -c ] && exec "$REAL_PYTHON" "$@"
backend=${2%.train}
args=("$@")
for i in "${!args[@]}"; do
    case ${args[$i]} in --run-dir) run=${args[$((i + 1))]} ;; --time-budget) budget=${args[$((i + 1))]} ;; esac
done
echo "$backend threads=$OMP_NUM_THREADS cpus=$(taskset -pc $$ | cut -d: -f2 | tr -d ' ') budget=$budget $*" \
    >> "$FAKE_LOG"
if [ "$backend" = torch_impl ]; then sleep 1; exit 0; fi
case " $* " in *" --resume "*) exit 0 ;; esac
echo '{}' > "$run/config.json"
trap 'exit 143' TERM
end=$(( SECONDS + budget ))
while [ "$SECONDS" -lt "$end" ]; do sleep 0.1; done
exit 75
"""
CORES = len(os.sched_getaffinity(0))  # the cores this process may use, as the script's nproc counts them
needs_two_cores = pytest.mark.skipif(CORES < 2 or not shutil.which("taskset"),
                                     reason="the side-by-side placement needs two cores and taskset")


def fake_env(tmp_path, **extra) -> dict:
    """paper_slice.sh's environment with FAKE_PYTHON as its Python (which logs its starts to tmp_path/fake.log)."""
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "REAL_PYTHON": sys.executable, "RUNS": str(tmp_path / "runs"),
           "FAKE_LOG": str(tmp_path / "fake.log"), **extra}
    env.pop("TAKEOVER_MIN_S", None)  # the default
    return env


def fake_slice(tmp_path, budget):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "paper_slice.sh"), budget], env=fake_env(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return done, (tmp_path / "fake.log").read_text().splitlines()


@needs_two_cores
def test_the_run_left_alone_continues_on_every_core(tmp_path):
    done, started = fake_slice(tmp_path, "3600")
    assert done.returncode == 0, done.stdout + done.stderr
    jax_run = tmp_path / "runs" / "jax_impl-resnet32-64k-seed0"
    assert f"{jax_run}: stopping it to continue on all {CORES} cores" in done.stdout
    assert f"{jax_run}: finished" in done.stdout
    torch_start, jax_start, jax_again = sorted(started, key=lambda line: (line.startswith("jax"), "--resume" in line))
    assert torch_start.startswith("torch_impl threads=1 cpus=0 budget=3600 ")
    assert jax_start.startswith("jax_impl threads=1 cpus=1 budget=3600 ") and "--preset paper" in jax_start
    assert jax_again.startswith(f"jax_impl threads={CORES} ") and "--resume --run-dir" in jax_again
    assert "cpus=1 " not in jax_again  # unpinned
    assert 3000 < int(jax_again.split("budget=")[1].split()[0]) < 3600  # what is left of the slice's budget
    assert (jax_run / "train.log").read_text().count("=== slice started") == 2


@needs_two_cores
def test_a_run_whose_partner_has_finished_starts_on_every_core(tmp_path):
    """One run left (the other finished, e.g. on a GPU): it is not pinned to one core beside nothing."""
    finished = tmp_path / "runs" / "torch_impl-resnet32-64k-seed0"
    finished.mkdir(parents=True)
    (finished / "final.json").write_text("{}")
    done, started = fake_slice(tmp_path, "1")
    assert done.returncode == 75, done.stdout + done.stderr
    assert f"{finished}: finished; nothing to do" in done.stdout
    assert "jax_impl-resnet32-64k-seed0: pid " in done.stdout and f"(on all {CORES} cores)" in done.stdout
    [jax_start] = started
    assert jax_start.startswith(f"jax_impl threads={CORES} ") and "cpus=0 " not in jax_start


@needs_two_cores
def test_no_restart_when_little_of_the_budget_is_left(tmp_path):
    done, started = fake_slice(tmp_path, "3")
    assert done.returncode == 75, done.stdout + done.stderr
    assert "stopping it to continue" not in done.stdout and len(started) == 2
    assert "jax_impl-resnet32-64k-seed0: stopped, resumable (exit 75)" in done.stdout


def test_a_budget_that_is_no_duration_is_a_one_line_error(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "paper_slice.sh"), "soon"], cwd=tmp_path,
                          env={**os.environ, "PYTHON": sys.executable, "RUNS": str(tmp_path / "runs")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: BUDGET soon is not a duration")
    assert not (tmp_path / "runs").exists()


@needs_two_cores
def test_sigterm_stops_the_slice_resumable_and_reports_it(tmp_path):
    """SIGTERM to the script reaches the trainers; it waits for them to save and reports them resumable (the
    wait it interrupts leaves its pid variable unset, which `set -u` must not turn into a crash)."""
    script = subprocess.Popen(["bash", str(ROOT / "scripts" / "paper_slice.sh"), "3600"],
                              env=fake_env(tmp_path, BACKENDS="jax_impl"), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "fake.log").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # the stand-in trainer sets its TERM trap
    script.terminate()
    out, err = script.communicate(timeout=60)
    assert script.returncode == 75, out + err
    assert "jax_impl-resnet32-64k-seed0: stopped, resumable (exit 143)" in out
    assert "unbound variable" not in err
