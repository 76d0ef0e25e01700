"""cuda: the GPU configurations; its section of results/benchmarks.md. Each configuration runs in fresh processes
on a synthetic train split resident on the GPU, the way the trainers run there:
- each backend alone at ResNet-20/32/56/110, batch 128, in fp32 (TF32 off, JAX precision highest), TF32 and
  bf16 (--amp bf16), the trainer's way: PyTorch eager, JAX 50 steps per jitted call;
- the other way to dispatch, fp32: PyTorch torch.compile(mode="reduce-overhead") (CUDA graphs), JAX one step per call;
- N copies of the ResNet-32 fp32 run sharing the GPU, N processes, their images/s summed.
Every copy builds its run, takes --warmup untimed calls (the first compiles), waits for the other copies, then
times whole calls for --seconds, syncing every ~10 steps so that the clock reads finished work.

--dry-run, for a machine without a GPU: lists the configurations, then runs each distinct code path among them
on the CPU for two tiny steps (ResNet-8, batch 4, at most 2 steps per call and 2 copies), in worker processes
as on the GPU; it measures nothing and writes no report. On the CPU torch.compile captures the graph as on the
GPU (dynamo, AOTAutograd) but runs it eagerly: inductor's C++ code generation takes minutes on a small CPU,
and CUDA graphs need a GPU.
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
import time
from pathlib import Path

from bench.common import (REPO_ROOT, REPORT, Provenance, check_depth, configure_environment, fail, log, positive,
                          table)
from bench.runners import BACKENDS, PRECISIONS, RUNNERS, StepConfig

ENTRY_POINT = REPO_ROOT / "scripts" / "benchmark.py"
SHARED_DEPTH = 32  # the depth at which N copies share the GPU
SYNC_EVERY_STEPS = 10  # a timed window syncs about this often, to read the clock against finished work


@dataclasses.dataclass(frozen=True)
class Setup:
    depths: tuple = (20, 32, 56, 110)
    batch_size: int = 128
    precisions: tuple = PRECISIONS
    backends: tuple = ("torch", "jax")
    shares: tuple = (2, 4)
    seconds: float = 10.0
    warmup: int = 5
    train_images: int = 50_000
    dry_run: bool = False


@dataclasses.dataclass(frozen=True)
class Timing:
    """How `worker` times one copy of a configuration."""

    device: str  # "cuda", or "cpu" for the dry run
    seconds: float  # the timed window, at least one sync's worth of calls
    warmup: int  # untimed calls, the first compiles
    sync_every: int  # steps between syncs in the window
    train_images: int  # the synthetic train split


DRY_RUN_TIMING = Timing("cpu", seconds=0.0, warmup=1, sync_every=1, train_images=64)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 32, 56, 110])
    parser.add_argument("--batch-size", type=positive, default=128)
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--backends", nargs="+", choices=("torch", "jax"), default=["torch", "jax"])
    parser.add_argument("--shares", type=positive, nargs="*", default=[2, 4],
                        help=f"N copies of the ResNet-{SHARED_DEPTH} fp32 run sharing the GPU, per backend "
                             "(none: skip)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed window of each configuration")
    parser.add_argument("--warmup", type=positive, default=5, help="untimed calls first (the first compiles)")
    parser.add_argument("--train-images", type=positive, default=50_000, help="synthetic train split on the GPU")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the configurations and run each one's code path on the CPU for two tiny steps")
    parser.add_argument("--out", type=Path, default=REPORT)


def trainer_way(setup: Setup, backend: str, depth: int, precision: str = "fp32", processes: int = 1) -> StepConfig:
    """A run as its trainer runs it on a GPU: the train split on the device; PyTorch eager, JAX 50 steps per call."""
    from jax_impl.platforms import STEPS_PER_CALL_ACCELERATOR
    return StepConfig(backend, depth, setup.batch_size, precision, data_on_device=True, processes=processes,
                      steps_per_call=STEPS_PER_CALL_ACCELERATOR if backend == "jax" else 1)


def other_way(setup: Setup, backend: str, depth: int) -> StepConfig:
    """The other dispatch, fp32: torch.compile(mode="reduce-overhead"); JAX one step per call."""
    return dataclasses.replace(trainer_way(setup, backend, depth), **{"torch": {"compile": True},
                                                                      "jax": {"steps_per_call": 1}}[backend])


def cuda_configurations(setup: Setup) -> list[StepConfig]:
    """What `cuda` measures, in order and without repeats: per backend, every depth in every precision the
    trainer's way, every depth in fp32 the other way, and N copies of the ResNet-32 fp32 run at once."""
    configs = []
    for backend in setup.backends:
        configs += [trainer_way(setup, backend, d, p) for d in setup.depths for p in setup.precisions]
        configs += [other_way(setup, backend, d) for d in setup.depths]
        configs += [trainer_way(setup, backend, SHARED_DEPTH, processes=n) for n in setup.shares]
    return list(dict.fromkeys(configs))


