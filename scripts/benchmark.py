"""Side-by-side speed of the two backends' real training and evaluation steps, against this machine's float32
matmul rate, and of the NumPy input pipeline; one Markdown report.

    python scripts/benchmark.py [--device cpu|cuda] [--depth 32] [--batch-sizes 128 512] [--steps 30]
                                [--rounds 3] [--warmup 5] [--data-dir D] [--out results/benchmarks.md]

What is timed, per batch size (each step on its own, from the host batch to a finished result):
- training: PyTorch torch_impl.train.train_step (model in train mode; once with the default NCHW layout and
  once channels_last); JAX the step of jax_impl.train.compile_train_step on a 1-device mesh (on CPU two jitted
  programs, forward then backward and update; --jax-step one times the single-program step). With the data
  on the device off the CPU, JAX runs several steps per jitted call as the trainer does (train_steps, a
  lax.scan; --jax-steps-per-call), and a call's time divided by its steps counts as a step.
  Each step includes getting its batch onto the device the way the trainers do: to_device / global_batch of
  a host batch, or with --data-on-device (default on CUDA, as the trainers) the DeviceStream gather and
  crop/flip from the device-resident train split. On CUDA every torch step ends
  with torch.cuda.synchronize; every JAX step with jax.block_until_ready on the new state and the metrics.
  Warm-up steps (and JAX's tracing and compilation, reported on their own) are left out; the median, min and
  max are over the timed steps and images/s = batch / median. The backends take turns --rounds times, the
  timed steps split among the rounds, so that a slow spell of a shared machine reaches all of them.
- evaluation: one forward pass in eval mode (torch.inference_mode; JAX jax_impl.train.compile_predict, i.e.
  the jitted apply with train=False, as the trainer's evaluate compiles it) and the argmax, per batch.
- the input pipeline: TrainStream.batch(step) of cifar_core (plan + augmentation in NumPy) on real CIFAR-10
  when --data-dir / $CIFAR10_DIR / the cache holds it, else on a synthetic set of the same size.
Achieved GFLOP/s count 2 FLOP per multiply-add of the convolutions and the linear layer (68.86 M MACs per
image for ResNet-32, computed from the architecture), a training step as 3x the forward pass; they are given
as a fraction of the float32 matmul rate measured in the same run (TF32 off on CUDA).

The report is printed and written to --out. Everything above the line `<!-- attempts -->` is regenerated;
the "## Attempts" section below it (hand-written notes on optimization attempts) is kept as it is.
"""

from __future__ import annotations

import argparse
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
import warnings
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

ATTEMPTS_MARKER = "<!-- attempts -->"
ATTEMPTS_TEMPLATE = f"""{ATTEMPTS_MARKER}
## Attempts

<!-- Hand-written: one entry per optimization attempt (what was changed and why, before/after numbers from
the table above with the command and machine, kept or reverted). scripts/benchmark.py regenerates only the
part above the marker line and leaves this section alone. -->
"""
RESNET32_MACS = 68.86e6  # He et al. 2015 / common count for ResNet-32 on 32x32 inputs
MATMUL_REPEATS = 10
PIPELINE_MIN_RATIO = 10.0  # the input pipeline must be at least this much faster than a training step
STAGE_WIDTHS = (16, 32, 64)
BACKENDS = {"torch": "PyTorch", "torch_cl": "PyTorch channels_last", "jax": "JAX"}
JAX_CONV_TEXT = {"onednn": "oneDNN through XLA's FFI, jax_impl/cpu_conv", "xla": "XLA's own"}


# ----------------------------------------------------------------------------------------------- arithmetic


