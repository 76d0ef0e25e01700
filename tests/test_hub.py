"""torch.hub entry points (hubconf.py, loaded as torch.hub does: source="local", no network) and their JAX twin
(jax_impl.hub) give the committed weights, the same in both frameworks; which run's weights they pick."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest
import torch

from cifar_core import data, weights
from cifar_core.pretrained import pretrained_weights
from jax_impl import checkpoint as jax_checkpoint
from jax_impl import hub as jax_hub
from jax_impl.hub import resnet as jax_resnet
from torch_impl import checkpoint as torch_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def hub_load(name, **kwargs):
    return torch.hub.load(str(ROOT), name, source="local", **kwargs)


def depths_with_weights() -> list:
    """The paper depths whose committed runs give pretrained weights."""
    found = []
    for depth in (20, 32, 44, 56, 110):
        try:
            pretrained_weights(depth)
        except weights.WeightsError:
            continue
        found.append(depth)
    return found


PRETRAINED_DEPTHS = depths_with_weights()
PARAMETERS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_an_entry_point_for_every_paper_depth(depth):
    assert hub_load(f"resnet{depth}").depth == depth


def test_the_committed_runs_give_weights_for_resnet20_and_resnet32_at_least():
    assert {20, 32} <= set(PRETRAINED_DEPTHS)


@pytest.mark.parametrize("depth", PRETRAINED_DEPTHS)
def test_torch_hub_pretrained_weights_are_the_committed_ones_and_equal_the_jax_twin(depth):
    model = hub_load(f"resnet{depth}", pretrained=True)
    assert not model.training and sum(p.numel() for p in model.parameters()) == PARAMETERS[depth]
    expected, saved_depth = weights.load(pretrained_weights(depth))
    loaded = torch_checkpoint.to_neutral(model)
    assert saved_depth == depth and set(loaded) == set(expected)
    for name in expected:
        np.testing.assert_array_equal(loaded[name], expected[name])
    jax_model, variables = jax_resnet(depth, pretrained=True)
    assert jax_model.depth == depth
    for name, array in jax_checkpoint.to_neutral(variables).items():
        np.testing.assert_array_equal(array, expected[name])


def test_fresh_networks_are_he_initialised_of_any_depth():
    model = hub_load("resnet", depth=20)
    assert not model.training and sum(p.numel() for p in model.parameters()) == weights.parameter_count(20)
    conv = model.layer3[0].conv2.weight  # He normal, fan_out: std sqrt(2 / (64 * 9))
    assert conv.std().item() == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.05)
    _, variables = jax_resnet(20)
    assert set(jax_checkpoint.to_neutral(variables)) == set(weights.layer_shapes(20))


def test_a_depth_without_weights_is_a_clear_error():
    with pytest.raises(weights.WeightsError, match="ResNet-1202.*pretrained=False"):
        hub_load("resnet", depth=1202, pretrained=True)


def test_pretrained_prefers_the_longest_finished_schedule(tmp_path):
    def run(name, iterations, error, steps=None, n_train=45_000, **departures):
        folder = tmp_path / name / "checkpoints"
        folder.mkdir(parents=True)
        (folder / "final.safetensors").write_bytes(b"")
        (tmp_path / name / "config.json").write_text(json.dumps(
            {"recipe": {"depth": 32, "iterations": iterations, **departures}}))
        (tmp_path / name / "final.json").write_text(json.dumps(
            {"depth": 32, "iterations": iterations, "steps_completed": steps or iterations,
             "final_test_error": error, "n_train_images": n_train}))
    run("a-2000it", 2000, 0.24)
    run("b-2000it", 2000, 0.26)
    assert pretrained_weights(32, tmp_path).parent.parent.name == "a-2000it"
    run("c-64k-unfinished", 64000, 0.30, steps=5000)
    assert pretrained_weights(32, tmp_path).parent.parent.name == "a-2000it"
    run("d-64k", 64000, 0.078, n_train=50_000)
    run("e-64k", 64000, 0.075, n_train=50_000)
    assert pretrained_weights(32, tmp_path).parent.parent.name == "e-64k"
    run("f-64k-ablation", 64000, 0.070, n_train=50_000, bn_eps=0.1)  # an ablation is not the paper's network
    assert pretrained_weights(32, tmp_path).parent.parent.name == "e-64k"
    with pytest.raises(weights.WeightsError, match="pretrained: ResNet-32"):
        pretrained_weights(56, tmp_path)


@pytest.mark.parametrize("depth", PRETRAINED_DEPTHS)
def test_pretrained_weights_carry_their_preprocessing(depth):
    """The mean image travels in the weights file, and both transforms take uint8 NHWC or NCHW alike."""
    mean = weights.read_mean_image(pretrained_weights(depth))
    assert mean.shape == (32, 32, 3) and 0.4 < mean.mean() < 0.55
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    torch_transform, jax_transform = hub_load("transform", depth=depth), jax_hub.transform(depth)
    expected = images.astype(np.float32) / np.float32(255) - mean
    np.testing.assert_array_equal(torch_transform(images).numpy(), expected.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(torch_transform(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy(),
                                  expected.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(np.asarray(jax_transform(images)), expected)
    with pytest.raises(ValueError, match="uint8"):
        torch_transform(images.astype(np.float32))


@pytest.mark.slow
@pytest.mark.real_data
def test_a_new_user_reproduces_the_table_from_uint8_images():
    """model(transform(images)) on the raw test images gives the error the run recorded, in both frameworks,
    with nothing but the hub's two entry points: no training set, no normalisation of one's own."""
    data_dir = os.environ.get("CIFAR10_DIR")
    if not data_dir:
        pytest.skip("real CIFAR-10 not available: set CIFAR10_DIR")
    dataset = data.load(data_dir, download=False)
    images, labels = np.asarray(dataset.test_images), np.asarray(dataset.test_labels)
    recorded = json.loads((pretrained_weights(32).parent.parent / "final.json").read_text())["final_test_error"]
    model, transform = hub_load("resnet32", pretrained=True), hub_load("transform", depth=32)
    with torch.inference_mode():
        torch_pred = np.concatenate([model(transform(images[i:i + 1000])).argmax(1).numpy()
                                     for i in range(0, len(images), 1000)])
    assert np.mean(torch_pred != labels) == pytest.approx(recorded, abs=1e-12)
    jax_model, variables = jax_resnet(32, pretrained=True)
    apply = jax.jit(lambda x: jax_model.apply(variables, x, train=False))
    jax_transform = jax_hub.transform(32)
    jax_pred = np.concatenate([np.asarray(apply(jax_transform(images[i:i + 1000]))).argmax(1)
                               for i in range(0, len(images), 1000)])
    assert np.mean(jax_pred != labels) == pytest.approx(recorded, abs=1e-12)


def test_the_readme_names_the_runs_the_hub_serves():
    readme = (ROOT / "README.md").read_text()
    for depth in PRETRAINED_DEPTHS:
        assert f"ResNet-{depth} from `{pretrained_weights(depth).parent.parent.name}`" in readme, depth
