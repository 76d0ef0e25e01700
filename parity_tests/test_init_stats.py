"""2. Init statistics: each layer's initial weights follow the documented distribution in both backends, and
the two backends' samples follow the same distribution.

Documented (torch_impl/model.py): conv ~ N(0, 2 / fan_out), fan_out = 9 * out_channels, untruncated;
linear weight ~ U(-1/8, 1/8), bias 0; BN gamma 1, beta 0, running mean 0, running var 1.

Thresholds come from the sample sizes and one family-wise false-alarm rate ALPHA, split over every
hypothesis tested (Bonferroni); nothing is tuned. The seeds are fixed, so the outcome is deterministic.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jax_impl import checkpoint as jax_ckpt
from jax_impl.model import ResNet
from torch_impl.checkpoint import to_neutral
from torch_impl.model import resnet

DEPTH = 20
SEEDS = (0, 1, 2)
ALPHA = 1e-3  # family-wise


jax_init = jax.jit(lambda key: ResNet(DEPTH).init(key, jnp.zeros((1, 32, 32, 3)), train=False))


def samples(seed):
    variables = jax_init(jax.random.key(seed))
    return to_neutral(resnet(DEPTH, seed=seed)), jax_ckpt.to_neutral(jax.device_get(variables))


@pytest.fixture(scope="module")
def inits():
    return {seed: samples(seed) for seed in SEEDS}


def random_layers(tensors):
    return [k for k in tensors if k.endswith("weight") and tensors[k].ndim in (2, 4)]


def conv_std(shape):
    out_channels, _, kh, kw = shape
    return math.sqrt(2.0 / (out_channels * kh * kw))


def test_each_layer_follows_documented_distribution(inits):
    layers = random_layers(inits[0][0])
    # per layer: KS vs the documented law, |mean| and |std - sigma| z-tests, and the two-sample test
    hypotheses = len(SEEDS) * len(layers) * (2 * 3 + 1)
    alpha = ALPHA / hypotheses
    z = stats.norm.isf(alpha / 2)
    failures = []
    for seed, (torch_w, jax_w) in inits.items():
        for name in layers:
            for backend, tensors in (("torch", torch_w), ("jax", jax_w)):
                w = tensors[name].astype(np.float64).ravel()
                n = w.size
                if name == "fc.weight":
                    law = stats.uniform(-1 / 8, 2 / 8)
                    sigma = (2 / 8) / math.sqrt(12)
                else:
                    sigma = conv_std(tensors[name].shape)
                    law = stats.norm(0, sigma)
                if stats.kstest(w, law.cdf).pvalue < alpha:
                    failures.append(f"{backend} seed {seed} {name}: KS rejects {law.dist.name}")
                if abs(w.mean()) > z * sigma / math.sqrt(n):
                    failures.append(f"{backend} seed {seed} {name}: mean {w.mean():.3g}")
                # sd of the sample std ~ sigma * sqrt(kurtosis excess term / 4n); normal: sigma / sqrt(2n)
                kurt = -6 / 5 if name == "fc.weight" else 0.0
                if abs(w.std() - sigma) > z * sigma * math.sqrt((2 + kurt) / (4 * n)):
                    failures.append(f"{backend} seed {seed} {name}: std {w.std():.4g} vs {sigma:.4g}")
            if stats.ks_2samp(torch_w[name].ravel(), jax_w[name].ravel()).pvalue < alpha:
                failures.append(f"seed {seed} {name}: torch and jax samples differ (two-sample KS)")
    assert not failures, "\n".join(failures)


def test_constant_initialisations(inits):
    for torch_w, jax_w in inits.values():
        for tensors in (torch_w, jax_w):
            for name, value in tensors.items():
                if name.endswith(("bn1.weight", "bn2.weight", "running_var")):
                    assert np.all(value == 1), name
                elif name.endswith(("bias", "running_mean")):
                    assert np.all(value == 0), name


def test_initialisation_depends_on_seed_only(inits):
    again_torch, again_jax = samples(1)
    for name, value in inits[1][0].items():
        np.testing.assert_array_equal(again_torch[name], value)
        np.testing.assert_array_equal(again_jax[name], inits[1][1][name])
    assert not np.array_equal(inits[0][0]["conv1.weight"], inits[1][0]["conv1.weight"])