def forward_macs(depth: int, image_size: int = 32, in_channels: int = 3, num_classes: int = 10) -> int:
    """Multiply-adds of one image's forward pass: every 3x3 conv and the final linear layer (BN, ReLU, the
    option-A shortcut and the pooling are not counted)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth {depth} is not 6n+2")
    n = (depth - 2) // 6
    size, channels = image_size, STAGE_WIDTHS[0]
    macs = size * size * STAGE_WIDTHS[0] * in_channels * 9  # stem conv
    for stage, width in enumerate(STAGE_WIDTHS):
        for j in range(n):
            stride = 2 if stage > 0 and j == 0 else 1
            size //= stride
            macs += size * size * width * channels * 9  # conv1 of the block (stride 2 where the stage starts)
            macs += size * size * width * width * 9  # conv2
            channels = width
    return macs + STAGE_WIDTHS[-1] * num_classes


def torch_model_macs(model) -> int:
    """The same count read off the PyTorch model with forward hooks, as a check of forward_macs."""
    import torch
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += output[0].numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, 3, 32, 32, device=next(model.parameters()).device))
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return total


class Stats:
    def __init__(self, times: list[float]):
        if not times:
            raise ValueError("no timings")
        self.times = times
        self.median, self.min, self.max = statistics.median(times), min(times), max(times)
        self.mean = statistics.fmean(times)


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


# ----------------------------------------------------------------------------------------------- CLI


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="both backends on the CPU, or both on the (first) GPU")
    parser.add_argument("--depth", type=int, default=32, help="ResNet depth, 6n+2")
    parser.add_argument("--batch-sizes", type=positive, nargs="+", default=[128, 512])
    parser.add_argument("--steps", type=positive, default=30, help="timed steps per measurement")
    parser.add_argument("--rounds", type=positive, default=3,
                        help="time the backends in turn this many times, --steps split among the rounds (each round "
                             "builds its model afresh and warms up again); the statistics pool every round's steps")
    parser.add_argument("--warmup", type=positive, default=5,
                        help="untimed steps before each measurement (JAX compiles before these)")
    parser.add_argument("--backends", nargs="+", choices=tuple(BACKENDS), default=list(BACKENDS),
                        help="which variants to run (default: all)")
    parser.add_argument("--data-dir", help="CIFAR-10 for the pipeline timing (else $CIFAR10_DIR, the cache, "
                                           "or a synthetic set of the same size; never downloads)")
    parser.add_argument("--synthetic", action="store_true", help="time the pipeline on synthetic data")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "benchmarks.md",
                        help="Markdown report (default: results/benchmarks.md in the repository)")
    parser.add_argument("--matmul-size", type=positive,
                        help="side of the square float32 matmul of the reference rate (default 2048 on CPU, "
                             "8192 on CUDA)")
    parser.add_argument("--async-steps", type=int,
                        help="also run this many training steps without a per-step sync and report their mean "
                             "(closest to a training loop's throughput; default: --steps on CUDA, 0 on CPU)")
    parser.add_argument("--data-on-device", action=argparse.BooleanOptionalAction, default=None,
                        help="feed training steps from the train split resident on the device (the trainers' "
                             "DeviceStream: only the plan moves per step) instead of copying a host batch; "
                             "default: on for CUDA, off for CPU, as both trainers")
    parser.add_argument("--tf32", action="store_true",
                        help="PyTorch: allow TF32 convs/matmuls on CUDA, as torch_impl.train --tf32 (default off, "
                             "as the trainer)")
    parser.add_argument("--jax-precision", choices=("default", "highest"), default="highest",
                        help="jax_default_matmul_precision for the JAX model: 'highest' (true float32, like PyTorch "
                             "without --tf32) is what jax_impl.train runs by default (--matmul-precision); 'default' "
                             "(jax_impl.train --matmul-precision default) lets XLA use TF32 on Ampere/Hopper GPUs. "
                             "No effect on CPU.")
    parser.add_argument("--jax-steps-per-call", type=int, default=None,
                        help="JAX training steps per jitted call (a lax.scan, jax_impl.train.train_steps; needs "
                             "--data-on-device); a call's time / N is reported per step. Default: as the trainer, "
                             "jax_impl.train.STEPS_PER_CALL_ACCELERATOR off the CPU with the data on the device, "
                             "else 1")
    parser.add_argument("--jax-step", choices=("auto", "one", "two"), default="auto",
                        help="JAX training step as one jitted program or two (forward; backward and update); "
                             "'auto' is what jax_impl.train runs: two on CPU, one elsewhere")
    parser.add_argument("--jax-conv", choices=("auto", "xla", "onednn"), default="auto",
                        help="the JAX model's convolution kernels, as jax_impl.train --conv: 'auto' is oneDNN on CPU "
                             "where jax_impl/cpu_conv builds, else XLA's")
    parser.add_argument("--jax-xla-options", choices=("auto", "none"), default="auto",
                        help="'auto': the XLA options jax_impl.train compiles its training step and evaluation "
                             "with (jax_impl.train.compiler_options); 'none': XLA's defaults")
    return parser


# ----------------------------------------------------------------------------------------------- environment


def configure_environment(device: str) -> None:
    """Before jax is imported: pin JAX to the CPU for --device cpu; on CUDA keep JAX from grabbing 75% of the
    GPU memory at start-up, which PyTorch in the same process would then lack."""
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    else:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ----------------------------------------------------------------------------------------------- matmul reference


def matmul_rates(device, size: int, use_jax: bool) -> dict[str, float]:
    """GFLOP/s (median of MATMUL_REPEATS) of a size x size float32 matmul: torch on `device` (TF32 off),
    jax on its default device at precision 'highest', and numpy on the CPU runs."""
    import torch
    flop = 2.0 * size ** 3
    rates = {}
    rng = np.random.default_rng(0)
    a_np = rng.standard_normal((size, size), dtype=np.float32)
    b_np = rng.standard_normal((size, size), dtype=np.float32)

    a, b = torch.from_numpy(a_np).to(device), torch.from_numpy(b_np).to(device)
    cuda = device.type == "cuda"
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        def torch_mm(_):
            torch.mm(a, b)
            if cuda:
                torch.cuda.synchronize(device)
        time_calls(torch_mm, 2)
        rates[f"torch.mm ({device.type}{', TF32 off' if cuda else ''})"] = \
            flop / Stats(time_calls(torch_mm, MATMUL_REPEATS)).median / 1e9
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    del a, b

    if use_jax:
        import jax
        import jax.numpy as jnp
        mm = jax.jit(lambda x, y: jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST))
        a, b = jnp.asarray(a_np), jnp.asarray(b_np)
        jax_mm = lambda _: mm(a, b).block_until_ready()  # noqa: E731
        time_calls(jax_mm, 2)
        rates[f"jnp.matmul ({jax.default_backend()}, precision highest)"] = \
            flop / Stats(time_calls(jax_mm, MATMUL_REPEATS)).median / 1e9
        del a, b

    if not cuda:
        np_mm = lambda _: a_np @ b_np  # noqa: E731
        time_calls(np_mm, 2)
        rates["numpy matmul (cpu)"] = flop / Stats(time_calls(np_mm, MATMUL_REPEATS)).median / 1e9
    return rates


# ----------------------------------------------------------------------------------------------- PyTorch


def bench_torch(depth, batch_size, pool, stream, data_on_device, device, channels_last, warmup, steps, async_steps):
    """(train Stats, eval Stats, async mean or None) of the real torch_impl train_step and an eval forward.
    Each step's input is what torch_impl.train feeds it: a host batch from `pool` through to_device, or with
    `data_on_device` the DeviceStream gather of step i's plan from the device-resident train split."""
    import torch
    from cifar_core.recipe import Recipe
    from torch_impl.model import resnet
    from torch_impl.train import DeviceStream, make_optimizer, to_device, train_step

    recipe = Recipe(depth=depth, batch_size=batch_size)
    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    model = resnet(depth, seed=recipe.seed).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe)
    model.train()
    if data_on_device:
        device_stream = DeviceStream(stream, device)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format

        def next_batch(i):  # as torch_impl.train.run's next_batch with --data-on-device
            images, labels = device_stream.batch(i)
            return images.permute(0, 3, 1, 2).contiguous(memory_format=memory_format), labels
    else:
        def next_batch(i):
            images, labels = pool[i % len(pool)]
            return to_device(images, device, channels_last), torch.from_numpy(labels).long().to(device)

    def step(i, synchronize=True):
        train_step(model, optimizer, *next_batch(i), recipe.lr_at(i))
        if synchronize:
            sync()

    time_calls(step, warmup)
    train = Stats(time_calls(lambda i: step(warmup + i), steps))
    async_mean = None
    if async_steps:
        sync()
        start = time.perf_counter()
        for i in range(async_steps):
            step(warmup + steps + i, synchronize=False)
        sync()
        async_mean = (time.perf_counter() - start) / async_steps

    model.eval()

    @torch.inference_mode()
    def forward(i):
        images, _ = pool[i % len(pool)]
        model(to_device(images, device, channels_last)).argmax(1)
        sync()

    time_calls(forward, warmup)
    evaluation = Stats(time_calls(lambda i: forward(warmup + i), steps))
    return train, evaluation, async_mean


