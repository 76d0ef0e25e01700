"""Drive both backends from the same weights and the same batches; used by the parity tests and by
scripts/parity_report.py (which runs the same checks at full size).

Everything starts from one set of neutral weights (PyTorch's initialisation), so any difference between the
backends is a difference in the function they compute or in the optimiser, never in the starting point.
"""

from __future__ import annotations

import functools
import os
import socket
import tempfile
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from cifar_core import data, evaluation, pipeline, weights
from cifar_core.loop import WarmUp
from cifar_core.recipe import Recipe
from cifar_core.synthetic import make_dataset
from cifar_core.weights import depth_of
from jax_impl import checkpoint as jax_ckpt
from jax_impl import platforms as jax_platforms
from jax_impl import train as jax_train
from jax_impl.model import ResNet
from torch_impl import checkpoint as torch_ckpt
from torch_impl import train as torch_train
from torch_impl.model import resnet

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
TORCH_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def max_relative_error(tensors_a: dict, tensors_b: dict) -> float:
    """Worst per-tensor relative error over two neutral weight dicts with the same names."""
    assert set(tensors_a) == set(tensors_b)
    return max(relative_error(tensors_a[k], tensors_b[k]) for k in tensors_a)


def assert_close(actual, expected, tol: float, what: str = "") -> None:
    """relative_error(actual, expected) <= tol, for an array or for each tensor of two neutral weight dicts with
    the same names, checked by chex leaf by leaf as |actual - expected| <= tol * max|expected|: a failure names
    the tensor and shows its worst elements, where max_relative_error would only say how far off the worst was."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected), f"different names: {sorted(set(actual) ^ set(expected))}"
        for name in sorted(expected):
            assert_close(actual[name], expected[name], tol, f"{what} {name}".strip())
        return
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(float(np.max(np.abs(expected))), 1e-300)
    chex.assert_trees_all_close(actual, expected, rtol=0.0, atol=tol * scale,
                                custom_message=f"{what or 'values'}: tolerance {tol:g} of max |expected| {scale:.3g}")


def initial_weights(depth: int, seed: int = 0) -> dict:
    return torch_ckpt.to_neutral(resnet(depth, seed=seed))


# --------------------------------------------------------------------------------------------- data


def real_data_dir() -> str | None:
    path = os.environ.get("CIFAR10_DIR")
    if path and data._source_in(Path(path)) is not None:
        return path
    return None


def train_stream(recipe: Recipe, dataset=None):
    """(the core's TrainStream, its source): real CIFAR-10 when available, else a synthetic stand-in."""
    source = "synthetic"
    if dataset is None and real_data_dir():
        dataset, source = data.load(real_data_dir()), "CIFAR-10"
    return pipeline.build(recipe, dataset=dataset if dataset is not None else make_dataset(2000, 200)).train, source


def train_batches(recipe: Recipe, steps: int, dataset=None) -> tuple[list, str]:
    """The core's planned batches for `steps` steps, materialised in NumPy (see train_stream)."""
    stream, source = train_stream(recipe, dataset)
    return [stream.batch(step) for step in range(steps)], source


# --------------------------------------------------------------------------------------------- torch


def torch_model(tensors: dict, dtype=np.float64, **options) -> torch.nn.Module:
    """`options`: the ResNet's keyword options (Recipe.model_options)."""
    model = resnet(depth_of(tensors), **options).to(TORCH_DTYPE[dtype])
    return torch_ckpt.from_neutral(model, tensors)


def torch_input(images: np.ndarray, dtype) -> torch.Tensor:
    return torch_train.to_device(images, torch.device("cpu"), False, TORCH_DTYPE[dtype])


def torch_forward(tensors, images, train: bool, dtype=np.float64, amp: bool = False):
    """Logits, and the neutral weights after the forward (train mode updates BN running statistics). `amp`:
    under bf16 autocast, as torch_impl.train --amp bf16 (float32 `dtype` only), the logits cast to float32."""
    model = torch_model(tensors, dtype).train(train)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=amp):
        logits = model(torch_input(images, dtype))
    return logits.to(TORCH_DTYPE[dtype]).numpy(), torch_ckpt.to_neutral(model)


