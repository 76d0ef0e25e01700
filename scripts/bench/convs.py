"""convs: where the CPU training-step gap comes from; its section of results/benchmarks.md. One 3x3 convolution,
its input gradient and its weight gradient, PyTorch against JAX (XLA's convolutions, and on CPU
jax_impl/cpu_conv's oneDNN ones), at ResNet-32's three stage shapes.

Each kernel is timed alone, as the training steps run it: PyTorch through aten.convolution and
aten.convolution_backward (channels_last, and NCHW), JAX through jax.lax.conv_general_dilated and its jax.vjp,
jitted with the options jax_impl.train compiles with (compiler_options) and with XLA's defaults. Each kernel
runs --repeats times back to back after warm-up, each call ending in a device sync, in --rounds sweeps over all
the kernels; the median is over all its calls. A stage of ResNet-32 runs about ten such convolutions (n = 5
blocks of two), so ten times a row's sum approximates the stage's share of a training step's convolution time
(the first convolution of stages 2 and 3 has stride 2, the stem has 3 input channels; both are left out).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
from pathlib import Path

import numpy as np

from bench.common import REPORT, Provenance, configure_environment, fail, positive, table, time_calls

CONV_STAGES = ((32, 16), (16, 32), (8, 64))  # (height = width, channels) of ResNet-32's three stages
CONV_KERNELS = ("forward", "input gradient", "weight gradient")


@dataclasses.dataclass(frozen=True)
class Setup:
    device: str = "cpu"
    batch_size: int = 128
    warmup: int = 3
    repeats: int = 10
    rounds: int = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-size", type=positive, default=128)
    parser.add_argument("--warmup", type=positive, default=3)
    parser.add_argument("--repeats", type=positive, default=10, help="back-to-back timed calls per kernel and round")
    parser.add_argument("--rounds", type=positive, default=3, help="sweeps over all the kernels")
    parser.add_argument("--out", type=Path, default=REPORT)


def measure(setup: Setup, provenance: Provenance) -> dict:
    """The median milliseconds of every kernel of every variant at every stage shape, and what ran them."""
    configure_environment(setup.device)
    import jax
    import torch
    from jax_impl import cpu_conv
    from jax_impl.platforms import compiler_options
    if setup.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda, but torch.cuda.is_available() is False")
    device = torch.device(setup.device)
    options = compiler_options(jax.default_backend())
    variants = {"PyTorch channels_last": functools.partial(torch_conv_kernels, device=device, channels_last=True),
                "PyTorch NCHW": functools.partial(torch_conv_kernels, device=device, channels_last=False),
                "JAX, XLA (jax_impl options)": functools.partial(jax_conv_kernels, options=options)}
    if options:
        variants["JAX, XLA (XLA defaults)"] = functools.partial(jax_conv_kernels, options=None)
    if jax.default_backend() == "cpu" and cpu_conv.status() is None:
        variants["JAX, oneDNN (jax_impl/cpu_conv, the CPU default)"] = functools.partial(
            jax_conv_kernels, options=options, conv=cpu_conv.conv_general_dilated)
    calls = {(stage, name, kernel): call for stage in CONV_STAGES for name, make in variants.items()
             for kernel, call in zip(CONV_KERNELS, make(setup.batch_size, *stage))}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{provenance.cpu}; torch threads {torch.get_num_threads()}"
    return {"setup": setup, "provenance": provenance, "variants": list(variants),
            "medians": medians_in_rounds(calls, setup.warmup, setup.repeats, setup.rounds),
            "device": f"{device_name}; load average {provenance.load:.2f} at the start, "
                      f"{os.getloadavg()[0]:.2f} at the end",
            "versions": f"torch {torch.__version__}; jax {jax.__version__}",
            "options": ", ".join(f"{k}={v}" for k, v in (options or {}).items()) or "none on this platform"}


def medians_in_rounds(calls: dict, warmup: int, repeats: int, rounds: int) -> dict:
    """Median wall time (ms) of each zero-argument call over `rounds` sweeps of `repeats` back-to-back calls
    each. Back to back, as in a training step: a call straight after another framework's finds that
    framework's worker threads still spinning (PyTorch's OpenMP threads) and is timed slower. The rounds
    spread a burst of noise on the machine over all the calls rather than one."""
    times = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            time_calls(lambda _: call(), warmup)
            times[key] += time_calls(lambda _: call(), repeats)
    return {key: 1e3 * statistics.median(t) for key, t in times.items()}


def torch_conv_kernels(batch, size, channels, device, channels_last):
    """(forward, input gradient, weight gradient) as zero-argument callables that finish their work."""
    import torch
    layout = torch.channels_last if channels_last else torch.contiguous_format
    make = lambda *shape: torch.randn(*shape, device=device).contiguous(memory_format=layout)  # noqa: E731
    x, grad, weight = (make(batch, channels, size, size), make(batch, channels, size, size),
                       make(channels, channels, 3, 3))
    conv = ([1, 1], [1, 1], [1, 1], False, [0, 0], 1)  # stride, padding, dilation, transposed, output_padding, groups
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def finished(fn):
        def call():
            with torch.no_grad():
                fn()
            sync()
        return call
    return (finished(lambda: torch.ops.aten.convolution(x, weight, None, *conv)),
            finished(lambda: torch.ops.aten.convolution_backward(grad, x, weight, None, *conv, [True, False, False])),
            finished(lambda: torch.ops.aten.convolution_backward(grad, x, weight, None, *conv, [False, True, False])))


def jax_conv_kernels(batch, size, channels, options, conv=None):
    import jax
    rng = np.random.default_rng(0)
    x, grad = (jax.numpy.asarray(rng.standard_normal((batch, size, size, channels), np.float32)) for _ in range(2))
    weight = jax.numpy.asarray(rng.standard_normal((3, 3, channels, channels), np.float32))
    convolution = conv or jax.lax.conv_general_dilated

    def apply(x, w):  # as flax.linen.Conv in jax_impl.model: NHWC, HWIO, explicit padding 1
        return convolution(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    forward = jax.jit(apply, compiler_options=options)
    input_grad = jax.jit(lambda g, w: jax.vjp(lambda x: apply(x, w), x)[1](g)[0], compiler_options=options)
    weight_grad = jax.jit(lambda x, g: jax.vjp(lambda w: apply(x, w), weight)[1](g)[0], compiler_options=options)
    return (lambda: forward(x, weight).block_until_ready(), lambda: input_grad(grad, weight).block_until_ready(),
            lambda: weight_grad(x, grad).block_until_ready())


def render(results: dict) -> str:
    setup, medians, variants = results["setup"], results["medians"], results["variants"]
    per_call = lambda stage, name: [medians[stage, name, kernel] for kernel in CONV_KERNELS]  # noqa: E731
    rows = [[f"{s}x{s}x{c}", name, *(f"{t:.2f}" for t in per_call((s, c), name)), f"{sum(per_call((s, c), name)):.2f}"]
            for s, c in CONV_STAGES for name in variants]
    stage_rows = [[name, *(f"{10 * sum(per_call(stage, name)):.0f}" for stage in CONV_STAGES),
                   f"{sum(10 * sum(per_call(stage, name)) for stage in CONV_STAGES):.0f}"] for name in variants]
    return "\n".join([
        "# One convolution and its gradients, PyTorch vs JAX", "",
        "Generated by `scripts/benchmark.py convs` (its docstring says what is timed); do not edit by hand.", "",
        *results["provenance"].lines(), f"- Device: {results['device']} (1 min)", f"- Versions: {results['versions']}",
        f"- JAX compiled with jax_impl.platforms.compiler_options: {results['options']}",
        f"- Batch {setup.batch_size}, float32, 3x3 convolution, stride 1, padding 1, as many output channels as input; "
        f"median of {setup.rounds} x {setup.repeats} calls ({setup.rounds} sweeps over the kernels, each kernel "
        f"{setup.warmup} warm-up then {setup.repeats} timed calls back to back)", "",
        "## Milliseconds per call", "",
        table(["input (HxWxC)", "backend", *CONV_KERNELS, "sum"], rows), "",
        "## Ten of each per stage (ms; an approximation of a training step's convolution time per stage)", "",
        table(["backend", *(f"{s}x{s}x{c}" for s, c in CONV_STAGES), "all three"], stage_rows)]) + "\n"