def measure(setup: Setup, provenance: Provenance) -> dict:
    """config -> its copies' results, each configuration in worker processes of its own, so that none inherits
    another's GPU memory or compiled programs. The dry run runs each distinct tiny version of them on the CPU, a
    single copy in this process (one import of each backend, not one per configuration), copies that share as
    worker processes."""
    if setup.dry_run:
        configure_environment("cpu")  # before jax_impl (trainer_way) imports jax
    for depth in setup.depths:
        check_depth(depth)
    configs = cuda_configurations(setup)
    if setup.dry_run:
        runs, timing = list(dict.fromkeys(config.tiny() for config in configs)), DRY_RUN_TIMING
    else:
        import torch
        if not torch.cuda.is_available():
            fail("cuda: torch.cuda.is_available() is False; on a machine without a GPU, run it with --dry-run")
        runs, timing = configs, Timing("cuda", setup.seconds, setup.warmup, SYNC_EVERY_STEPS, setup.train_images)
    results = {}
    for index, config in enumerate(runs, 1):
        log(f"{index}/{len(runs)}: {config.flags()}, {config.processes} process{'es' * (config.processes > 1)}")
        here = setup.dry_run and config.processes == 1
        results[config] = run_here(config, timing) if here else run_copies(config, timing)
    return {"setup": setup, "provenance": provenance, "configs": configs, "results": results}


def run_here(config: StepConfig, timing: Timing) -> list[dict]:
    """One copy in this process, as `worker` runs it, with no other copy to wait for."""
    with tempfile.TemporaryDirectory(prefix="benchmark-") as barrier:
        (Path(barrier) / "go").touch()
        return [worker(config, timing, Path(barrier))]


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=lambda text: StepConfig(**json.loads(text)), required=True)
    parser.add_argument("--timing", type=lambda text: Timing(**json.loads(text)), required=True)
    parser.add_argument("--barrier", type=Path, required=True, help="the folder the copies meet in")


def run_copies(config: StepConfig, timing: Timing) -> list[dict]:
    """config.processes copies of `worker` at once. Each builds and warms up, waits until every copy is ready,
    then times its steps, so that the copies' timed windows overlap; their results. The copies write to files,
    not pipes: a full pipe would stop a copy before the barrier, and the barrier would wait for it forever."""
    with tempfile.TemporaryDirectory(prefix="benchmark-") as folder:
        barrier = Path(folder)
        command = [sys.executable, str(ENTRY_POINT), "worker", "--config", json.dumps(dataclasses.asdict(config)),
                   "--timing", json.dumps(dataclasses.asdict(timing)), "--barrier", folder]
        copies = [start_copy(command, barrier / f"copy-{i}") for i in range(config.processes)]
        while len(list(barrier.glob("ready-*"))) < len(copies) and all(c.poll() is None for c in copies):
            time.sleep(0.05)
        (barrier / "go").touch()
        for i, copy in enumerate(copies):
            if copy.wait():
                fail(f"{config.flags()}: a worker exited {copy.returncode}: "
                     f"{(barrier / f'copy-{i}.err').read_text().strip()[-800:]}")
        return [json.loads((barrier / f"copy-{i}.out").read_text().strip().splitlines()[-1])
                for i in range(len(copies))]


def start_copy(command: list[str], stem: Path) -> subprocess.Popen:
    with open(f"{stem}.out", "w") as out, open(f"{stem}.err", "w") as err:
        return subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=err)