# ----------------------------------------------------------------------------------------------- JAX


def bench_jax(depth, batch_size, pool, stream, data_on_device, warmup, steps, async_steps, split, xla_options,
              steps_per_call=1, conv_kernels="xla"):
    """(train Stats, eval Stats, async mean or None, compile timings) of the real jax_impl step and predict;
    the step's input as in bench_torch (global_batch of a host batch, or jax_impl's DeviceStream). With
    steps_per_call > 1, each timed call is train_steps over that many steps, and its time / steps_per_call
    counts as a step."""
    import jax
    from cifar_core.recipe import Recipe
    from jax_impl.model import ResNet
    from jax_impl.train import (DeviceStream, compile_predict, compile_train_step, compile_train_steps, create_state,
                                global_batch, make_mesh, replicate)

    recipe = Recipe(depth=depth, batch_size=batch_size)
    mesh = make_mesh(1)
    state = replicate(mesh, create_state(ResNet(depth, conv_kernels=conv_kernels), recipe))
    step_fn = compile_train_step(mesh, split, xla_options)
    predict_fn = compile_predict(mesh, xla_options)
    eval_model = ResNet(depth, conv_kernels=conv_kernels)

    if data_on_device:
        device_stream = DeviceStream(stream, mesh)
        batch = device_stream.batch
    else:
        def batch(i):
            images, labels = pool[i % len(pool)]
            return global_batch(mesh, images), global_batch(mesh, labels)
    if steps_per_call > 1:
        steps_fn = compile_train_steps(mesh, xla_options)

    compile_times = {}

    def step(i, block=True):  # steps_per_call steps from step i * steps_per_call on
        nonlocal state
        if steps_per_call > 1:
            state, metrics = steps_fn(state, device_stream.images, device_stream.labels,
                                      *device_stream.plans(i * steps_per_call, steps_per_call))
        else:
            state, metrics = step_fn(state, *batch(i))
        if block:
            jax.block_until_ready((state, metrics))

    warm = time_calls(step, warmup)
    compile_times["train first call (incl. compile)"] = warm[0]
    train = Stats([t / steps_per_call for t in time_calls(lambda i: step(warmup + i), steps)])
    async_mean = None
    if async_steps:
        jax.block_until_ready(state)
        start = time.perf_counter()
        for i in range(async_steps):
            step(warmup + steps + i, block=False)
        jax.block_until_ready(state)
        async_mean = (time.perf_counter() - start) / async_steps / steps_per_call

    variables = {"params": state.params, "batch_stats": state.batch_stats}

    def forward(i):
        images, _ = pool[i % len(pool)]
        jax.block_until_ready(predict_fn(eval_model, variables, global_batch(mesh, images)))

    warm = time_calls(forward, warmup)
    compile_times["eval first call (incl. compile)"] = warm[0]
    evaluation = Stats(time_calls(lambda i: forward(warmup + i), steps))
    return train, evaluation, async_mean, compile_times


