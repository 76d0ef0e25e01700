"""Tiny end-to-end runs of both trainers, shared by the tests that drive them through their command lines.

The synthetic archive (`write_data`; the `data_dir` fixture in conftest.py) has 180 train, 20 val and 40 test
images: enough for a depth-8 net at batch 16 to take a few steps and evaluate, in seconds.
"""

from __future__ import annotations

from pathlib import Path

from cifar_core import synthetic
from cifar_core.run import read_metrics

import jax_impl.evaluate
import jax_impl.train
import torch_impl.evaluate
import torch_impl.train

TRAINERS = {"torch_impl": torch_impl.train, "jax_impl": jax_impl.train}
EVALUATES = {"torch_impl": torch_impl.evaluate, "jax_impl": jax_impl.evaluate}
TINY = ["--depth", "8", "--batch-size", "16", "--log-every", "1", "--no-progress"]


def write_data(root, seed: int = 0) -> str:
    """A synthetic CIFAR-10 archive in `root` (created); returns it as the --data-dir string."""
    synthetic.write_archive(Path(root), train_per_batch=40, test_size=40, seed=seed)
    return str(root)


def train(backend, data_dir, run_dir, *flags):
    """Run the backend's trainer with the TINY flags on `data_dir` into `run_dir`; returns what main returns."""
    return TRAINERS[backend].main([*TINY, "--data-dir", str(data_dir), "--run-dir", str(run_dir), *flags])


def losses(run_dir) -> list[float]:
    """Every logged training loss of a run, in step order."""
    return [r["loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r["kind"] == "train"]


def wrap_steps(backend, monkeypatch, change):
    """Route every training step through change(call_index, outputs) -> outputs."""
    calls = []
    if backend == "torch_impl":
        original = torch_impl.train.train_step

        def step(*args, **kwargs):
            calls.append(None)
            return change(len(calls), original(*args, **kwargs))
        monkeypatch.setattr(torch_impl.train, "train_step", step)
    else:
        original = jax_impl.train.compile_train_step

        def compile_step(mesh):
            compiled = original(mesh)

            def step(*args):
                calls.append(None)
                return change(len(calls), compiled(*args))
            return step
        monkeypatch.setattr(jax_impl.train, "compile_train_step", compile_step)