def worker(config: StepConfig, timing: Timing, barrier: Path) -> dict:
    """One copy of a configuration: build it on a synthetic train split, warm up, then once `barrier` says go,
    time whole calls for at least timing.seconds, syncing every timing.sync_every steps or so."""
    configure_environment(timing.device)
    from cifar_core import pipeline, synthetic
    from cifar_core.recipe import Recipe
    dataset = synthetic.make_dataset(n_train=timing.train_images, n_test=16, seed=0)
    train = pipeline.build(Recipe(depth=config.depth, batch_size=config.batch_size, full_train=True),
                           dataset=dataset).train
    runner = RUNNERS[config.backend](config, train, [train.batch(0)], backend_device(config.backend, timing.device))
    start = time.perf_counter()
    runner.call(0)
    runner.sync()
    first_call_s = time.perf_counter() - start
    for i in range(1, timing.warmup):
        runner.call(i)
    runner.sync()
    (barrier / f"ready-{os.getpid()}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.01)
    chunk, calls = max(1, timing.sync_every // config.steps_per_call), timing.warmup
    start = time.perf_counter()
    while calls == timing.warmup or time.perf_counter() - start < timing.seconds:
        for i in range(calls, calls + chunk):
            runner.call(i)
        runner.sync()
        calls += chunk
    elapsed, steps = time.perf_counter() - start, (calls - timing.warmup) * config.steps_per_call
    return {"steps": steps, "seconds": elapsed, "ms_per_step": 1e3 * elapsed / steps,
            "images_per_s": steps * config.batch_size / elapsed, "first_call_s": first_call_s}


def backend_device(backend: str, device: str):
    """The torch.device a PyTorch runner takes (None for JAX, which runs on its default device); an error if
    that is not the GPU asked for."""
    if backend == "jax":
        import jax
        if device == "cuda" and jax.default_backend() != "gpu":
            fail(f"JAX's default backend is {jax.default_backend()!r}, not the GPU: install jax[cuda12]")
        return None
    import torch
    torch.backends.cudnn.benchmark = device == "cuda"  # as torch_impl.train on CUDA
    return torch.device(device)


def summary(copies: list[dict] | None) -> dict | None:
    """A configuration's figures: images/s summed over its copies, their median ms per step and first call."""
    if not copies:
        return None
    return {"images_per_s": sum(c["images_per_s"] for c in copies),
            "ms_per_step": statistics.median(c["ms_per_step"] for c in copies),
            "first_call_s": statistics.median(c["first_call_s"] for c in copies)}


def render_configurations(configs: list[StepConfig], title: str, runs: dict | None = None) -> str:
    """A table of `configs` with the trainer command of each; with `runs`, each one's first call (compilation)."""
    def row(i: int, c: StepConfig) -> list[str]:
        cells = [str(i), BACKENDS[c.backend], c.mode(), str(c.depth), str(c.batch_size), c.precision, str(c.processes),
                 f"`{c.flags()}`"]
        if runs is not None:
            cells.append(f"{summary(runs[c])['first_call_s']:.1f}" if c in runs else "–")
        return cells
    return f"## {title} ({len(configs)})\n\n" + table(
        ["#", "backend", "mode", "depth", "batch", "precision", "processes", "as the trainer"]
        + ["first call s"] * (runs is not None), [row(i, c) for i, c in enumerate(configs, 1)])


def render(results: dict) -> str:
    setup, runs = results["setup"], results["results"]
    if setup.dry_run:
        listing = render_configurations(results["configs"], "The configurations")
        rows = [[BACKENDS[c.backend], c.mode(), c.precision, str(c.processes),
                 ", ".join(f"{copy['steps']} timed step{'s' * (copy['steps'] > 1)}" for copy in copies)]
                for c, copies in runs.items()]
        return "\n\n".join([listing, "## Dry run: each configuration's code path on the CPU, ResNet-8, batch 4 "
                              "(no timings)\n\n" + table(["backend", "mode", "precision", "processes", "ran"],
                                                         rows)]) + "\n"
    figure = lambda config: summary(runs.get(config))  # noqa: E731
    return "\n\n".join([
        "# Training steps on one GPU, PyTorch and JAX",
        "Generated by `scripts/benchmark.py cuda` (its docstring says what is timed); do not edit by hand.",
        "\n".join(results["provenance"].lines() + [
            f"- Timing: per copy {setup.warmup} untimed calls (the first compiles), then {setup.seconds:g} s of steps, "
            f"a sync every ~{SYNC_EVERY_STEPS}; batch {setup.batch_size}; a synthetic train split of "
            f"{setup.train_images:,} images on the GPU; images/s (ms/step)"]),
        "## Each backend alone, the trainer's way, by precision\n\n" + table(
            ["backend", "mode", "depth", *setup.precisions],
            [[BACKENDS[b], trainer_way(setup, b, d).mode(), str(d),
              *(rate(figure(trainer_way(setup, b, d, p))) for p in setup.precisions)]
             for b in setup.backends for d in setup.depths]),
        "## The other way to dispatch, fp32\n\n" + table(
            ["backend", "depth", "the trainer's way", "the other way", "other / trainer's (images/s)"],
            [[BACKENDS[b], str(d), f"{trainer_way(setup, b, d).mode()}: {rate(figure(trainer_way(setup, b, d)))}",
              f"{other_way(setup, b, d).mode()}: {rate(figure(other_way(setup, b, d)))}",
              ratio(figure(other_way(setup, b, d)), figure(trainer_way(setup, b, d)))]
             for b in setup.backends for d in setup.depths]),
        f"## N copies sharing the GPU, ResNet-{SHARED_DEPTH} fp32 (images/s summed over the copies, "
        "ms/step per copy)\n\n"
        + table(["backend", "copies", "images/s (ms/step)", "x one copy"],
                [[BACKENDS[b], str(n), rate(figure(trainer_way(setup, b, SHARED_DEPTH, processes=n))),
                  ratio(figure(trainer_way(setup, b, SHARED_DEPTH, processes=n)),
                        figure(trainer_way(setup, b, SHARED_DEPTH)))]
                 for b in setup.backends for n in (1, *setup.shares)]),
        render_configurations(results["configs"], "The configurations, with their first call (seconds, compiling)",
                              runs)]) + "\n"


def rate(figure: dict | None) -> str:
    return "–" if figure is None else f"{figure['images_per_s']:,.0f} ({figure['ms_per_step']:.2f})"


def ratio(figure: dict | None, base: dict | None) -> str:
    return "–" if figure is None or base is None else f"{figure['images_per_s'] / base['images_per_s']:.2f}"
