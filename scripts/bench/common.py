"""What every measurement shares: timing, Markdown, the provenance a report names, the report file."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import importlib.metadata
import os
import re
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cifar_core.cli import fail

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = REPO_ROOT / "results"


class Stats:
    """Median, min and max of some seconds."""

    def __init__(self, times: list[float]):
        if not times:
            raise ValueError("no timings")
        self.times = times
        self.median, self.min, self.max = statistics.median(times), min(times), max(times)


def time_calls(fn, count: int) -> list[float]:
    """Wall time of `count` calls of fn(i); fn must return only when its work is finished."""
    times = []
    for i in range(count):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return times


def split_steps(steps: int, rounds: int) -> list[int]:
    """`steps` timed steps over `rounds` rounds, as evenly as can be."""
    return [steps // rounds + (i < steps % rounds) for i in range(rounds)]


def log(message: str) -> None:
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@dataclasses.dataclass(frozen=True)
class Provenance:
    """What a report names about its own making; taken before measuring, so that the commit is the code measured."""

    command: str
    date: str
    commit: str
    cpu: str
    load: float  # 1-minute load average at the start

    @classmethod
    def now(cls, argv: list[str]) -> "Provenance":
        from cifar_core.run import cpu_name, git_info
        git = git_info()
        return cls("python scripts/benchmark.py " + shlex.join(argv),
                   datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                   (git["commit"] or "unknown") + (" (dirty tree)" if git["dirty"] else ""),
                   f"{cpu_name()}, {os.cpu_count()} cores ({usable_cores()} usable by this process)", os.getloadavg()[0])

    def lines(self) -> list[str]:
        return [f"- Date: {self.date}", f"- Command: `{self.command}`", f"- Git commit: {self.commit}"]


ATTEMPTS_MARKER = "<!-- attempts -->"
ATTEMPTS_TEMPLATE = f"""{ATTEMPTS_MARKER}
## What the figures measure, how to rerun them, and what the defaults rest on

<!-- Hand-written: scripts/benchmark.py regenerates only the part above the marker line and leaves this section
alone. -->
"""


def write_report(path: Path, generated: str, keep_attempts: bool = False) -> None:
    """Write `generated` to `path` atomically. With `keep_attempts`, keep whatever the existing file has from the
    marker line on (the hand-written section; or from an older report's '## Attempts' heading when the marker was
    lost), or start that section."""
    text = generated.rstrip("\n") + "\n"
    if keep_attempts:
        text += "\n" + attempts_section(path.read_text() if path.exists() else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def attempts_section(old: str) -> str:
    marker = re.search(r"^" + re.escape(ATTEMPTS_MARKER) + r"[ \t]*$", old, re.MULTILINE)
    heading = re.search(r"^## Attempts\b", old, re.MULTILINE)
    if marker:
        tail = old[marker.start():]
    elif heading:
        tail = ATTEMPTS_MARKER + "\n" + old[heading.start():]
    else:
        return ATTEMPTS_TEMPLATE
    return tail if tail.endswith("\n") else tail + "\n"


def configure_environment(device: str) -> None:
    """Before jax is imported: pin JAX to the CPU for the CPU; on CUDA keep it from taking 75% of the GPU's
    memory at start-up, which PyTorch in the same process, or another process on the GPU, would then lack."""
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    else:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def release_memory(device) -> None:
    """Free what one configuration held (model, optimiser state, the device copy of the train split) before the
    next starts: the collector takes any cycles, then PyTorch's cache goes."""
    gc.collect()
    if device.type == "cuda":
        import torch
        torch.cuda.empty_cache()


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def check_depth(depth: int) -> None:
    if depth < 8 or (depth - 2) % 6:
        fail(f"--depth {depth} is not 6n+2 (8, 20, 32, 44, 56, 110, ...)")