def release_memory(device) -> None:
    """Free what one backend's benchmark held (model, optimiser state, the device copy of the train split) before
    the next starts: its locals went with its return; the collector takes any cycles, then PyTorch's cache goes."""
    gc.collect()
    if device.type == "cuda":
        import torch
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------- pipeline


def load_pipeline(args, recipe):
    """(Pipeline, description, build seconds): real CIFAR-10 if available without downloading, else synthetic."""
    from cifar_core import data, pipeline, synthetic
    dataset = None
    if not args.synthetic:
        try:
            start = time.perf_counter()
            dataset = data.load(args.data_dir, download=False)
            load_s = time.perf_counter() - start
        except data.DataError as error:
            if args.data_dir is not None or os.environ.get("CIFAR10_DIR"):
                raise SystemExit(f"error: {error}")
            log("no CIFAR-10 found (--data-dir, $CIFAR10_DIR, cache); timing the pipeline on synthetic data")
    if dataset is None:
        start = time.perf_counter()
        dataset = synthetic.make_dataset(n_train=50_000, n_test=10_000, seed=0)
        load_s = time.perf_counter() - start
        source = "synthetic (cifar_core.synthetic.make_dataset, 50,000 + 10,000 images)"
    else:
        source = f"CIFAR-10 from {dataset.source}"
    start = time.perf_counter()
    built = pipeline.build(recipe, dataset=dataset)
    return built, source, load_s, time.perf_counter() - start


