"""placement: how to spend a CPU on the two paper runs, one backend after the other with every core each, or both
side by side, each pinned to a core of its own with one thread (what scripts/paper_slice.sh does); its section
of results/benchmarks.md.

Runs the real trainers (paper preset, ResNet-32, batch 128, --full-train) into temporary run directories: first
each backend alone (all cores, the trainers' default threads), one after the other, then both at once, each
under `taskset -c i` with OMP_NUM_THREADS=1. Every trainer stops itself with --time-budget SECONDS; the
training throughput is the median images/s of its metrics records after the first (which holds start-up and
compilation). Combined throughput is what matters for the two runs: one after the other it is
2 / (1/a + 1/b) of the backends' rates a and b; side by side, 2 x the slower one's rate (the faster run ends
first and leaves its core idle).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO_ROOT, REPORT, Provenance, check_depth, fail, positive, table, usable_cores

@dataclasses.dataclass(frozen=True)
class Setup:
    data_dir: str | None = None
    seconds: float = 120.0
    depth: int = 32
    batch_size: int = 128
    log_every: int = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="CIFAR-10 (else the trainers' search: $CIFAR10_DIR, the cache)")
    parser.add_argument("--seconds", type=float, default=120, help="each trainer's --time-budget")
    parser.add_argument("--depth", type=int, default=32, help="the runs' --depth (the paper runs: 32)")
    parser.add_argument("--batch-size", type=positive, default=128, help="the runs' --batch-size (the paper runs: 128)")
    parser.add_argument("--log-every", type=positive, default=10, help="steps per metrics record, the rates read")
    parser.add_argument("--out", type=Path, default=REPORT)


TRAINERS = ("torch_impl", "jax_impl")
PAPER_IMAGES = 64_000 * 128  # one paper run


def measure(setup: Setup, provenance: Provenance) -> dict:
    """Each trainer alone (every core, its default threads), one after the other; then both at once, each under
    `taskset -c i` with OMP_NUM_THREADS=1: {"alone": rates, "side": rates}."""
    check_depth(setup.depth)
    if usable_cores() < 2:
        fail("side by side needs at least 2 cores")
    with tempfile.TemporaryDirectory(prefix="placement-") as scratch:
        alone = {b: trainer_rate(start_trainer(setup, b, Path(scratch) / f"alone-{b}", None)) for b in TRAINERS}
        started = [start_trainer(setup, b, Path(scratch) / f"side-{b}", core) for core, b in enumerate(TRAINERS)]
        side = {b: trainer_rate(run) for b, run in zip(TRAINERS, started)}
    return {"setup": setup, "provenance": provenance, "alone": alone, "side": side}


def start_trainer(setup: Setup, backend: str, run_dir: Path, core: int | None):
    command = [sys.executable, "-m", f"{backend}.train", "--preset", "paper", "--full-train",
               "--depth", str(setup.depth),
               "--batch-size", str(setup.batch_size), "--log-every", str(setup.log_every), "--time-budget",
               str(setup.seconds), "--no-progress", "--run-dir", str(run_dir)]
    command += ["--data-dir", setup.data_dir] if setup.data_dir else []
    env = dict(os.environ)
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
        env["OMP_NUM_THREADS"] = "1"
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    return process, run_dir


def trainer_rate(run) -> float:
    """The median images/s of a finished trainer's metrics records after the first (start-up and compilation)."""
    process, run_dir = run
    _, err = process.communicate()
    if process.returncode != 75:  # the time budget's resumable exit
        fail(f"{' '.join(process.args[:6])}... exited {process.returncode}: {err.strip()[-500:]}")
    metrics = run_dir / "metrics.jsonl"  # none if the budget ran out before the first record
    records = [json.loads(line) for line in metrics.read_text().splitlines()
               if line.strip()] if metrics.exists() else []
    rates = [r["images_per_s"] for r in records if r["kind"] == "train" and r["images_per_s"]][1:]
    if len(rates) < 3:
        fail(f"{run_dir.name}: only {len(rates)} timed records; give more --seconds")
    return statistics.median(rates)


def render(results: dict) -> str:
    setup, alone, side = results["setup"], results["alone"], results["side"]
    sequential, parallel = len(TRAINERS) / sum(1 / rate for rate in alone.values()), len(TRAINERS) * min(side.values())
    hours = lambda rate: f"{2 * PAPER_IMAGES / rate / 3600:.1f} h of training"  # noqa: E731
    provenance = results["provenance"]
    return "\n".join([
        "# Placement of the two paper runs on this CPU", "",
        f"`{provenance.command}` on {provenance.cpu}, {provenance.date}, commit {provenance.commit}. "
        f"ResNet-{setup.depth}, batch {setup.batch_size}, training images/s (median of the metrics records "
        "after the first).", "",
        table(["Placement", "torch_impl images/s", "jax_impl images/s", "Both runs, images/s", "Two 64k runs take"], [
            [f"one after the other, {usable_cores()} threads each", f"{alone['torch_impl']:.1f}",
             f"{alone['jax_impl']:.1f}",
             f"{sequential:.1f}", hours(sequential)],
            ["side by side, one pinned core and thread each", f"{side['torch_impl']:.1f}", f"{side['jax_impl']:.1f}",
             f"{parallel:.1f}", hours(parallel)]]), "",
        f"Side by side is {parallel / sequential:.2f}x the throughput of one after the other"
        + (" (scripts/paper_slice.sh runs them so)." if parallel > sequential
           else "; run the backends one after the other here.")]) + "\n"
