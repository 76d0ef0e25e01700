"""steps: both backends' real training and evaluation steps side by side, against this machine's float32 matmul
rate, and the NumPy input pipeline; results/benchmarks.md.

What is timed, per batch size, each step on its own from the host batch to a finished result:
- training: PyTorch torch_impl.train.train_step (once NCHW and once channels_last); JAX the step of
  jax_impl.train.compile_train_step on a 1-device mesh (on CPU two jitted programs, forward then backward and
  update; --jax-step one times the single-program step). With the data on the device off the CPU, JAX runs
  several steps per jitted call as the trainer does (train_steps, a lax.scan; --jax-steps-per-call), and a
  call's time divided by its steps counts as a step. Each step gets its batch onto the device the way the
  trainers do: to_device / global_batch of a host batch, or with --data-on-device (default on CUDA) the
  DeviceStream gather and crop/flip from the device-resident train split; each ends in a device sync.
  Warm-up steps (and JAX's compilation, reported on its own) are left out; the median, min and max are over
  the timed steps and images/s = batch / median. The backends take turns --rounds times, the timed steps
  split among the rounds, so that a slow spell of a shared machine reaches all of them.
- evaluation: one forward pass in eval mode and the argmax, per batch, as the trainers' evaluate.
- the input pipeline: cifar_core's TrainStream.batch(step) (plan + augmentation in NumPy) on real CIFAR-10
  when --data-dir / $CIFAR10_DIR / the cache holds it, else on a synthetic set of the same size.
Achieved GFLOP/s count 2 FLOP per multiply-add of the convolutions and the linear layer (68.86 M MACs per
image for ResNet-32, computed from the architecture), a training step as 3x the forward pass; they are given
as a fraction of the float32 matmul rate measured in the same run (TF32 off on CUDA).

"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import (REPORT, Provenance, Stats, check_depth, configure_environment, fail, log, ms,
                          package_version, positive, release_memory, split_steps, table, time_calls, usable_cores)
from bench.runners import BACKENDS, PRECISION_TEXT, PRECISIONS, RUNNERS, Runner, StepConfig

STAGE_WIDTHS = (16, 32, 64)
RESNET32_MACS = 68.86e6  # He et al. 2015 / the common count for ResNet-32 on 32x32 inputs


@dataclasses.dataclass(frozen=True)
class Setup:
    device: str = "cpu"
    depth: int = 32
    batch_sizes: tuple = (128, 512)
    steps: int = 30
    rounds: int = 3
    warmup: int = 5
    backends: tuple = tuple(BACKENDS)
    precision: str = "fp32"
    data_dir: str | None = None
    synthetic: bool = False
    matmul_size: int | None = None
    async_steps: int | None = None
    data_on_device: bool | None = None
    jax_steps_per_call: int | None = None
    jax_step: str = "auto"
    jax_conv: str = "auto"
    jax_xla_options: str = "auto"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="both backends on the CPU, or both on the (first) GPU")
    parser.add_argument("--depth", type=int, default=32, help="ResNet depth, 6n+2")
    parser.add_argument("--batch-sizes", type=positive, nargs="+", default=[128, 512])
    parser.add_argument("--steps", type=positive, default=30, help="timed steps per measurement")
    parser.add_argument("--rounds", type=positive, default=3,
                        help="time the backends in turn this many times, --steps split among the rounds (each round "
                             "builds its model afresh and warms up again); the statistics pool every round's steps")
    parser.add_argument("--warmup", type=positive, default=5,
                        help="untimed steps before each measurement (JAX compiles in the first)")
    parser.add_argument("--backends", nargs="+", choices=tuple(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32: true float32 (PyTorch TF32 off, JAX precision highest, the trainers' default); "
                             "tf32: torch_impl.train --tf32 / jax_impl.train --matmul-precision default (GPUs); "
                             "bf16: --amp bf16")
    parser.add_argument("--data-dir", help="CIFAR-10 for the pipeline timing (else $CIFAR10_DIR, the cache, "
                                           "or a synthetic set of the same size; never downloads)")
    parser.add_argument("--synthetic", action="store_true", help="time the pipeline on synthetic data")
    parser.add_argument("--matmul-size", type=positive,
                        help="side of the square float32 matmul of the reference rate "
                             "(default 2048 on CPU, 8192 on CUDA)")
    parser.add_argument("--async-steps", type=int,
                        help="also run this many training steps without a per-step sync and report their mean "
                             "(closest to a training loop's throughput; default: --steps on CUDA, 0 on CPU)")
    parser.add_argument("--data-on-device", action=argparse.BooleanOptionalAction, default=None,
                        help="feed training steps from the train split resident on the device (the trainers' "
                             "DeviceStream) instead of copying a host batch; default: on for CUDA, as the trainers")
    parser.add_argument("--jax-steps-per-call", type=int, default=None,
                        help="JAX training steps per jitted call (jax_impl.train.train_steps; needs --data-on-device); "
                             "default: as the trainer, 50 off the CPU with the data on the device, else 1")
    parser.add_argument("--jax-step", choices=("auto", "one", "two"), default="auto",
                        help="JAX training step as one jitted program or two (forward; backward and update); "
                             "'auto' is what jax_impl.train runs: two on CPU, one elsewhere")
    parser.add_argument("--jax-conv", choices=("auto", "xla", "onednn"), default="auto",
                        help="the JAX model's convolution kernels, as jax_impl.train --conv")
    parser.add_argument("--jax-xla-options", choices=("auto", "none"), default="auto",
                        help="'auto': the XLA options jax_impl.train compiles with (compiler_options); "
                             "'none': XLA's defaults")
    parser.add_argument("--out", type=Path, default=REPORT)


def measure(setup: Setup, provenance: Provenance) -> dict:
    """Every timing the steps report shows: the matmul reference, per batch size and backend the training and
    evaluation steps, JAX's first calls, and the input pipeline."""
    if setup.rounds > setup.steps:
        fail(f"--rounds {setup.rounds} exceeds --steps {setup.steps}: every round needs a timed step")
    check_depth(setup.depth)
    configure_environment(setup.device)
    import jax
    import torch
    from cifar_core.plan import TrainStream
    from cifar_core.recipe import Recipe
    from jax_impl.platforms import resolve_conv_kernels, resolve_steps_per_call
    from torch_impl.model import resnet

    device = torch_device(setup.device, "jax" in setup.backends)
    data_on_device = setup.data_on_device if setup.data_on_device is not None else device.type == "cuda"
    async_steps = setup.async_steps if setup.async_steps is not None else setup.steps * (device.type == "cuda")
    try:  # as the JAX trainer resolves its flags
        steps_per_call = resolve_steps_per_call(setup.jax_steps_per_call, data_on_device, jax.default_backend(),
                                                "--jax-steps-per-call")
        conv = resolve_conv_kernels(setup.jax_conv, jax.default_backend(), "--jax-conv") \
            if "jax" in setup.backends else None
    except ValueError as error:
        fail(error)
    macs = forward_macs(setup.depth)
    assert abs(forward_macs(32) - RESNET32_MACS) <= 0.01e6 and torch_model_macs(resnet(setup.depth, seed=0)) == macs
    matmul_size = setup.matmul_size or (8192 if device.type == "cuda" else 2048)
    log(f"float32 matmul reference ({matmul_size}^2)")
    rates = matmul_rates(device, matmul_size, "jax" in setup.backends)
    log("building the input pipeline")
    data, data_text = load_pipeline(setup, Recipe(depth=setup.depth, batch_size=min(setup.batch_sizes)))
    if max(setup.batch_sizes) > len(data.train.images):
        fail(f"batch size {max(setup.batch_sizes)} exceeds the {len(data.train.images)} training images")
    timings, pipeline = {}, {}
    for batch_size in setup.batch_sizes:
        stream = TrainStream(data.train.images, data.train.labels, data.train.seed, batch_size)
        pool = [stream.batch(i) for i in range(min(8, setup.warmup + setup.steps + async_steps))]
        configs = {backend: StepConfig("jax" if backend == "jax" else "torch", setup.depth, batch_size,
                                       setup.precision, data_on_device, backend == "torch_cl",
                                       steps_per_call=steps_per_call if backend == "jax" else 1,
                                       step_programs=setup.jax_step, xla_options=setup.jax_xla_options,
                                       conv=setup.jax_conv) for backend in setup.backends}
        timings[batch_size] = time_in_rounds(setup, configs, stream, pool, device, async_steps)
        log(f"input pipeline, batch {batch_size}")
        pipeline[batch_size] = bench_pipeline(data.train, batch_size, setup.warmup, setup.steps)
    return {"setup": setup, "provenance": provenance, "device": device_text(device, jax), "macs": macs,
            "rates": rates, "timings": timings, "pipeline": pipeline, "data": data_text, "load_end": os.getloadavg()[0],
            "data_on_device": data_on_device, "async_steps": async_steps, "jax_steps_per_call": steps_per_call,
            "jax_conv": conv, "environment": environment_text(device, jax, torch)}


