"""oneDNN convolutions for the JAX model on CPU: a drop-in `conv_general_dilated` for flax.linen.Conv.

XLA:CPU's own convolutions (Eigen, YNNPACK) run ResNet-32's shapes 1.5-4x slower than oneDNN's, the library
PyTorch's CPU convolutions use (results/benchmarks.md, convs); its built-in oneDNN rewrite is compiled out of
the public jaxlib. So on CPU the model calls oneDNN itself, through XLA's FFI: `cpu_conv.cc` holds three
handlers (forward, backward data, backward weights), and `conv_general_dilated` here is a jax.custom_vjp
whose backward pass calls the two gradient handlers. Same parameters, same layouts (NHWC, HWIO), float32 or
bfloat16 (--amp bf16; oneDNN has no float64 convolution, so the float64 parity suite uses XLA's).

The handlers are compiled on first use with the C++ compiler (g++, or $CXX) against jaxlib's FFI headers
and the oneDNN of the `onednn-cpu-gomp` / `onednn-devel-cpu-gomp` wheels, and cached by source and version
under $XDG_CACHE_HOME/resnet-cifar-twin (~/.cache/...). `status()` says whether they can be used and,
if not, why.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
from jax import lax

SOURCE = Path(__file__).with_name("cpu_conv.cc")
TARGETS = {"cpu_conv_forward": "CpuConvForward", "cpu_conv_backward_data": "CpuConvBackwardData",
           "cpu_conv_backward_weights": "CpuConvBackwardWeights"}
ONEDNN_DISTRIBUTIONS = ("onednn-cpu-gomp", "onednn-devel-cpu-gomp")
NHWC = ("NHWC", "HWIO", "NHWC")
DTYPES = (np.dtype(np.float32), np.dtype(jax.numpy.bfloat16))


class Unavailable(RuntimeError):
    """The oneDNN convolutions cannot be built or loaded here; the message says why and what to do."""


def _onednn_prefix() -> Path:
    """The prefix the oneDNN wheels installed include/ and lib/ into (the environment's data directory)."""
    try:
        dist = metadata.distribution("onednn-devel-cpu-gomp")
    except metadata.PackageNotFoundError:
        raise Unavailable("oneDNN is not installed: pip install onednn-cpu-gomp onednn-devel-cpu-gomp "
                          "(Linux x86-64), or pass --conv xla") from None
    header = next((f for f in dist.files or () if str(f).endswith("oneapi/dnnl/dnnl.hpp")), None)
    if header is None:
        raise Unavailable("onednn-devel-cpu-gomp has no oneapi/dnnl/dnnl.hpp; reinstall it, or pass --conv xla")
    prefix = Path(dist.locate_file(header)).resolve().parents[3]  # <prefix>/include/oneapi/dnnl/dnnl.hpp
    if not any((prefix / "lib").glob("libdnnl.so*")):
        raise Unavailable(f"no libdnnl.so under {prefix / 'lib'}: pip install onednn-cpu-gomp, or pass --conv xla")
    return prefix


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "resnet-cifar-twin"


def build() -> Path:
    """The compiled handlers' shared library, compiled now unless a build of the same inputs is cached."""
    prefix = _onednn_prefix()
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise Unavailable("no C++ compiler (g++ or $CXX) to build the oneDNN convolutions; install one, "
                          "or pass --conv xla")
    try:
        versions = [metadata.version(d) for d in ("jaxlib", *ONEDNN_DISTRIBUTIONS)]
    except metadata.PackageNotFoundError as missing:
        raise Unavailable(f"{missing.name} is not installed: pip install onednn-cpu-gomp onednn-devel-cpu-gomp, "
                          "or pass --conv xla") from None
    key = hashlib.sha256(SOURCE.read_bytes() + repr((versions, str(prefix), compiler)).encode()).hexdigest()[:16]
    library = cache_dir() / f"cpu_conv-{key}.so"
    if library.exists():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
        partial = Path(tmp) / library.name
        command = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{jax.ffi.include_dir()}",
                   f"-I{prefix / 'include'}", str(SOURCE), "-o", str(partial), f"-L{prefix / 'lib'}", "-ldnnl",
                   "-lgomp",
                   f"-Wl,-rpath,{prefix / 'lib'}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except OSError as error:
            raise Unavailable(f"cannot run the C++ compiler {compiler} ({error}); set $CXX, "
                              "or pass --conv xla") from None
        if done.returncode:
            raise Unavailable(f"building {SOURCE.name} failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
        os.replace(partial, library)  # atomic: concurrent builds of the same key leave one complete file
    return library


@functools.cache
def _registered() -> str | None:
    """Build, load and register the handlers once per process: None, or why they are unavailable."""
    try:
        library = ctypes.cdll.LoadLibrary(str(build()))
    except (Unavailable, OSError) as error:
        return str(error)
    for target, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
    return None


def status() -> str | None:
    """None when the oneDNN convolutions are ready to use in this process, else the reason they are not."""
    if sys.platform != "linux":
        return f"the oneDNN convolutions are built for Linux only (this is {sys.platform}); pass --conv xla"
    return _registered()


def require() -> None:
    if (reason := status()) is not None:
        raise Unavailable(reason)


@functools.cache
def threads_per_device() -> int:
    """oneDNN's threads per call: the usable cores shared among the local CPU devices, whose programs XLA
    runs at the same time (one device, the usual case: all of them)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // len(jax.local_devices(backend="cpu")))


def _call(target, shape, *operands, strides, padding):
    # The result's type is the operands' (dtype, and under shard_map the mesh axes it varies over: vary_alike).
    result = jax.typeof(operands[0]).update(shape=shape)
    return jax.ffi.ffi_call(target, result)(
        *operands, strides=np.asarray(strides, np.int64), padding=np.asarray(padding, np.int64).reshape(-1),
        threads=np.int64(threads_per_device()))


def vary_alike(*operands):
    """Under shard_map, cast each operand to vary over every mesh axis any of them varies over, as JAX does
    for its own primitives (a replicated parameter applied to a device's slice of the batch), so that a
    custom VJP's cotangents have its operands' types; the cast's transpose sums a parameter's gradient
    over the devices. Outside shard_map it returns them unchanged."""
    varying = [jax.typeof(x).manual_axis_type.varying for x in operands]
    axes = frozenset().union(*varying)
    return [jax.lax.pcast(x, tuple(sorted(axes - v)), to="varying") for x, v in zip(operands, varying)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, w, strides, padding):
    """NHWC x HWIO -> NHWC, float32 or bfloat16; `padding` ((top, bottom), (left, right))."""
    (n, h, width, _), (kh, kw, _, co) = x.shape, w.shape
    out_h = (h + sum(padding[0]) - kh) // strides[0] + 1
    out_w = (width + sum(padding[1]) - kw) // strides[1] + 1
    return _call("cpu_conv_forward", (n, out_h, out_w, co), x, w, strides=strides, padding=padding)


def _conv_forward(x, w, strides, padding):
    return _conv(x, w, strides, padding), (x, w)


def _conv_backward(strides, padding, residuals, dy):
    x, w = residuals
    dx = _call("cpu_conv_backward_data", x.shape, dy, w, strides=strides, padding=padding)
    dw = _call("cpu_conv_backward_weights", w.shape, x, dy, strides=strides, padding=padding)
    return dx, dw


_conv.defvjp(_conv_forward, _conv_backward)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
    """lax.conv_general_dilated for what the ResNet uses (float32 or bfloat16 NHWC/HWIO, explicit padding, no
    dilation, no groups), on oneDNN; anything else is a ValueError rather than a silent fallback. bfloat16
    operands give a bfloat16 result accumulated in float32, as XLA's."""
    expected = lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)
    given = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    unsupported = [what for what, bad in (
        ("float32 or bfloat16 operands of one type", lhs.dtype not in DTYPES or rhs.dtype != lhs.dtype),
        ("NHWC/HWIO layouts", given != expected), ("explicit padding", isinstance(padding, str)),
        ("no dilation", any(d not in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))),
        ("no feature or batch groups", feature_group_count != 1 or batch_group_count != 1),
        ("a result of the operands' type", preferred_element_type not in (None, lhs.dtype))) if bad]
    if unsupported:
        raise ValueError(f"cpu_conv.conv_general_dilated needs {', '.join(unsupported)} (got {lhs.dtype} "
                         f"{lhs.shape} * {rhs.dtype} {rhs.shape}); use XLA's convolutions (--conv xla) here.")
    lhs, rhs = vary_alike(lhs, rhs)
    return _conv(lhs, rhs, tuple(int(s) for s in window_strides), tuple((int(a), int(b)) for a, b in padding))
