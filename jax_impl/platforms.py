"""What the JAX trainer does differently by platform, each choice measured (results/benchmarks.md): XLA options
and two programs per training step on the CPU, several steps per call off it, and which convolutions run.
jax_impl/train.py applies them; the benchmarks and the parity harness ask the same functions."""

from __future__ import annotations

import functools
import sys

import jax
import numpy as np
from jax.sharding import Mesh

from . import cpu_conv
from .model import CONV_KERNELS

# XLA:CPU hands convolutions with more than 16 channels to YNNPACK by default; on this ResNet's shapes XLA's
# own (Eigen) convolutions are faster, while YNNPACK's reductions and elementwise fusions are faster than
# XLA's. So the CPU training step and evaluation keep YNNPACK for everything but convolutions
# (results/benchmarks.md). The option is experimental: a jaxlib without it compiles with its defaults.
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ",".join(
    f"LIBRARY_FUSION_TYPE_{kind}" for kind in ("DOT", "ELTWISE", "REDUCE", "INDIVIDUAL_DOT"))}


@functools.cache
def compiler_options(platform: str) -> dict | None:
    """XLA options for the programs compiled for `platform`: CPU_COMPILER_OPTIONS on CPU if this jaxlib knows them."""
    if platform != "cpu":
        return None
    try:
        probe = jax.device_put(np.zeros(2, np.float32), jax.devices("cpu")[0])
        jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(probe).compile()
    except jax.errors.JaxRuntimeError:  # "No such compile option" / "not a valid enum value"
        return None
    return CPU_COMPILER_OPTIONS


def resolve_compiler_options(mesh: Mesh, xla_options: dict | str | None) -> dict | None:
    """The compile_* functions' `xla_options`: "auto" is compiler_options(the mesh's platform), else as given."""
    return compiler_options(mesh.devices.flat[0].platform) if xla_options == "auto" else xla_options


STEP_PROGRAMS = {"auto": None, "one": False, "two": True}  # the scripts' --jax-step -> compile_train_step's split


def two_programs(platform: str, split: bool | None = None) -> bool:
    """Whether compile_train_step runs the step as two programs: `split` if given, else on CPU."""
    return platform == "cpu" if split is None else split


STEPS_PER_CALL_ACCELERATOR = 50  # --steps-per-call's default on GPU/TPU with the data on the device


def resolve_steps_per_call(requested: int | None, data_on_device: bool, platform: str,
                           flag: str = "--steps-per-call") -> int:
    """Steps per jitted call: `requested`, or by default STEPS_PER_CALL_ACCELERATOR off the CPU with the data
    on the device and 1 otherwise. ValueError, naming `flag`, for one below 1 or above 1 without the data on
    the device."""
    steps = requested
    if steps is None:
        steps = STEPS_PER_CALL_ACCELERATOR if data_on_device and platform != "cpu" else 1
    if steps < 1:
        raise ValueError(f"{flag} must be at least 1, got {steps}.")
    if steps > 1 and not data_on_device:
        raise ValueError(f"{flag} {steps} needs --data-on-device: each scanned step gathers its batch from the "
                         "train split on the device.")
    return steps


CONV_CHOICES = ("auto", *CONV_KERNELS)  # --conv (the scripts spell it out: they parse flags before importing jax)


def resolve_conv_kernels(requested: str, platform: str, flag: str = "--conv") -> str:
    """The model's conv_kernels for `flag`: "auto" is "onednn" on CPU (float32 and --amp bf16 alike) when
    jax_impl/cpu_conv builds here (a note on stderr says why not when it does not), "xla" elsewhere. An
    explicit "onednn" it cannot honour is a ValueError naming the reason."""
    if requested not in CONV_CHOICES:
        raise ValueError(f"{flag} {requested!r}: choose one of {', '.join(CONV_CHOICES)}")
    if requested == "xla" or (requested == "auto" and platform != "cpu"):
        return "xla"
    if platform != "cpu":
        raise ValueError(f"{flag} onednn is for the CPU; JAX is running on {platform}: use {flag} auto or xla")
    reason = cpu_conv.status()
    if reason is None:
        return "onednn"
    if requested == "onednn":
        raise ValueError(f"{flag} onednn: {reason}")
    print(f"note: XLA's convolutions ({flag} auto), slower on CPU than oneDNN's: {reason}", file=sys.stderr)
    return "xla"