def torch_device(device: str, use_jax: bool):
    import torch
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        fail("--device cuda, but torch.cuda.is_available() is False")
    import jax
    if use_jax and jax.default_backend() != "gpu":
        fail(f"--device cuda, but JAX's default backend is {jax.default_backend()!r}; install jax[cuda12] "
             "(or drop jax from --backends)")
    torch.backends.cudnn.benchmark = True  # as torch_impl.train on CUDA
    return torch.device("cuda")


def device_text(device, jax) -> str:
    if device.type != "cuda":
        return "CPU"
    import torch
    props = torch.cuda.get_device_properties(device)
    return (f"{torch.cuda.get_device_name(device)} ({props.total_memory / 2**30:.0f} GiB); JAX: "
            f"{jax.devices()[0].device_kind}")


def environment_text(device, jax, torch) -> dict:
    cuda = f"; CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}" if device.type == "cuda" else ""
    env = ", ".join(f"{k}={os.environ[k]}"
                    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS", "GLIBC_TUNABLES")
                    if k in os.environ) or "no OMP_NUM_THREADS / MKL_NUM_THREADS / XLA_FLAGS / GLIBC_TUNABLES set"
    from jax_impl.platforms import compiler_options
    return {"versions": f"torch {torch.__version__}{cuda}; jax {jax.__version__}, jaxlib {package_version('jaxlib')}, "
                        f"flax {package_version('flax')}, optax {package_version('optax')}; numpy {np.__version__}; "
                        f"Python {sys.version.split()[0]}",
            "threads": f"torch.get_num_threads() = {torch.get_num_threads()}, get_num_interop_threads() = "
                       f"{torch.get_num_interop_threads()}; {env}",
            "jax_options": ", ".join(f"{k}={v}" for k, v in (compiler_options(jax.default_backend()) or {}).items())
                           or "XLA's defaults on this platform",
            "jax_platform": jax.default_backend()}


