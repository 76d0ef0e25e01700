"""Where the CPU training-step gap comes from: one 3x3 convolution, its input gradient and its weight gradient,
PyTorch against JAX (XLA's convolutions, and on CPU jax_impl/cpu_conv's oneDNN ones), at ResNet-32's three
stage shapes.

    python scripts/benchmark_convs.py                 # batch 128, writes results/benchmark_convs.md
    python scripts/benchmark_convs.py --device cuda   # the same on a GPU

Each kernel is timed alone, as the training steps run it: PyTorch through aten.convolution and
aten.convolution_backward (channels_last, and NCHW), JAX through jax.lax.conv_general_dilated and its
jax.vjp, jitted with the options jax_impl.train compiles with (compiler_options) and with XLA's defaults.
Each kernel runs --repeats times back to back after warm-up, each call ending in a device sync, in --rounds
sweeps over all the kernels; the median is over all its calls. A stage of ResNet-32 runs about
ten such convolutions (n = 5 blocks of two), so ten times a row's sum approximates the stage's share of a
training step's convolution time (the first convolution of stages 2 and 3 has stride 2, the stem has 3 input
channels; both are left out). Used for attempts 16 and 20 in results/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STAGES = ((32, 16), (16, 32), (8, 64))  # (height = width, channels) of ResNet-32's three stages
KERNELS = ("forward", "input gradient", "weight gradient")


def medians_in_rounds(calls: dict, warmup: int, repeats: int, rounds: int) -> dict:
    """Median wall time (ms) of each zero-argument call over `rounds` sweeps of `repeats` back-to-back calls
    each. Back to back, as in a training step: a call straight after another framework's finds that
    framework's worker threads still spinning (PyTorch's OpenMP threads) and is timed slower. The rounds
    spread a burst of noise on the machine over all the calls rather than one."""
    times = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            for _ in range(warmup):
                call()
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                times[key].append(time.perf_counter() - start)
    return {key: 1e3 * statistics.median(t) for key, t in times.items()}


def torch_kernels(batch, size, channels, device, channels_last):
    """(forward, input gradient, weight gradient) as zero-argument callables that finish their work."""
    import torch
    layout = torch.channels_last if channels_last else torch.contiguous_format
    make = lambda *shape: torch.randn(*shape, device=device).contiguous(memory_format=layout)  # noqa: E731
    x, grad, weight = make(batch, channels, size, size), make(batch, channels, size, size), make(channels, channels, 3, 3)
    conv = ([1, 1], [1, 1], [1, 1], False, [0, 0], 1)  # stride, padding, dilation, transposed, output_padding, groups
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run(fn):
        def call():
            with torch.no_grad():
                fn()
            sync()
        return call
    return (run(lambda: torch.ops.aten.convolution(x, weight, None, *conv)),
            run(lambda: torch.ops.aten.convolution_backward(grad, x, weight, None, *conv, [True, False, False])),
            run(lambda: torch.ops.aten.convolution_backward(grad, x, weight, None, *conv, [False, True, False])))


def jax_kernels(batch, size, channels, options, conv_general_dilated=None):
    import jax
    import numpy as np
    rng = np.random.default_rng(0)
    x, grad = (jax.numpy.asarray(rng.standard_normal((batch, size, size, channels), np.float32)) for _ in range(2))
    weight = jax.numpy.asarray(rng.standard_normal((3, 3, channels, channels), np.float32))

    convolution = conv_general_dilated or jax.lax.conv_general_dilated

    def conv(x, w):  # as flax.linen.Conv in jax_impl.model: NHWC, HWIO, explicit padding 1
        return convolution(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    forward = jax.jit(conv, compiler_options=options)
    input_grad = jax.jit(lambda g, w: jax.vjp(lambda x: conv(x, w), x)[1](g)[0], compiler_options=options)
    weight_grad = jax.jit(lambda x, g: jax.vjp(lambda w: conv(x, w), weight)[1](g)[0], compiler_options=options)
    return (lambda: forward(x, weight).block_until_ready(), lambda: input_grad(grad, weight).block_until_ready(),
            lambda: weight_grad(x, grad).block_until_ready())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10, help="back-to-back timed calls per kernel and round")
    parser.add_argument("--rounds", type=int, default=3, help="sweeps over all the kernels")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "results" / "benchmark_convs.md")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    load_before = os.getloadavg()[0]

    import jax
    import torch
    from cifar_core.run import cpu_name, git_info
    from jax_impl import cpu_conv
    from jax_impl.train import compiler_options
    git = git_info()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    options = compiler_options(jax.default_backend())
    variants = {"PyTorch channels_last": lambda b, s, c: torch_kernels(b, s, c, device, True),
                "PyTorch NCHW": lambda b, s, c: torch_kernels(b, s, c, device, False),
                "JAX, XLA (jax_impl options)": lambda b, s, c: jax_kernels(b, s, c, options)}
    if options:
        variants["JAX, XLA (XLA defaults)"] = lambda b, s, c: jax_kernels(b, s, c, None)
    if jax.default_backend() == "cpu" and cpu_conv.status() is None:
        variants["JAX, oneDNN (jax_impl/cpu_conv, the CPU default)"] = lambda b, s, c: jax_kernels(b, s, c, options,
                                                                                 cpu_conv.conv_general_dilated)

    calls = {}
    for size, channels in STAGES:
        for name, make in variants.items():
            for kernel, call in zip(KERNELS, make(args.batch_size, size, channels)):
                calls[size, channels, name, kernel] = call
    medians = medians_in_rounds(calls, args.warmup, args.repeats, args.rounds)
    rows, stage_sums = [], {name: [] for name in variants}
    for size, channels in STAGES:
        for name in variants:
            times = [medians[size, channels, name, kernel] for kernel in KERNELS]
            stage_sums[name].append(10 * sum(times))
            rows.append(f"| {size}x{size}x{channels} | {name} | " + " | ".join(f"{t:.2f}" for t in times)
                        + f" | {sum(times):.2f} |")

    device_text = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{cpu_name()}, {os.cpu_count()} cores; torch threads {torch.get_num_threads()}"
    options_text = ", ".join(f"{k}={v}" for k, v in (options or {}).items()) or "none on this platform"
    command = "python scripts/benchmark_convs.py" + ("" if not sys.argv[1:] else " " + shlex.join(sys.argv[1:]))
    dirty = " (dirty tree)" if git.get("dirty") else ""
    lines = [
        "# One convolution and its gradients, PyTorch vs JAX",
        "",
        "Generated by `scripts/benchmark_convs.py` (its docstring says what is timed); do not edit by hand.",
        "",
        f"- Date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
        f"- Command: `{command}`",
        f"- Git commit: {git.get('commit')}{dirty}",
        f"- Device: {device_text}; load average {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1 min)",
        f"- Versions: torch {torch.__version__}; jax {jax.__version__}",
        f"- JAX compiled with jax_impl.train.compiler_options: {options_text}",
        f"- Batch {args.batch_size}, float32, 3x3 convolution, stride 1, padding 1, as many output channels as input; "
        f"median of {args.rounds} x {args.repeats} calls ({args.rounds} sweeps over the kernels, each kernel "
        f"{args.warmup} warm-up then {args.repeats} timed calls back to back)",
        "",
        "## Milliseconds per call",
        "",
        "| input (HxWxC) | backend | forward | input gradient | weight gradient | sum |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
        "## Ten of each per stage (ms; an approximation of a training step's convolution time per stage)",
        "",
        "| backend | " + " | ".join(f"{s}x{s}x{c}" for s, c in STAGES) + " | all three |",
        "|---|" + "---:|" * (len(STAGES) + 1),
        *(f"| {name} | " + " | ".join(f"{t:.0f}" for t in sums) + f" | {sum(sums):.0f} |"
          for name, sums in stage_sums.items()),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)


if __name__ == "__main__":
    main()