def bench_pipeline(train_stream, batch_size, warmup, steps):
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


# ----------------------------------------------------------------------------------------------- report


def ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path: Path, generated: str) -> None:
    """Write `generated` above the attempts marker, keeping whatever the existing file has from the marker on
    (or from a '## Attempts' heading when the marker was lost); create the section if there is none."""
    tail = None
    if path.exists():
        old = path.read_text()
        marker = re.search(r"^" + re.escape(ATTEMPTS_MARKER) + r"[ \t]*$", old, re.MULTILINE)
        if marker:
            tail = old[marker.start():]
        else:
            heading = re.search(r"^## Attempts\b", old, re.MULTILINE)
            if heading:
                tail = ATTEMPTS_MARKER + "\n" + old[heading.start():]
    if tail is None:
        tail = ATTEMPTS_TEMPLATE
    elif not re.search(r"^## Attempts\b", tail, re.MULTILINE):
        tail = ATTEMPTS_TEMPLATE + tail[len(ATTEMPTS_MARKER):]
    if not tail.endswith("\n"):
        tail += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(generated.rstrip("\n") + "\n\n" + tail)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- main


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.rounds > args.steps:
        raise SystemExit(f"error: --rounds {args.rounds} exceeds --steps {args.steps}: every round needs a timed step")
    if args.depth < 8 or (args.depth - 2) % 6:
        raise SystemExit(f"error: --depth {args.depth} is not 6n+2 (8, 20, 32, 44, 56, 110, ...)")
    configure_environment(args.device)
    load_before = os.getloadavg()

    import jax
    import torch
    from cifar_core.plan import TrainStream
    from cifar_core.recipe import Recipe
    from cifar_core.run import cpu_name, git_info
    from jax_impl.train import (STEP_PROGRAMS, compiler_options, resolve_conv_kernels, resolve_steps_per_call,
                                two_programs)
    from torch_impl.model import resnet
    git = git_info()  # the code being measured, before anyone edits the tree during the run

    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda, but torch.cuda.is_available() is False")
        if "jax" in args.backends and jax.default_backend() != "gpu":
            raise SystemExit(f"error: --device cuda, but JAX's default backend is {jax.default_backend()!r}; "
                             "install jax[cuda12] (or drop jax from --backends)")
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True  # as torch_impl.train on CUDA
    else:
        device = torch.device("cpu")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32  # as torch_impl.train
    if args.jax_precision != "default":
        jax.config.update("jax_default_matmul_precision", args.jax_precision)
    data_on_device = args.data_on_device if args.data_on_device is not None else device.type == "cuda"
    async_steps = args.async_steps if args.async_steps is not None else (args.steps if device.type == "cuda" else 0)
    try:  # as the JAX trainer resolves its --steps-per-call
        jax_steps_per_call = resolve_steps_per_call(args.jax_steps_per_call, data_on_device, jax.default_backend(),
                                                    "--jax-steps-per-call")
        jax_conv = resolve_conv_kernels(args.jax_conv, jax.default_backend(), "--jax-conv") \
            if "jax" in args.backends else None
    except ValueError as error:
        raise SystemExit(f"error: {error}")
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")

    macs = forward_macs(args.depth)
    assert abs(forward_macs(32) - RESNET32_MACS) <= 0.01e6, forward_macs(32)
    counted = torch_model_macs(resnet(args.depth, seed=0))
    assert counted == macs, f"the PyTorch model has {counted} MACs per image, the formula {macs}"
    fwd_flop, train_flop = 2.0 * macs, 3 * 2.0 * macs

    log(f"float32 matmul reference ({args.matmul_size or (8192 if device.type == 'cuda' else 2048)}^2)")
    rates = matmul_rates(device, args.matmul_size or (8192 if device.type == "cuda" else 2048), "jax" in args.backends)
    peak = max(rates.values())

    log("building the input pipeline")
    data, data_source, load_s, build_s = load_pipeline(args, Recipe(depth=args.depth, batch_size=min(args.batch_sizes)))
    if max(args.batch_sizes) > len(data.train.images):
        raise SystemExit(f"error: batch size {max(args.batch_sizes)} exceeds the {len(data.train.images)} "
                         "training images")

    results = {}  # (backend, batch) -> dict
    compile_rows, pipeline_rows = [], {}
    for batch_size in args.batch_sizes:
        stream = TrainStream(data.train.images, data.train.labels, data.train.seed, batch_size)
        pool = [stream.batch(i) for i in range(min(8, args.warmup + args.steps + async_steps))]
        # The backends take turns, --rounds times: a slow or fast spell of a shared machine then reaches
        # every backend rather than whichever happened to be running.
        timings = {backend: {"train": [], "eval": [], "async": []} for backend in args.backends}
        for round_index, round_steps in enumerate(split_steps(args.steps, args.rounds)):
            for backend in args.backends:
                log(f"{BACKENDS[backend]}, batch {batch_size}, round {round_index + 1}/{args.rounds}: "
                    f"{args.warmup} warm-up + {round_steps} timed steps"
                    + (f" + {async_steps} unsynchronised" if async_steps else ""))
                if backend == "jax":
                    train, evaluation, async_mean, compile_times = bench_jax(
                        args.depth, batch_size, pool, stream, data_on_device, args.warmup, round_steps, async_steps,
                        STEP_PROGRAMS[args.jax_step], {"auto": "auto", "none": None}[args.jax_xla_options],
                        jax_steps_per_call, jax_conv)
                    if round_index == 0:
                        compile_rows.append([str(batch_size)] + [f"{v:.2f}" for v in compile_times.values()])
                else:
                    train, evaluation, async_mean = bench_torch(args.depth, batch_size, pool, stream, data_on_device,
                                                                device, backend == "torch_cl", args.warmup,
                                                                round_steps, async_steps)
                release_memory(device)
                timings[backend]["train"] += train.times
                timings[backend]["eval"] += evaluation.times
                if async_mean is not None:
                    timings[backend]["async"].append(async_mean)
        for backend, t in timings.items():
            results[backend, batch_size] = {"train": Stats(t["train"]), "eval": Stats(t["eval"]),
                                            "async": statistics.fmean(t["async"]) if t["async"] else None}
        log(f"input pipeline, batch {batch_size}")
        pipeline_rows[batch_size] = bench_pipeline(data.train, batch_size, args.warmup, args.steps)
    load_after = os.getloadavg()

    # ------------------------------------------------------------------- the report
    commit = (git["commit"] or "unknown") + (" (dirty tree)" if git["dirty"] else "")
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        device_text = (f"{torch.cuda.get_device_name(device)} ({props.total_memory / 2**30:.0f} GiB); "
                       f"JAX: {', '.join(d.device_kind for d in jax.devices()[:1])}")
    else:
        device_text = "CPU"
    jax_step_text = ("two jitted programs: forward, then backward and SGD update"
                     if two_programs(jax.default_backend(), STEP_PROGRAMS[args.jax_step]) else "one jitted program")
    if jax_steps_per_call > 1:  # train_steps is one program whatever --jax-step says
        jax_step_text = (f"--jax-steps-per-call {jax_steps_per_call}: that many steps per jitted call, one lax.scan "
                         f"(train_steps), a call's time / {jax_steps_per_call} counted as a step")
    else:
        jax_step_text = f"--jax-step {args.jax_step} ({jax_step_text})"
    if args.jax_xla_options == "none":
        jax_options_text = "XLA's defaults"
    else:
        jax_options_text = ", ".join(f"{k}={v}" for k, v in (compiler_options(jax.default_backend()) or {}).items()) \
            or "XLA's defaults on this platform"
    env_threads = ", ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS",
                                                                  "GLIBC_TUNABLES") if k in os.environ) \
        or "no OMP_NUM_THREADS / MKL_NUM_THREADS / XLA_FLAGS / GLIBC_TUNABLES set"
    command = "python scripts/benchmark.py" + ("" if not sys.argv[1:] else " " + shlex.join(sys.argv[1:]))
    cuda_versions = (f"; CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
                     if device.type == "cuda" else "")
    sections = [
        f"# Benchmarks: ResNet-{args.depth} training and evaluation steps, PyTorch vs JAX",
        "Generated by `scripts/benchmark.py`; each run rewrites everything above the attempts marker line and "
        "keeps the \"Attempts\" section below it.",
        "\n".join([
            f"- Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"- Command: `{command}`",
            f"- Git commit: {commit}",
            f"- Device: {device_text}",
            f"- CPU: {cpu_name()}, {cores} cores ({usable} usable by this process); load average "
            f"{load_before[0]:.2f} at the start, {load_after[0]:.2f} at the end (1 min)",
            f"- Versions: torch {torch.__version__}{cuda_versions}; jax {jax.__version__}, "
            f"jaxlib {package_version('jaxlib')}, flax {package_version('flax')}, optax {package_version('optax')}; "
            f"numpy {np.__version__}; Python {sys.version.split()[0]}",
            f"- Threads: torch.get_num_threads() = {torch.get_num_threads()}, "
            f"get_num_interop_threads() = {torch.get_num_interop_threads()}; {env_threads}",
            f"- Precision: float32 everywhere; PyTorch TF32 {'on' if args.tf32 else 'off'}"
            f"{'' if device.type == 'cuda' else ' (no effect on CPU)'}; JAX jax_default_matmul_precision = "
            f"{args.jax_precision}{' (XLA may then use TF32 for convolutions and matmuls on Ampere/Hopper GPUs)' if device.type == 'cuda' and args.jax_precision == 'default' else ''}",
            f"- Model: ResNet-{args.depth}, {macs / 1e6:.2f} M multiply-adds per image forward "
            f"(= {fwd_flop / 1e6:.1f} MFLOP; a training step counted as 3x: {train_flop / 1e6:.1f} MFLOP per image)",
            "- Training-step input: " + (
                "the train split resident on the device; each step gathers and crops/flips its planned batch "
                "there (the trainers' DeviceStream, --data-on-device)" if data_on_device else
                "a host (NumPy) batch copied in by each step (to_device / global_batch)")
            + "; evaluation always copies a host batch, as the trainers' evaluate",
            f"- Timing: {args.rounds} round{'s' if args.rounds > 1 else ''}, the backends in turn in each; per round and backend "
            f"{args.warmup} warm-up step{'s' if args.warmup > 1 else ''} (not timed; JAX compiles before them), then "
            f"{' + '.join(map(str, split_steps(args.steps, args.rounds)))} = {args.steps} steps "
            f"timed one by one{', each ending in a device sync' if device.type == 'cuda' else ''}; "
            "median (min, max) per step over all the rounds, images/s = batch / median",
            f"- JAX: training step {jax_step_text}; training step and evaluation "
            f"compiled with --jax-xla-options {args.jax_xla_options} ({jax_options_text}); convolutions: "
            f"--jax-conv {args.jax_conv} ({JAX_CONV_TEXT.get(jax_conv, 'JAX not run')})",
        ]),
        "## Reference: float32 matrix multiply\n\n" + table(
            ["kernel", "GFLOP/s (median)"],
            [[name, f"{rate:.1f}"] for name, rate in rates.items()])
        + f"\n\nThe fractions below are of the best of these, {peak:.1f} GFLOP/s.",
    ]

    def backend_rows(kind: str, flop_per_image: float) -> list[list[str]]:
        rows = []
        for batch_size in args.batch_sizes:
            for backend in args.backends:
                r = results[backend, batch_size]
                s = r[kind]
                gflops = flop_per_image * batch_size / s.median / 1e9
                row = [str(batch_size), BACKENDS[backend], ms(s.median), ms(s.min), ms(s.max),
                       f"{batch_size / s.median:,.0f}", f"{gflops:.1f}", f"{100 * gflops / peak:.1f}%"]
                if kind == "train" and async_steps:
                    row.append(ms(r["async"]))
                rows.append(row)
        return rows

    header = ["batch", "backend", "median ms", "min ms", "max ms", "images/s", "GFLOP/s", "of matmul"]
    async_note = (f"\n\n\"unsynced mean ms\": {async_steps} further steps issued without a per-step sync, total "
                  "time / steps (a training loop's throughput).") if async_steps else ""
    sections.append("## Training step\n\n" + table(header + (["unsynced mean ms"] if async_steps else []),
                                                   backend_rows("train", train_flop)) + async_note)
    sections.append("## Evaluation (forward in eval mode + argmax, per batch)\n\n"
                    + table(header, backend_rows("eval", fwd_flop)))
    if "jax" in args.backends:
        sections.append("## JAX compilation (seconds, not in the step times)\n\n" + table(
            ["batch", "train step first call (incl. compile)", "eval first call (incl. compile)"], compile_rows))
        torch_variants = [b for b in ("torch", "torch_cl") if b in args.backends]
        if torch_variants:
            ratio_rows = []
            for batch_size in args.batch_sizes:
                jax_median = results["jax", batch_size]["train"].median
                row = [str(batch_size)]
                for b in torch_variants:
                    row.append(f"{jax_median / results[b, batch_size]['train'].median:.2f}")
                    row.append(f"{results['jax', batch_size]['eval'].median / results[b, batch_size]['eval'].median:.2f}")
                ratio_rows.append(row)
            ratio_header = ["batch"]
            for b in torch_variants:
                ratio_header += [f"train JAX / {BACKENDS[b]}", f"eval JAX / {BACKENDS[b]}"]
            sections.append("## JAX / PyTorch step-time ratio (median; > 1: JAX slower)\n\n"
                            + table(ratio_header, ratio_rows))

    pipe_rows, failures = [], []
    for batch_size in args.batch_sizes:
        stats, epoch_plan_s, per_epoch = pipeline_rows[batch_size]
        fastest_backend = min(args.backends, key=lambda b: results[b, batch_size]["train"].median)
        fastest = results[fastest_backend, batch_size]["train"].median
        ratio = fastest / stats.median
        ok = ratio >= PIPELINE_MIN_RATIO
        if not ok:
            failures.append(batch_size)
        pipe_rows.append([str(batch_size), ms(stats.median), ms(stats.min), ms(stats.max),
                          f"{batch_size / stats.median:,.0f}", ms(epoch_plan_s),
                          ms(stats.median + epoch_plan_s / per_epoch),
                          f"{ratio:.1f}x ({BACKENDS[fastest_backend]})", "yes" if ok else "**NO**"])
    sections.append(
        "## Input pipeline (cifar_core TrainStream.batch: plan + pad/crop/flip in NumPy, one process)\n\n"
        f"Data: {data_source}; loading {load_s:.2f} s, pipeline.build (split, normalise) {build_s:.2f} s.\n\n"
        + table(["batch", "median ms", "min ms", "max ms", "images/s", "epoch plan ms (once per epoch)",
                 "amortised ms", "fastest step / pipeline", f">= {PIPELINE_MIN_RATIO:.0f}x"], pipe_rows)
        + ("" if not failures else
           f"\n\n**The pipeline is less than {PIPELINE_MIN_RATIO:.0f}x faster than the fastest training step at "
           f"batch {', '.join(map(str, failures))}.**"))
    if load_before[0] > 0.5 * usable:  # at the end the load includes this benchmark's own threads
        sections.append(f"**Warning:** the machine was busy (load average {load_before[0]:.2f} -> "
                        f"{load_after[0]:.2f} on {usable} usable cores); these timings are not representative.")

    generated = "\n\n".join(sections) + "\n"
    print(generated)
    write_report(args.out, generated)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