def time_in_rounds(setup: Setup, configs: dict, stream, pool: list, device, async_steps: int) -> dict:
    """backend -> its timings at one batch size, the backends taking turns --rounds times: a slow or fast spell
    of a shared machine then reaches every backend rather than whichever happened to be running."""
    pooled = {backend: {"train": [], "eval": [], "async": [], "first": None} for backend in configs}
    for round_index, round_steps in enumerate(split_steps(setup.steps, setup.rounds)):
        for backend, config in configs.items():
            log(f"{BACKENDS[backend]}, batch {config.batch_size}, round {round_index + 1}/{setup.rounds}: "
                f"{setup.warmup} warm-up + {round_steps} timed steps"
                + (f" + {async_steps} unsynchronised" if async_steps else ""))
            timed = time_runner(RUNNERS[config.backend](config, stream, pool, device), config.steps_per_call,
                                setup.warmup, round_steps, async_steps)
            release_memory(device)
            for key in ("train", "eval"):
                pooled[backend][key] += timed[key]
            pooled[backend]["async"] += [timed["async"]] if timed["async"] is not None else []
            pooled[backend]["first"] = pooled[backend]["first"] or timed["first"]
    return {backend: {"train": Stats(t["train"]), "eval": Stats(t["eval"]), "first": t["first"],
                      "async": statistics.fmean(t["async"]) if t["async"] else None} for backend, t in pooled.items()}


def time_runner(runner: Runner, steps_per_call: int, warmup: int, steps: int, async_steps: int) -> dict:
    """Seconds per step of `steps` training calls, each awaited, after `warmup` (the first compiles); the mean of
    `async_steps` more issued without waiting; seconds per eval batch; the first training and eval calls."""
    awaited = lambda i: (runner.call(i), runner.sync())  # noqa: E731
    first_train = time_calls(awaited, warmup)[0]
    train = [t / steps_per_call for t in time_calls(lambda i: awaited(warmup + i), steps)]
    async_mean = None
    if async_steps:
        runner.sync()
        start = time.perf_counter()
        for i in range(async_steps):
            runner.call(warmup + steps + i)
        runner.sync()
        async_mean = (time.perf_counter() - start) / async_steps / steps_per_call
    first_eval = time_calls(runner.forward, warmup)[0]
    evaluation = time_calls(lambda i: runner.forward(warmup + i), steps)
    return {"train": train, "eval": evaluation, "async": async_mean, "first": (first_train, first_eval)}