def torch_gradients(tensors, images, labels, dtype=np.float64) -> tuple[float, dict]:
    model = torch_model(tensors, dtype).train()
    loss = torch.nn.functional.cross_entropy(model(torch_input(images, dtype)), torch.from_numpy(labels).long())
    loss.backward()
    return loss.item(), {name: p.grad.numpy() for name, p in model.named_parameters()}


def torch_train_losses(tensors, batches, recipe: Recipe, dtype=np.float64) -> tuple[list, dict]:
    model = torch_model(tensors, dtype, **recipe.model_options()).train()
    optimizer = torch_train.make_optimizer(model, recipe)
    losses = []
    for step, (images, labels) in enumerate(batches):
        loss_sum, _ = torch_train.train_step(model, optimizer, torch_input(images, dtype),
                                             torch.from_numpy(labels).long(), recipe.lr_at(step))
        losses.append(loss_sum.item() / len(labels))
    return losses, torch_ckpt.to_neutral(model)


# --------------------------------------------------------------------------------------------- jax


def _x64(dtype):
    return jax.enable_x64(dtype == np.float64)


def jax_forward(tensors, images, train: bool, dtype=np.float64, amp: bool = False):
    """As torch_forward; `amp`: the model computing in bfloat16, as jax_impl.train --amp bf16."""
    with _x64(dtype):
        variables = jax_ckpt.from_neutral(tensors, dtype)
        model = ResNet(depth_of(tensors), dtype=jnp.bfloat16 if amp else dtype, param_dtype=dtype)
        if train:
            logits, updates = model.apply(variables, images.astype(dtype), train=True, mutable=["batch_stats"])
            variables = {**variables, "batch_stats": updates["batch_stats"]}
        else:
            logits = model.apply(variables, images.astype(dtype), train=False)
        return np.asarray(logits, dtype), jax_ckpt.to_neutral(jax.device_get(variables))


def jax_gradients(tensors, images, labels, dtype=np.float64) -> tuple[float, dict]:
    import optax
    with _x64(dtype):
        variables = jax_ckpt.from_neutral(tensors, dtype)
        model = ResNet(depth_of(tensors), dtype=dtype, param_dtype=dtype)

        def loss_fn(params):
            logits, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                    images.astype(dtype), train=True, mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(variables["params"])
        grads = jax_ckpt.to_neutral({"params": jax.device_get(grads), "batch_stats": {}})
        return float(loss), grads


def jax_replicated_state(tensors, recipe: Recipe, dtype, mesh, cross_device_bn: bool):
    """A fresh JAX TrainState from neutral weights, replicated over `mesh` (call inside _x64(dtype))."""
    model = ResNet(depth_of(tensors), dtype=dtype, param_dtype=dtype,
                   bn_axis_name=jax_train.DATA_AXIS if cross_device_bn else None, **recipe.model_options())
    variables = jax_ckpt.from_neutral(tensors, dtype)
    return jax_train.replicate(mesh, jax_train.TrainState.create(
        apply_fn=model.apply, params=variables["params"], batch_stats=variables["batch_stats"],
        tx=jax_train.make_optimizer(recipe)))


def jax_neutral(state) -> dict:
    return jax_ckpt.to_neutral(jax.device_get({"params": state.params, "batch_stats": state.batch_stats}))


def jax_train_losses(tensors, batches, recipe: Recipe, dtype=np.float64, num_devices: int = 1,
                     cross_device_bn: bool = False, split: bool | None = None) -> tuple[list, dict]:
    with _x64(dtype):
        mesh = jax_train.make_mesh(num_devices)
        state = jax_replicated_state(tensors, recipe, dtype, mesh, cross_device_bn)
        step_fn = jax_train.compile_train_step(mesh, split)
        losses = []
        for images, labels in batches:
            state, metrics = step_fn(state, jax_train.global_batch(mesh, images.astype(dtype)),
                                     jax_train.global_batch(mesh, labels))
            losses.append(float(metrics["loss_sum"]) / len(labels))
        return losses, jax_neutral(state)


