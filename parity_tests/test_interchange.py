"""Weight interchange: torch -> neutral -> jax -> neutral -> torch is bit-exact; scripts/convert.py converts
checkpoints of either backend."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from cifar_core import weights
from jax_impl import checkpoint as jax_ckpt
from torch_impl import checkpoint as torch_ckpt
from torch_impl.model import resnet

ROOT = Path(__file__).resolve().parent.parent


def test_round_trip_is_bit_exact(tmp_path):
    model = resnet(20, seed=3)
    for module in model.modules():  # non-trivial running statistics too
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    original = torch_ckpt.to_neutral(model)
    weights.save(tmp_path / "a.safetensors", original, 20)
    tensors, depth = weights.load(tmp_path / "a.safetensors")
    variables = jax_ckpt.from_neutral(tensors)
    jax_ckpt.export_neutral(tmp_path / "b.safetensors", variables, depth)
    back = torch_ckpt.from_neutral(resnet(20), weights.load(tmp_path / "b.safetensors")[0])
    result = torch_ckpt.to_neutral(back)
    assert set(result) == set(original)
    for name in original:
        assert result[name].dtype == original[name].dtype
        np.testing.assert_array_equal(result[name], original[name])


def test_convert_script_between_formats(tmp_path):
    model = resnet(8, seed=1)
    torch_ckpt.export_neutral(tmp_path / "w.safetensors", model)

    def convert(src, dst):
        subprocess.run([sys.executable, str(ROOT / "scripts" / "convert.py"), str(src), str(dst)], check=True,
                       capture_output=True, text=True)

    convert(tmp_path / "w.safetensors", tmp_path / "w.msgpack")
    convert(tmp_path / "w.msgpack", tmp_path / "again.safetensors")
    convert(tmp_path / "again.safetensors", tmp_path / "w.pt")
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    for name, array in torch_ckpt.to_neutral(model).items():
        np.testing.assert_array_equal(state[name].numpy(), array)


def test_loading_wrong_weights_is_a_clear_error(tmp_path):
    tensors = torch_ckpt.to_neutral(resnet(8))
    del tensors["fc.bias"]
    path = tmp_path / "bad.safetensors"
    from safetensors.numpy import save_file
    save_file(tensors, str(path))
    try:
        weights.load(path)
    except weights.WeightsError as error:
        assert "fc.bias" in str(error)
    else:
        raise AssertionError("incomplete weights were accepted")