def matmul_rates(device, size: int, use_jax: bool) -> dict[str, float]:
    """GFLOP/s (median of 10) of a size x size float32 matmul: torch on `device` (TF32 off), jax on its default
    device at precision 'highest', and numpy on the CPU runs."""
    import torch
    flop, repeats = 2.0 * size ** 3, 10
    rng = np.random.default_rng(0)
    a_np, b_np = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    cuda = device.type == "cuda"
    a, b = torch.from_numpy(a_np).to(device), torch.from_numpy(b_np).to(device)
    saved, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
    calls = {f"torch.mm ({device.type}{', TF32 off' if cuda else ''})":
             lambda _: (torch.mm(a, b), torch.cuda.synchronize(device) if cuda else None)}
    if use_jax:
        import jax
        import jax.numpy as jnp
        mm = jax.jit(lambda x, y: jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST))
        x, y = jnp.asarray(a_np), jnp.asarray(b_np)
        calls[f"jnp.matmul ({jax.default_backend()}, precision highest)"] = lambda _: mm(x, y).block_until_ready()
    if not cuda:
        calls["numpy matmul (cpu)"] = lambda _: a_np @ b_np
    def rate(call) -> float:
        time_calls(call, 2)
        return flop / Stats(time_calls(call, repeats)).median / 1e9
    try:
        return {name: rate(call) for name, call in calls.items()}
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def load_pipeline(setup: Setup, recipe):
    """(Pipeline, its description): real CIFAR-10 if available without downloading, else synthetic."""
    from cifar_core import data, pipeline, synthetic
    start, dataset = time.perf_counter(), None
    if not setup.synthetic:
        try:
            dataset = data.load(setup.data_dir, download=False)
        except data.DataError as error:
            if setup.data_dir is not None or os.environ.get("CIFAR10_DIR"):
                fail(error)
            log("no CIFAR-10 found (--data-dir, $CIFAR10_DIR, cache); timing the pipeline on synthetic data")
    source = f"CIFAR-10 from {dataset.source}" if dataset is not None else \
        "synthetic (cifar_core.synthetic.make_dataset, 50,000 + 10,000 images)"
    dataset = dataset or synthetic.make_dataset(n_train=50_000, n_test=10_000, seed=0)
    load_s, start = time.perf_counter() - start, time.perf_counter()
    built = pipeline.build(recipe, dataset=dataset)
    return built, (f"{source}; loading {load_s:.2f} s, pipeline.build (split, normalise) "
                   f"{time.perf_counter() - start:.2f} s")


def bench_pipeline(train_stream, batch_size: int, warmup: int, steps: int):
    """(Stats per batch of TrainStream.batch, epoch-plan seconds, steps per epoch)."""
    from cifar_core import plan
    from cifar_core.plan import TrainStream
    stream = TrainStream(train_stream.images, train_stream.labels, train_stream.seed, batch_size)
    n = stream.steps_per_epoch
    time_calls(lambda i: stream.batch(i % n), warmup)
    stats = Stats(time_calls(lambda i: stream.batch((warmup + i) % n), steps))
    plan.epoch_plan.cache_clear()
    start = time.perf_counter()
    plan.epoch_plan(stream.seed, 1, len(stream.images))  # what the first batch of each epoch also pays
    epoch_plan_s = time.perf_counter() - start
    plan.epoch_plan.cache_clear()
    return stats, epoch_plan_s, n


PIPELINE_MIN_RATIO = 10.0  # the input pipeline must be at least this much faster than a training step
JAX_CONV_TEXT = {"onednn": "oneDNN through XLA's FFI, jax_impl/cpu_conv", "xla": "XLA's own"}


def section(setup: Setup) -> str:
    """The report's section of results/benchmarks.md: one per precision, so that bf16 is measured beside fp32."""
    return "steps" if setup.precision == "fp32" else f"steps-{setup.precision}"