def jax_scanned_train(tensors, stream, recipe: Recipe, steps: int, steps_per_call: int, dtype=np.float64,
                      num_devices: int = 1, cross_device_bn: bool = False) -> tuple[list, dict]:
    """jax_impl.train.train_steps: `steps` steps, `steps_per_call` per jitted lax.scan, from the train split
    on the devices (DeviceStream). Returns each call's summed loss and the final weights."""
    with _x64(dtype):
        mesh = jax_train.make_mesh(num_devices)
        state = jax_replicated_state(tensors, recipe, dtype, mesh, cross_device_bn)
        device_stream = jax_train.DeviceStream(stream, mesh)
        steps_fn = jax_train.compile_train_steps(mesh)
        loss_sums = []
        for start in range(0, steps, steps_per_call):
            state, metrics = steps_fn(state, device_stream.images, device_stream.labels,
                                      *device_stream.plans(start, min(steps_per_call, steps - start)))
            loss_sums.append(float(metrics["loss_sum"]))
        return loss_sums, jax_neutral(state)


# --------------------------------------------------------------------------------------------- lr warm-up


def warmup_train(recipe: Recipe, steps: int, steps_per_call: int, take_steps) -> dict:
    """The trainers' loop around the lr warm-up (cifar_core.loop.WarmUp), for either backend: calls of up to
    `steps_per_call` steps ending at every record (every log_every steps), each `take_steps(step, count, warmup)`
    -> (summed loss, correct predictions); after each record, the running train error decides the warm-up, as
    Tracker.log_train does. Returns each step's lr, the records (step, summed loss, train error) and the step
    the warm-up ended at."""
    warmup, out = WarmUp(recipe), {"lrs": [], "records": []}
    step, loss_sum, correct, since = 0, 0.0, 0, 0
    while step < steps:
        count = min(steps_per_call, steps - step, recipe.log_every - step % recipe.log_every)
        out["lrs"] += [warmup.lr_at(s) for s in range(step, step + count)]
        loss, right = take_steps(step, count, warmup)
        loss_sum, correct, since, step = loss_sum + loss, correct + right, since + count, step + count
        if step % recipe.log_every == 0 or step == steps:
            train_error = 1.0 - correct / (recipe.batch_size * since)
            out["records"].append((step, loss_sum, train_error))
            warmup.record(step, train_error)
            loss_sum, correct, since = 0.0, 0, 0
    out["ended_at"] = warmup.ended_at
    return out


def torch_warmup_train(tensors, stream, recipe: Recipe, steps: int, dtype=np.float64) -> dict:
    """warmup_train with torch_impl's step, its lr from the warm-up step by step (as torch_impl.train); the
    final weights under "final"."""
    model = torch_model(tensors, dtype, **recipe.model_options()).train()
    optimizer = torch_train.make_optimizer(model, recipe)

    def take_steps(step, count, warmup):
        loss_sum, correct = 0.0, 0
        for s in range(step, step + count):
            images, labels = stream.batch(s)
            loss, right = torch_train.train_step(model, optimizer, torch_input(images, dtype),
                                                 torch.from_numpy(labels).long(), warmup.lr_at(s))
            loss_sum, correct = loss_sum + loss.item(), correct + int(right)
        return loss_sum, correct
    out = warmup_train(recipe, steps, 1, take_steps)
    return {**out, "final": torch_ckpt.to_neutral(model)}


