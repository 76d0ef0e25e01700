"""Where JAX's CPU training step spends its time: XLA's per-kernel trace, summed by kernel kind.

    python scripts/profile_jax_step.py                          # ResNet-32, batch 128, one device
    python scripts/profile_jax_step.py --devices 2 --cross-device-bn
    python scripts/profile_jax_step.py --jax-step one           # the single-program step (see attempt 10)
    python scripts/profile_jax_step.py --conv xla               # XLA's convolutions instead of oneDNN's

Times jax_impl.train's own jitted step (synthetic inputs: the pixels do not change the work), then traces a
few steps with jax.profiler and prints milliseconds per step for each kind of XLA kernel (ffi_call: a
oneDNN convolution of jax_impl/cpu_conv; ynn_fusion: elementwise ops and reductions through YNNPACK, or with
--conv xla a convolution with the elementwise ops fused into it; transpose_copy_fusion: a relayout, with
whatever elementwise producers XLA chose to recompute inside it), and the largest single kernels.
The times are traced wall times: a kernel waiting for cores that concurrently scheduled kernels hold, or
faulting in fresh memory, is charged for it (results/benchmarks.md, attempt 17), so read the sums as where
to look; scripts/benchmark_convs.py times the convolutions alone. Used for the attempts recorded in
results/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--devices", type=int, default=1, help="virtual CPU devices (data parallel)")
    parser.add_argument("--cross-device-bn", action="store_true")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--jax-step", choices=("auto", "one", "two"), default="auto",
                        help="one jitted program or two (forward; backward and update); auto: two on CPU")
    parser.add_argument("--conv", choices=("auto", "xla", "onednn"), default="auto",
                        help="the model's convolution kernels, as jax_impl.train --conv")
    parser.add_argument("--top", type=int, default=8, help="largest single kernels to list")
    args = parser.parse_args(argv)
    if args.devices > 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.devices}")
    import jax
    import numpy as np

    from cifar_core.recipe import Recipe
    from jax_impl import train
    from jax_impl.model import ResNet

    mesh = train.make_mesh(args.devices)
    conv_kernels = train.resolve_conv_kernels(args.conv, jax.default_backend())
    model = ResNet(args.depth, bn_axis_name=train.DATA_AXIS if args.cross_device_bn else None, conv_kernels=conv_kernels)
    state = train.replicate(mesh, train.create_state(model, Recipe(depth=args.depth, batch_size=args.batch_size)))
    rng = np.random.default_rng(0)
    images = train.global_batch(mesh, rng.standard_normal((args.batch_size, 32, 32, 3), np.float32))
    labels = train.global_batch(mesh, rng.integers(0, 10, args.batch_size).astype(np.int32))
    step = train.compile_train_step(mesh, train.STEP_PROGRAMS[args.jax_step])
    for _ in range(3):
        state, metrics = step(state, images, labels)
        jax.block_until_ready(metrics)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        state, metrics = step(state, images, labels)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    print(f"ResNet-{args.depth}, batch {args.batch_size}, {args.devices} device(s), {conv_kernels} convolutions"
          f"{', cross-device BN' if args.cross_device_bn else ''}: median {np.median(times) * 1e3:.0f} ms/step "
          f"over {args.steps} steps")

    traced = 2
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        for _ in range(traced):
            state, metrics = step(state, images, labels)
            jax.block_until_ready(metrics)
        jax.profiler.stop_trace()
        trace_file = sorted(glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True))[-1]
        events = json.load(gzip.open(trace_file))
    events = events["traceEvents"] if isinstance(events, dict) else events
    kernels = collections.Counter()
    for event in events:
        # XLA:CPU's thunks are the kernels; the executor, Python and runtime spans only enclose them
        if event.get("ph") == "X" and not re.match(r"(ThunkExecutor|\$|Pjit|CommonPjRt|Wait|Rendezvous)",
                                                   event["name"]):
            kernels[event["name"]] += event.get("dur", 0) / 1e3 / traced
    kinds = collections.Counter()
    for name, ms in kernels.items():
        kinds[re.sub(r"\.\d+$", "", name)] += ms
    print(f"\nkernel time by kind (ms per step, summed over devices; {sum(kinds.values()):.0f} in all):")
    for kind, ms in kinds.most_common(12):
        print(f"  {ms:8.1f}  {kind}")
    print("\nlargest kernels (ms per step):")
    for name, ms in kernels.most_common(args.top):
        print(f"  {ms:8.1f}  {name}")


if __name__ == "__main__":
    main()