def render(results: dict) -> str:
    setup = results["setup"]
    precision = "" if setup.precision == "fp32" else f", {setup.precision}"
    sections = [f"# Training and evaluation steps: ResNet-{setup.depth}, PyTorch vs JAX{precision}",
                "Generated by `scripts/benchmark.py steps`; do not edit by hand.",
                "\n".join(steps_setup_lines(results)),
                "## Reference: float32 matrix multiply\n\n"
                + table(["kernel", "GFLOP/s (median)"], [[k, f"{v:.1f}"] for k, v in results["rates"].items()])
                + f"\n\nThe fractions below are of the best of these, {max(results['rates'].values()):.1f} GFLOP/s."]
    sections += steps_tables(results)
    sections.append(pipeline_section(results))
    load, usable = results["provenance"].load, usable_cores()
    if load > 0.5 * usable:  # at the end the load includes this benchmark's own threads
        sections.append(f"**Warning:** the machine was busy (load average {load:.2f} -> {results['load_end']:.2f} "
                        f"on {usable} usable cores); these timings are not representative.")
    return "\n\n".join(sections) + "\n"


def steps_setup_lines(results: dict) -> list[str]:
    setup, env, provenance = results["setup"], results["environment"], results["provenance"]
    per_call, macs = results["jax_steps_per_call"], results["macs"]
    jax_step = ("two jitted programs: forward, then backward and SGD update" if setup.jax_step == "two" or
                (setup.jax_step == "auto" and env["jax_platform"] == "cpu") else "one jitted program")
    jax_step = (f"--jax-steps-per-call {per_call}: that many steps per jitted call, one lax.scan (train_steps), a "
                f"call's time / {per_call} counted as a step") if per_call > 1 else \
        f"--jax-step {setup.jax_step} ({jax_step})"
    options = "XLA's defaults" if setup.jax_xla_options == "none" else env["jax_options"]
    rounds = split_steps(setup.steps, setup.rounds)
    return provenance.lines() + [
        f"- Device: {results['device']}",
        f"- CPU: {provenance.cpu}; load average {provenance.load:.2f} at the start, "
        f"{results['load_end']:.2f} at the end (1 min)",
        f"- Versions: {env['versions']}", f"- Threads: {env['threads']}",
        f"- Precision: --precision {setup.precision}, {PRECISION_TEXT[setup.precision]}"
        + ("" if results["device"] != "CPU" or setup.precision != "tf32" else " (no effect on CPU)"),
        f"- Model: ResNet-{setup.depth}, {macs / 1e6:.2f} M multiply-adds per image forward (= {2 * macs / 1e6:.1f} "
        f"MFLOP; a training step counted as 3x: {6 * macs / 1e6:.1f} MFLOP per image)",
        "- Training-step input: " + ("the train split resident on the device; each step gathers and crops/flips its "
                                     "planned batch there (the trainers' DeviceStream, --data-on-device)"
                                     if results["data_on_device"] else "a host (NumPy) batch copied in by each step "
                                     "(to_device / global_batch)")
        + "; evaluation always copies a host batch, as the trainers' evaluate",
        f"- Timing: {setup.rounds} round{'s' * (setup.rounds > 1)}, the backends in turn in each; "
        "per round and backend "
        f"{setup.warmup} warm-up step{'s' * (setup.warmup > 1)} (not timed; JAX compiles in the first), then "
        f"{' + '.join(map(str, rounds))} = {setup.steps} steps timed one by one, each ending in a device sync; "
        "median (min, max) per step over all the rounds, images/s = batch / median",
        f"- JAX: training step {jax_step}; training step and evaluation compiled with --jax-xla-options "
        f"{setup.jax_xla_options} ({options}); convolutions: --jax-conv {setup.jax_conv} "
        f"({JAX_CONV_TEXT.get(results['jax_conv'], 'JAX not run')})"]