def jax_warmup_train(tensors, stream, recipe: Recipe, steps: int, steps_per_call: int = 1,
                     dtype=np.float64) -> dict:
    """warmup_train with jax_impl's step, the optimizer swapped where the warm-up ends (as jax_impl.train),
    from the train split on the device (DeviceStream), several steps per call (train_steps) when
    `steps_per_call` > 1; the final weights under "final"."""
    with _x64(dtype):
        mesh = jax_train.make_mesh(1)
        state = jax_replicated_state(tensors, recipe, dtype, mesh, False)
        device_stream = jax_train.DeviceStream(stream, mesh)
        step_fn, steps_fn = jax_train.compile_train_step(mesh), jax_train.compile_train_steps(mesh)

        def take_steps(step, count, warmup):
            nonlocal state
            state = state.replace(tx=jax_train.make_optimizer(recipe, warmup.on(step)))
            if count > 1:
                state, metrics = steps_fn(state, device_stream.images, device_stream.labels,
                                          *device_stream.plans(step, count))
            else:
                images, labels = device_stream.batch(step)
                state, metrics = step_fn(state, images.astype(dtype), labels)
            return float(metrics["loss_sum"]), int(metrics["correct"])
        out = warmup_train(recipe, steps, steps_per_call, take_steps)
        return {**out, "final": jax_neutral(state)}


def torch_momentum(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """SGD's momentum buffers by neutral parameter name (zeros before the first step)."""
    return {name: optimizer.state[p]["momentum_buffer"].detach().numpy().copy()
            if "momentum_buffer" in optimizer.state[p] else np.zeros(tuple(p.shape), TORCH_NUMPY[p.dtype])
            for name, p in model.named_parameters()}


def lockstep_train(tensors, batches, recipe: Recipe, dtype=np.float64, float32_losses: bool = False) -> dict:
    """Train PyTorch for len(batches) steps and, before every step, hand its whole state (weights, BN running
    statistics, momentum buffers, step count) to JAX, which takes the same step from it.

    Each step is compared on its own, so one step's rounding is never amplified by the next: at lr 0.1 early
    training is chaotic and a free-running float64 trajectory, even PyTorch's against itself with another
    thread count, leaves 1e-9 within about ten steps at full size (measured in scripts/parity_report.py).
    Returns per-step losses of both backends, per-step worst relative errors of the state after the step
    (weights with running statistics, and momentum), and both final states. With `float32_losses`, also each
    backend's float32 loss at every step's starting state (the float64 state rounded to float32: a forward
    pass, so a ReLU kink crossed by rounding moves it continuously, unlike a float32 trajectory).
    """
    import optax
    model = torch_model(tensors, dtype).train()
    optimizer = torch_train.make_optimizer(model, recipe)
    out = {"torch_losses": [], "jax_losses": [], "weights_error": [], "momentum_error": [],
           "torch32_losses": [], "jax32_losses": []}
    jax32_loss = jax.jit(lambda variables, images, labels: _cross_entropy(ResNet(depth_of(tensors)).apply(
        variables, images, train=True, mutable=["batch_stats"])[0], labels))
    with _x64(dtype):
        mesh = jax_train.make_mesh(1)
        jax_model = ResNet(depth_of(tensors), dtype=dtype, param_dtype=dtype)
        template = jax_train.TrainState.create(apply_fn=jax_model.apply, **jax_ckpt.from_neutral(tensors, dtype),
                                               tx=jax_train.make_optimizer(recipe))
        step_fn = jax_train.compile_train_step(mesh)
        start, momentum = torch_ckpt.to_neutral(model), torch_momentum(model, optimizer)
        for step, (images, labels) in enumerate(batches):
            if float32_losses:
                with torch.no_grad():
                    logits = torch_model(start, np.float32).train()(torch_input(images, np.float32))
                    out["torch32_losses"].append(float(F.cross_entropy(logits, torch.from_numpy(labels).long())))
                out["jax32_losses"].append(float(jax32_loss(jax_ckpt.from_neutral(start, np.float32),
                                                            images.astype(np.float32), labels)))
            variables = jax_ckpt.from_neutral(start, dtype)
            trace = jax_ckpt.from_neutral({**start, **momentum}, dtype)["params"]
            state = template.replace(step=step, **variables, opt_state=optax.tree_utils.tree_set(
                template.opt_state, trace=trace, count=np.asarray(step, np.int32)))
            state, metrics = step_fn(jax_train.replicate(mesh, state),
                                     jax_train.global_batch(mesh, images.astype(dtype)),
                                     jax_train.global_batch(mesh, labels))
            loss_sum, _ = torch_train.train_step(model, optimizer, torch_input(images, dtype),
                                                 torch.from_numpy(labels).long(), recipe.lr_at(step))
            out["torch_losses"].append(loss_sum.item() / len(labels))
            out["jax_losses"].append(float(metrics["loss_sum"]) / len(labels))
            jax_state = jax.device_get(state)
            jax_after = jax_ckpt.to_neutral({"params": jax_state.params, "batch_stats": jax_state.batch_stats})
            jax_momentum = jax_ckpt.to_neutral({"params": optax.tree_utils.tree_get(jax_state.opt_state, "trace"),
                                                "batch_stats": {}})
            start, momentum = torch_ckpt.to_neutral(model), torch_momentum(model, optimizer)  # the next step's
            out["weights_error"].append(max_relative_error(jax_after, start))
            out["momentum_error"].append(max_relative_error(jax_momentum, momentum))
    out["torch_final"], out["jax_final"] = start, jax_after
    return out


def _cross_entropy(logits, labels):
    import optax
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


# --------------------------------------------------------------------------------------------- evaluation


def test_set_logits(path, data_dir, limit: int | None = None, backends=None) -> tuple[dict, np.ndarray]:
    """({backend: float32 logits}, labels) of a neutral weights file on the test set (its first `limit` images, or
    all), in each of `backends` (default: both)."""
    tensors, depth = weights.load(path)
    images, labels = evaluation.test_set(evaluation.recipe_of(weights.metadata(path)), data_dir)
    images, labels = images[:limit], np.asarray(labels[:limit])
    predictors = {backend: PREDICTORS[backend](tensors, depth) for backend in backends or PREDICTORS}
    logits = {backend: [] for backend in predictors}
    for start in range(0, len(images), 1000):
        for backend, predict in predictors.items():
            logits[backend].append(predict(images[start:start + 1000]))
    return {backend: np.concatenate(parts) for backend, parts in logits.items()}, labels


def torch_predictor(tensors: dict, depth: int):
    model = torch_model(tensors, np.float32).eval()

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch_input(images, np.float32)).numpy()
    return predict


