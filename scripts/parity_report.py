"""Run the parity checks (parity_tests/) at full size and write results/parity.md and a |Δloss| plot.

    python scripts/parity_report.py                     # ResNet-32, batch 128, 200 steps (about 1 h on 2 CPU cores)
    python scripts/parity_report.py --depth 8 --batch-size 16 --steps 200   # the CI size, minutes

Every row names its tolerance and the worst error measured. float64 rows compare PyTorch and JAX from the
same weights on the same batches; float32 rows compare each backend with the shared float64 result.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import numpy as np  # noqa: E402

from cifar_core import run  # noqa: E402
from cifar_core.recipe import Recipe  # noqa: E402
from parity_tests import harness  # noqa: E402


def bn_statistics_accuracy(tensors, images) -> dict:
    """Relative error of each backend's float64 first-BN output against a long-double reference."""
    import jax
    import jax.numpy as jnp
    import torch
    model = harness.torch_model(tensors).train()
    with torch.no_grad():
        conv = model.conv1(harness.torch_input(images, np.float64))
        torch_out = model.bn1(conv).numpy()
    c = conv.numpy().astype(np.longdouble)
    mean = c.mean((0, 2, 3), keepdims=True)
    var = ((c - mean) ** 2).mean((0, 2, 3), keepdims=True)
    reference = ((c - mean) / np.sqrt(var + 1e-5)).astype(np.float64)
    from jax_impl.model import BatchNorm
    with jax.enable_x64(True):
        x = jnp.asarray(conv.numpy().transpose(0, 2, 3, 1))
        bn = BatchNorm(param_dtype=jnp.float64)
        out, _ = bn.apply(bn.init(jax.random.key(0), x, train=False), x, train=True, mutable=["batch_stats"])
        jax_out = np.asarray(out).transpose(0, 3, 1, 2)
    return {"torch": harness.relative_error(torch_out, reference), "jax": harness.relative_error(jax_out, reference)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    # Free-running comparisons stay meaningful only until lr 0.1's chaos amplifies the float64 noise floor
    # (about step 5 at full size, measured by the free-running row): multi-device runs are compared that long.
    parser.add_argument("--multi-device-steps", type=int, default=4)
    parser.add_argument("--free-steps", type=int, default=15, help="free-running float64 steps, for the record")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    started = time.time()
    git = run.git_info()  # before this script writes into results/
    rows = []

    def row(check, dtype, tolerance, measured, note=""):
        ok = measured <= tolerance
        rows.append((check, dtype, tolerance, measured, ok, note))
        print(f"{'ok  ' if ok else 'FAIL'} {check} [{dtype}]: {measured:.3g} (tolerance {tolerance:.3g}) {note}",
              flush=True)

    recipe = Recipe(depth=args.depth, batch_size=args.batch_size, iterations=args.steps)
    w0 = harness.initial_weights(args.depth, seed=0)
    batches, source = harness.train_batches(recipe, args.steps)
    images, labels = batches[0]

    # 1. shapes
    from parity_tests.test_shapes import PAPER_COUNTS, test_trees_map_one_to_one_with_paper_counts
    for depth in PAPER_COUNTS:
        test_trees_map_one_to_one_with_paper_counts(depth)
    row("1. parameter trees map one to one, paper counts (depths 20-110)", "-", 0, 0)

    # 2. init statistics (the test's own procedure)
    from parity_tests import test_init_stats
    inits = {seed: test_init_stats.samples(seed) for seed in test_init_stats.SEEDS}
    test_init_stats.test_each_layer_follows_documented_distribution(inits)
    test_init_stats.test_constant_initialisations(inits)
    row(f"2. init: KS, mean, std per layer (ResNet-{test_init_stats.DEPTH}, seeds {test_init_stats.SEEDS}), "
        "family-wise α = 1e-3", "-", 0, 0)

    # 3. forward
    for train in (False, True):
        mode = "train" if train else "eval"
        t_logits, t_after = harness.torch_forward(w0, images, train)
        j_logits, j_after = harness.jax_forward(w0, images, train)
        row(f"3. logits, {mode} mode", "float64", 1e-10, harness.relative_error(j_logits, t_logits))
        if train:
            row("3. BN running statistics after a train step (unbiased variance)", "float64", 1e-10,
                harness.max_relative_error(j_after, t_after))
        t32, _ = harness.torch_forward(w0, images, train, np.float32)
        j32, _ = harness.jax_forward(w0, images, train, np.float32)
        t_err, j_err = harness.relative_error(t32, t_logits), harness.relative_error(j32, t_logits)
        row(f"3. logits, {mode} mode: JAX float32 error within 8x PyTorch's ({t_err:.2g})", "float32",
            8 * t_err, j_err)
    # 4. gradients
    t_loss, t_grads = harness.torch_gradients(w0, images, labels)
    j_loss, j_grads = harness.jax_gradients(w0, images, labels)
    row("4. gradients, every parameter", "float64", 1e-10,
        max(harness.relative_error(j_grads[k], t_grads[k]) for k in t_grads))
    bn_acc = bn_statistics_accuracy(w0, images)
    rows.append(("float64 noise floor: first BN output vs long double, PyTorch / JAX", "float64", None,
                 f"{bn_acc['torch']:.2g} / {bn_acc['jax']:.2g}", None,
                 "Where the backends' float64 trajectories first part"))

    # 5. per-step losses: every step of the schedule compared on its own (lockstep), then free-running
    lock = harness.lockstep_train(w0, batches, recipe, float32_losses=True)
    t_losses = lock["torch_losses"]  # PyTorch's own float64 trajectory: JAX only ever reads its state
    gap64 = np.abs(np.subtract(lock["jax_losses"], t_losses)) / np.abs(t_losses)
    row(f"5. per-step loss, {args.steps} steps in lockstep (before each step JAX takes PyTorch's weights, "
        f"BN statistics and momentum), lr drops at {recipe.milestones}", "float64", 1e-9, gap64.max())
    row("5. weights and BN running statistics after each step (lockstep), worst step", "float64", 1e-10,
        max(lock["weights_error"]))
    row("5. momentum buffers after each step (lockstep), worst step", "float64", 1e-10, max(lock["momentum_error"]))
    row(f"5. weights after step {args.steps} (lockstep)", "float64", 1e-10,
        harness.max_relative_error(lock["jax_final"], lock["torch_final"]))
    free = args.free_steps
    j_free, _ = harness.jax_train_losses(w0, batches[:free], recipe)
    import torch
    threads = torch.get_num_threads()
    other_threads = 1 if threads > 1 else 2
    torch.set_num_threads(other_threads)
    t_other, _ = harness.torch_train_losses(w0, batches[:free], recipe)
    torch.set_num_threads(threads)
    free_gap = np.abs(np.subtract(j_free, t_losses[:free])) / np.abs(t_losses[:free])
    self_gap = np.abs(np.subtract(t_other, t_losses[:free])) / np.abs(t_losses[:free])
    marks = sorted({1, 5, 10, free} & set(range(1, free + 1)))
    rows.append((f"free-running float64 loss gap, JAX vs PyTorch; PyTorch with {threads} vs "
                 f"{other_threads} threads (at steps {marks})", "float64", None,
                 " / ".join(f"{free_gap[k - 1]:.0e}" for k in marks) + "; "
                 + " / ".join(f"{self_gap[k - 1]:.0e}" for k in marks), None,
                 "How lr 0.1 amplifies the float64 noise floor; every step in the table below"))
    # float32: every step's loss from the lockstep state rounded to float32, against the float64 loss
    t_dev = np.abs(np.subtract(lock["torch32_losses"], t_losses)) / np.abs(t_losses)
    j_dev = np.abs(np.subtract(lock["jax32_losses"], t_losses)) / np.abs(t_losses)
    from parity_tests.test_function import FLOAT32_FACTOR
    row(f"5. per-step loss in float32 at each of the {args.steps} lockstep states: JAX's worst error within "
        f"{FLOAT32_FACTOR}x PyTorch's ({t_dev.max():.2g})", "float32", FLOAT32_FACTOR * t_dev.max(), j_dev.max(),
        "float32 trajectories, free-running, leave float64 at once at this size (kinks, chaos): not compared")

    # 6. multi-device
    steps = args.multi_device_steps
    multi = Recipe(depth=args.depth, batch_size=args.batch_size, iterations=steps)
    mb = batches[:steps]
    one = harness.jax_train_losses(w0, mb, multi, num_devices=1)
    four = harness.jax_train_losses(w0, mb, multi, num_devices=4, cross_device_bn=True)
    ddp_sync = harness.torch_ddp_train_losses(w0, mb, multi, world=2, sync_bn=True)
    ddp = harness.torch_ddp_train_losses(w0, mb, multi, world=2, sync_bn=False)
    two = harness.jax_train_losses(w0, mb, multi, num_devices=2)
    for name, a, b in (("JAX 4 devices cross-device BN vs JAX 1 device", four, one),
                       ("PyTorch DDP 2 ranks SyncBN vs JAX 4 devices cross-device BN", ddp_sync, four),
                       ("per-device BN: JAX 2 devices vs PyTorch DDP 2 ranks", two, ddp)):
        row(f"6. {name}, {steps} steps: losses", "float64", 1e-10, harness.relative_error(a[0], b[0]))
        row(f"6. {name}, {steps} steps: weights", "float64", 1e-10, harness.max_relative_error(a[1], b[1]))

    # 7. evaluation of committed runs
    data_dir = harness.real_data_dir()
    for path in sorted((ROOT / "results" / "runs").glob("*/checkpoints/final.safetensors")):
        if data_dir is None:
            break
        logits, _ = harness.test_set_logits(path, data_dir)
        mismatches = int(np.sum(logits["torch_impl"].argmax(1) != logits["jax_impl"].argmax(1)))
        row(f"7. test-set predictions of {path.parent.parent.name} (10,000 images): mismatches", "float32", 0,
            mismatches)

    write_report(args, rows, source, gap64, free_gap, self_gap, t_dev, j_dev, time.time() - started, git)


def write_report(args, rows, source, gap64, free_gap, self_gap, t_dev, j_dev, seconds, git):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import jax
    import torch
    args.out.mkdir(parents=True, exist_ok=True)
    figure = args.out / "parity_loss_gap.png"
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(gap64) + 1)
    ax.semilogy(steps, np.maximum(gap64, 1e-18), label="float64 lockstep: |PyTorch - JAX| / loss")
    free = np.arange(1, len(free_gap) + 1)
    ax.semilogy(free, np.maximum(free_gap, 1e-18), "k.-", label="float64 free-running: |PyTorch - JAX| / loss")
    ax.semilogy(free, np.maximum(self_gap, 1e-18), "kx:", label="float64 free-running: PyTorch, other thread count")
    ax.semilogy(steps, np.maximum(t_dev, 1e-18), label="float32 lockstep: |PyTorch32 - float64| / loss", alpha=0.8)
    ax.semilogy(steps, np.maximum(j_dev, 1e-18), label="float32 lockstep: |JAX32 - float64| / loss", alpha=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("relative loss difference")
    ax.set_title(f"ResNet-{args.depth}, batch {args.batch_size}, {source}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    lines = [
        "# Parity report", "",
        f"Written by `python scripts/parity_report.py --depth {args.depth} --batch-size {args.batch_size} "
        f"--steps {args.steps} --multi-device-steps {args.multi_device_steps} --free-steps {args.free_steps}` on "
        f"{datetime.date.today().isoformat()}, git {git['commit']}{' (dirty)' if git['dirty'] else ''}, "
        f"{run.cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, jax {jax.__version__}; "
        f"data: {source}; {seconds / 60:.1f} minutes.", "",
        "Both backends start from the same weights (PyTorch's initialisation, moved through the neutral format) "
        "and read the same batches of the core's plan. Relative errors are max |a - b| / max |b| per tensor, "
        "worst tensor.", "",
        "Per-step losses are checked in lockstep: before every step JAX is handed PyTorch's whole state (weights, "
        "BN running statistics, momentum buffers, step count), both take the step, and the loss and the new state "
        "are compared, so every step of the schedule (both lr drops, momentum, weight decay) is held to float64 "
        "precision on its own. Free-running float64 trajectories cannot be held to 1e-9 over 200 steps at this "
        "size: early training at lr 0.1 is chaotic and amplifies the float64 noise floor step after step; the "
        "free-running measurement below shows that growth for PyTorch against JAX and for PyTorch against itself "
        "with another thread count (summation order alone). The CI-size tests "
        "(parity_tests/test_training.py) check free-running trajectories too, where the chaos is milder.", "",
        "## Checks", "",
        "| check | dtype | tolerance | measured | |", "|---|---|---|---|---|"]
    for check, dtype, tol, measured, ok, note in rows:
        if tol is not None:
            lines.append(f"| {check} | {dtype} | {tol:.3g} | {measured:.3g} | {'ok' if ok else '**FAIL**'}"
                         f"{' — ' + note if note else ''} |")
    lines += ["", "## Measured, not checks", ""]
    lines += [f"- {check} ({dtype}): {measured}. {note}." for check, dtype, tol, measured, ok, note in rows
              if tol is None]
    lines += ["", "Free-running float64 loss gaps, |a - b| / |b| per step:", "",
              "| step | JAX vs PyTorch | PyTorch vs PyTorch, other thread count |", "|---:|---:|---:|"]
    lines += [f"| {k + 1} | {a:.1e} | {b:.1e} |" for k, (a, b) in enumerate(zip(free_gap, self_gap))]
    lines += ["", f"![|Δloss| per step]({figure.name})", ""]
    (args.out / "parity.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'parity.md'} and {figure}")


if __name__ == "__main__":
    main()
