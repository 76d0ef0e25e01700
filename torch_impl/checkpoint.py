"""Resumable checkpoints and the neutral weights format, PyTorch side. Mirror: jax_impl/checkpoint.py.

A checkpoint holds model and optimizer state, the step, the plan position and the RNG state; the data
plan is a pure function of (seed, step), so the step is all the stream needs. Written to a temporary file and
renamed, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from cifar_core import weights
from cifar_core.files import replace_atomically
from cifar_core.evaluation import recipe_of

from .model import resnet

CHECKPOINT_NAME = "last.pt"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model  # DistributedDataParallel


def save(path, model, optimizer, step: int, plan_position: dict, tracker_state: dict, recipe: dict) -> None:
    path = Path(path)
    state = {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "step": step, "recipe": recipe,
             "plan": plan_position, "tracker": tracker_state, "torch_rng": torch.get_rng_state()}
    with replace_atomically(path) as tmp:
        torch.save(state, tmp)


def read(path) -> dict:
    """A torch checkpoint's contents, unpickled with weights_only=True: tensors and plain containers only, so
    a crafted file cannot run code. Anything else is a WeightsError naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError:  # weights_only refused an object (its message suggests loading unsafely)
        raise weights.WeightsError(f"{path}: not a PyTorch checkpoint that can be read safely: it holds Python "
                                   "objects besides tensors and plain data, and loading them could run code; give a "
                                   "last.pt written by torch_impl.train or a .safetensors file.") from None
    except Exception as error:  # RuntimeError, EOFError, ... by what is wrong
        reason = weights.first_line(error)
        raise weights.WeightsError(f"{path}: not a PyTorch checkpoint that can be read safely ({reason}); "
                                   "give a last.pt written by torch_impl.train or a .safetensors file.") from None
    if not isinstance(state, dict):
        raise weights.WeightsError(f"{path}: holds a {type(state).__name__}, not a checkpoint or state_dict.")
    return state


def load(path, model, optimizer=None) -> dict:
    """Restore model (and optimizer) in place; return the checkpoint's step, plan and tracker state."""
    state = read(path)
    try:
        unwrap(model).load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        network = f"ResNet-{unwrap(model).depth}" if hasattr(unwrap(model), "depth") else type(unwrap(model)).__name__
        raise weights.WeightsError(f"{path}: not a checkpoint of this run's {network} "
                                   f"({weights.first_line(error)}).") from None
    return state


# ----------------------------------------------------------------------------------- neutral weights


def to_neutral(model: torch.nn.Module) -> dict:
    """name -> NumPy array in the neutral format (PyTorch's own names and layouts)."""
    return {name: tensor.detach().cpu().numpy().copy() for name, tensor in unwrap(model).state_dict().items()
            if not name.endswith("num_batches_tracked")}


def from_neutral(model: torch.nn.Module, tensors: dict) -> torch.nn.Module:
    """Load neutral tensors into `model` in place, keeping the model's dtype."""
    model = unwrap(model)
    weights.check(tensors, model.depth)
    state = model.state_dict()
    for name, array in tensors.items():
        state[name] = torch.from_numpy(np.array(array)).to(state[name].dtype)  # a copy: msgpack gives read-only arrays
    model.load_state_dict(state)
    return model


def export_neutral(path, model, metadata: dict | None = None, mean_image=None) -> None:
    weights.save(path, to_neutral(model), unwrap(model).depth, metadata, mean_image)


def read_neutral(path) -> tuple[dict, dict]:
    """(neutral tensors, metadata) of a torch training checkpoint or bare state_dict; for interop.weights."""
    state = read(path)
    state_dict = state.get("model", state)
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise weights.WeightsError(f"{path}: a PyTorch file, but neither a checkpoint nor a state_dict of tensors.")
    tensors = {k: v.numpy() for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    return tensors, {"recipe": state.get("recipe")}


def model_from_neutral(tensors: dict, metadata: dict, source="weights", device="cpu") -> torch.nn.Module:
    """The eval-mode network of neutral `tensors`, built with the model options of the recipe saved beside them
    (BN's eps, a ReLU on the logits, ...)."""
    options = recipe_of(metadata, source).model_options()
    return from_neutral(resnet(weights.depth_of(tensors), **options), tensors).to(device).eval()