def jax_predictor(tensors: dict, depth: int):
    variables, apply = jax_ckpt.from_neutral(tensors), jax_predict(depth)
    return lambda images: np.asarray(apply(variables, images))


@functools.lru_cache(maxsize=None)
def jax_predict(depth: int):
    """The evaluation jax_impl.evaluate runs (oneDNN's convolutions on CPU), compiled as jax_impl.train compiles it
    (compile_predict), XLA options included; one per depth, so runs of one depth share its compilation."""
    model = ResNet(depth, conv_kernels=jax_platforms.resolve_conv_kernels("auto", jax.default_backend()))
    return jax.jit(lambda variables, images: model.apply(variables, images, train=False),
                   compiler_options=jax_platforms.compiler_options(jax.default_backend()))


PREDICTORS = {"torch_impl": torch_predictor, "jax_impl": jax_predictor}  # backend -> (tensors, depth) -> predict


# --------------------------------------------------------------------------------------------- torch DDP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torch_ddp_train_losses(tensors, batches, recipe: Recipe, world: int, sync_bn: bool,
                           dtype=np.float64) -> tuple[list, dict]:
    """Train with `world` gloo processes (torch.multiprocessing, CPU), each on its slice of every batch."""
    import torch.multiprocessing as mp
    from . import ddp_worker
    with tempfile.TemporaryDirectory() as tmp:
        inputs, output = Path(tmp) / "inputs.npz", Path(tmp) / "output.npz"
        np.savez(inputs, images=np.stack([b[0] for b in batches]), labels=np.stack([b[1] for b in batches]),
                 **{f"w/{k}": v for k, v in tensors.items()})
        mp.spawn(ddp_worker.worker, nprocs=world, join=True,
                 args=(world, free_port(), str(inputs), str(output), recipe.to_dict(), sync_bn,
                       np.dtype(dtype).name))
        result = np.load(output)
        return result["losses"].tolist(), {k[2:]: result[k] for k in result.files if k.startswith("w/")}