def steps_tables(results: dict) -> list[str]:
    setup, timings, async_steps = results["setup"], results["timings"], results["async_steps"]
    peak, flop = max(results["rates"].values()), 2.0 * results["macs"]
    header = ["batch", "backend", "median ms", "min ms", "max ms", "images/s", "GFLOP/s", "of matmul"]

    def rows(kind: str, flop_per_image: float) -> list[list[str]]:
        out = []
        for batch_size, by_backend in timings.items():
            for backend, t in by_backend.items():
                s = t[kind]
                gflops = flop_per_image * batch_size / s.median / 1e9
                out.append([str(batch_size), BACKENDS[backend], ms(s.median), ms(s.min), ms(s.max),
                            f"{batch_size / s.median:,.0f}", f"{gflops:.1f}", f"{100 * gflops / peak:.1f}%"]
                           + ([ms(t["async"])] if kind == "train" and async_steps else []))
        return out

    note = (f"\n\n\"unsynced mean ms\": {async_steps} further steps issued without a per-step sync, total time / "
            "steps (a training loop's throughput).") if async_steps else ""
    sections = ["## Training step\n\n" + table(header + ["unsynced mean ms"] * bool(async_steps),
                                               rows("train", 3 * flop)) + note,
                "## Evaluation (forward in eval mode + argmax, per batch)\n\n" + table(header, rows("eval", flop))]
    if "jax" not in setup.backends:
        return sections
    sections.append("## JAX compilation (seconds, not in the step times)\n\n" + table(
        ["batch", "train step first call (incl. compile)", "eval first call (incl. compile)"],
        [[str(b), *(f"{s:.2f}" for s in t["jax"]["first"])] for b, t in timings.items()]))
    torch_variants = [b for b in ("torch", "torch_cl") if b in setup.backends]
    if torch_variants:
        ratio = lambda t, b, kind: f"{t['jax'][kind].median / t[b][kind].median:.2f}"  # noqa: E731
        sections.append("## JAX / PyTorch step-time ratio (median; > 1: JAX slower)\n\n" + table(
            ["batch"] + [f"{kind} JAX / {BACKENDS[b]}" for b in torch_variants for kind in ("train", "eval")],
            [[str(batch)] + [ratio(t, b, kind) for b in torch_variants for kind in ("train", "eval")]
             for batch, t in timings.items()]))
    return sections


def pipeline_section(results: dict) -> str:
    rows, short = [], []
    for batch_size, (stats, epoch_plan_s, per_epoch) in results["pipeline"].items():
        fastest_backend, fastest = min(((b, t["train"].median) for b, t in results["timings"][batch_size].items()),
                                       key=lambda item: item[1])
        ratio = fastest / stats.median
        short += [batch_size] if ratio < PIPELINE_MIN_RATIO else []
        rows.append([str(batch_size), ms(stats.median), ms(stats.min), ms(stats.max),
                     f"{batch_size / stats.median:,.0f}",
                     ms(epoch_plan_s), ms(stats.median + epoch_plan_s / per_epoch),
                     f"{ratio:.1f}x ({BACKENDS[fastest_backend]})", "yes" if ratio >= PIPELINE_MIN_RATIO else "**NO**"])
    return ("## Input pipeline (cifar_core TrainStream.batch: plan + pad/crop/flip in NumPy, one process)\n\n"
            f"Data: {results['data']}.\n\n"
            + table(["batch", "median ms", "min ms", "max ms", "images/s", "epoch plan ms (once per epoch)",
                     "amortised ms", "fastest step / pipeline", f">= {PIPELINE_MIN_RATIO:.0f}x"], rows)
            + (f"\n\n**The pipeline is less than {PIPELINE_MIN_RATIO:.0f}x faster than the fastest training step at "
               f"batch {', '.join(map(str, short))}.**" if short else ""))


def forward_macs(depth: int, image_size: int = 32, in_channels: int = 3, num_classes: int = 10) -> int:
    """Multiply-adds of one image's forward pass: every 3x3 conv and the final linear layer (BN, ReLU, the
    option-A shortcut and the pooling are not counted)."""
    n = (depth - 2) // 6
    size, channels = image_size, STAGE_WIDTHS[0]
    macs = size * size * STAGE_WIDTHS[0] * in_channels * 9  # stem conv
    for stage, width in enumerate(STAGE_WIDTHS):
        for j in range(n):
            size //= 2 if stage > 0 and j == 0 else 1
            macs += size * size * width * channels * 9 + size * size * width * width * 9  # the block's two convs
            channels = width
    return macs + STAGE_WIDTHS[-1] * num_classes


def torch_model_macs(model) -> int:
    """The same count read off the PyTorch model with forward hooks, as a check of forward_macs."""
    import torch
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            total += output[0].numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        else:
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 3, 32, 32))
    finally:
        for handle in handles:
            handle.remove()
    return total
