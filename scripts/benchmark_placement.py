"""How to spend a CPU on the two paper runs: one backend after the other with every core each, or both side
by side, each pinned to a core of its own with one thread (what scripts/paper_slice.sh does)?

    python scripts/benchmark_placement.py [--data-dir D] [--seconds 120] [--out results/benchmark_placement.md]

Runs the real trainers (paper preset, ResNet-32, batch 128, --full-train) into temporary run directories: first
each backend alone (all cores, the trainers' default threads), one after the other, then both at once, each
under `taskset -c i` with OMP_NUM_THREADS=1. Every trainer stops itself with --time-budget SECONDS; the
training throughput is the median images/s of its metrics records after the first (which holds start-up and
compilation). Combined throughput is what matters for the two runs: one after the other it is
2 / (1/a + 1/b) of the backends' rates a and b; side by side, 2 x the slower one's rate (the faster run ends
first and leaves its core idle). Prints a Markdown report (and writes it to --out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from cifar_core.run import cpu_name, git_info  # noqa: E402

BACKENDS = ("torch_impl", "jax_impl")
PAPER_IMAGES = 64_000 * 128  # one paper run


def start(backend: str, run_dir: Path, seconds: float, data_dir: str | None, core: int | None):
    command = [sys.executable, "-m", f"{backend}.train", "--preset", "paper", "--full-train", "--log-every", "10",
               "--time-budget", str(seconds), "--no-progress", "--run-dir", str(run_dir)]
    if data_dir:
        command += ["--data-dir", data_dir]
    env = dict(os.environ)
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
        env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def images_per_s(process, run_dir: Path) -> float:
    _, err = process.communicate()
    if process.returncode != 75:  # the time budget's resumable exit
        sys.exit(f"error: {' '.join(process.args[:6])}... exited {process.returncode}: {err.strip()[-500:]}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [r["images_per_s"] for r in records if r["kind"] == "train" and r["images_per_s"]][1:]
    if len(rates) < 3:
        sys.exit(f"error: {run_dir.name}: only {len(rates)} timed records; give more --seconds")
    return statistics.median(rates)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="CIFAR-10 (else the trainers' search: $CIFAR10_DIR, the cache)")
    parser.add_argument("--seconds", type=float, default=120, help="each trainer's --time-budget (default 120)")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        sys.exit("error: side by side needs at least 2 cores")
    scratch = Path(tempfile.mkdtemp(prefix="placement-"))
    try:
        alone = {}
        for backend in BACKENDS:
            run_dir = scratch / f"alone-{backend}"
            alone[backend] = images_per_s(start(backend, run_dir, args.seconds, args.data_dir, None), run_dir)
        dirs = {b: scratch / f"side-{b}" for b in BACKENDS}
        processes = {b: start(b, dirs[b], args.seconds, args.data_dir, core) for core, b in enumerate(BACKENDS)}
        side = {b: images_per_s(processes[b], dirs[b]) for b in BACKENDS}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    sequential = len(BACKENDS) / sum(1 / rate for rate in alone.values())
    parallel = len(BACKENDS) * min(side.values())
    git = git_info()
    lines = [
        "# Placement of the two paper runs on this CPU",
        "",
        f"`python scripts/benchmark_placement.py --seconds {args.seconds:g}` on {cpu_name()} ({cores} cores), "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit "
        f"{(git.get('commit') or 'unknown')[:7]}{'+dirty' if git.get('dirty') else ''}. ResNet-32, batch 128, "
        "training images/s (median of the metrics records after the first).",
        "",
        "| Placement | torch_impl images/s | jax_impl images/s | Both runs, images/s | Two 64k runs take |",
        "|---|---|---|---|---|",
        f"| one after the other, {cores} threads each | {alone['torch_impl']:.1f} | {alone['jax_impl']:.1f} | "
        f"{sequential:.1f} | {two_runs_hours(sequential):.1f} h of training |",
        f"| side by side, one pinned core and thread each | {side['torch_impl']:.1f} | {side['jax_impl']:.1f} | "
        f"{parallel:.1f} | {two_runs_hours(parallel):.1f} h of training |",
        "",
        f"Side by side is {parallel / sequential:.2f}x the throughput of one after the other"
        + (" (scripts/paper_slice.sh runs them so)." if parallel > sequential else
           "; run the backends one after the other here."),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


def two_runs_hours(combined_rate: float) -> float:
    """Hours of training for both backends' 64k-iteration runs at a combined rate (evaluations not included)."""
    return 2 * PAPER_IMAGES / combined_rate / 3600


if __name__ == "__main__":
    sys.exit(main())
