"""Resumable checkpoints and the neutral weights format, JAX side. Mirror: torch_impl/checkpoint.py.

A checkpoint is one msgpack file (flax.serialization) holding params, batch_stats, optimizer state, step,
plan position and bookkeeping; written to a temporary file and renamed, so it is as atomic as Orbax's
commit-by-rename while staying a single small file. The data plan is a pure function of (seed, step).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from flax import serialization, traverse_util

from cifar_core import weights
from cifar_core.files import replace_atomically

CHECKPOINT_NAME = "last.msgpack"


def _to_host(tree):
    return jax.tree.map(np.asarray, tree)


def save(path, state, step: int, plan_position: dict, tracker_state: dict, recipe: dict) -> None:
    path = Path(path)
    payload = {"state": serialization.to_state_dict(_to_host(state)), "step": step, "plan": plan_position,
               "tracker": {k: v for k, v in tracker_state.items() if v is not None}, "recipe": recipe}
    with replace_atomically(path) as tmp:
        tmp.write_bytes(serialization.msgpack_serialize(payload))


def _restore(path) -> dict:
    """A msgpack file's contents (msgpack carries data only: nothing in it can run); WeightsError if unreadable."""
    try:
        payload = serialization.msgpack_restore(Path(path).read_bytes())
    except FileNotFoundError:
        raise
    except Exception as error:  # msgpack raises ExtraData, ValueError, ... by what is wrong
        raise weights.WeightsError(f"{path}: not a readable JAX checkpoint ({weights.first_line(error)}).") from None
    if not isinstance(payload, dict):
        raise weights.WeightsError(f"{path}: holds a {type(payload).__name__}, not a JAX checkpoint.")
    return payload


def load(path, state):
    """Return (state restored into the structure of `state`, the checkpoint's payload)."""
    payload = _restore(path)
    target = _to_host(state)
    try:
        # from_state_dict takes the target's keys and ignores the rest: a deeper network's checkpoint would load.
        expected = set(traverse_util.flatten_dict(serialization.to_state_dict(target)))
        found = set(traverse_util.flatten_dict(payload["state"]))
        if expected != found:
            extra, missing = sorted(found - expected), sorted(expected - found)
            raise ValueError(f"{len(extra)} arrays the run's network lacks ({'/'.join(extra[0]) if extra else '-'}, "
                             f"...), {len(missing)} missing ({'/'.join(missing[0]) if missing else '-'}, ...)")
        restored = serialization.from_state_dict(target, payload["state"])
        tracker = {k: payload["tracker"].get(k) for k in ("best_val_error", "best_val_step", "best_val_test_error",
                                                           "train_time", "wall_time", "checkpoint_step",
                                                           "warmup_ended_at")}
        # from_state_dict does not compare shapes either.
        jax.tree.map(lambda a, b: _same_shape(np.shape(a), np.shape(b)), target, restored)
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise weights.WeightsError(f"{path}: not a checkpoint of this run's network "
                                   f"({weights.first_line(error)}).") from None
    return restored, {**payload, "tracker": tracker}


def _same_shape(expected: tuple, found: tuple) -> None:
    if expected != found:
        raise ValueError(f"an array of shape {found} where the run's network has {expected}")


# ----------------------------------------------------------------------------------- neutral weights
# Flax path -> neutral name: "layer1_0/conv1/kernel" -> "layer1.0.conv1.weight". Layouts: conv HWIO -> OIHW,
# dense (in, out) -> (out, in); BN scale/bias -> weight/bias, mean/var -> running_mean/running_var.

_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
_FROM_LEAF = {("params", "kernel"): "kernel", ("params", "weight"): "scale", ("params", "bias"): "bias",
              ("batch_stats", "running_mean"): "mean", ("batch_stats", "running_var"): "var"}


def _neutral_name(path: tuple) -> str:
    *modules, leaf = path
    modules = [m.replace("_", ".") if m.startswith("layer") else m for m in modules]
    return ".".join(modules + [_LEAF[leaf]])


def _to_neutral_layout(path: tuple, array: np.ndarray) -> np.ndarray:
    if path[-1] == "kernel":
        return array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
    return array


def to_neutral(variables: dict) -> dict:
    """{"params", "batch_stats"} -> neutral name -> NumPy array."""
    tensors = {}
    for collection in ("params", "batch_stats"):
        for path, array in traverse_util.flatten_dict(variables[collection]).items():
            tensors[_neutral_name(path)] = np.ascontiguousarray(_to_neutral_layout(path, np.asarray(array)))
    return tensors


def from_neutral(tensors: dict, dtype=None) -> dict:
    """Neutral tensors -> {"params", "batch_stats"} (NumPy leaves, optionally cast to `dtype`)."""
    weights.check(tensors, weights.depth_of(tensors))
    variables = {"params": {}, "batch_stats": {}}
    for name, array in tensors.items():
        *modules, leaf = name.split(".")
        if modules[0].startswith("layer"):
            modules = [f"{modules[0]}_{modules[1]}", *modules[2:]]
        collection = "batch_stats" if weights.is_buffer(name) else "params"
        flax_leaf = "kernel" if leaf == "weight" and (modules[-1].startswith("conv") or modules[-1] == "fc") \
            else _FROM_LEAF[(collection, leaf)]
        array = np.asarray(array)
        if flax_leaf == "kernel":
            array = array.transpose(2, 3, 1, 0) if array.ndim == 4 else array.T
        if dtype is not None:
            array = array.astype(dtype)
        variables[collection][tuple(modules) + (flax_leaf,)] = np.ascontiguousarray(array)
    return {k: traverse_util.unflatten_dict(v) for k, v in variables.items()}


def export_neutral(path, variables: dict, depth: int, metadata: dict | None = None, mean_image=None) -> None:
    weights.save(path, to_neutral(_to_host(variables)), depth, metadata, mean_image)


def read_neutral(path) -> tuple[dict, dict]:
    """(neutral tensors, metadata) of a JAX training checkpoint or bare Flax variables; for interop.weights."""
    payload = _restore(path)
    state = payload.get("state", payload)  # a training checkpoint, or bare {"params", "batch_stats"}
    try:
        tensors = to_neutral({"params": state["params"], "batch_stats": state["batch_stats"]})
    except (KeyError, TypeError, AttributeError) as error:
        raise weights.WeightsError(f"{path}: a msgpack file, but not this project's JAX checkpoint or Flax "
                                   f"variables ({weights.first_line(error)}).") from None
    return tensors, {"recipe": payload.get("recipe")}
