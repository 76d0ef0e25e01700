"""jax_impl/cpu_conv: oneDNN's convolutions compute lax.conv_general_dilated's function and gradients.

The reference is XLA's convolution in float64 on the same float32 inputs; oneDNN (float32) must be within
float32 accumulation error of it, as XLA's own float32 convolution is. These tests need the handlers to
build (the project installs oneDNN): they fail, not skip, when they do not.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from cifar_core.recipe import Recipe
from jax_impl import cpu_conv, platforms, train
from jax_impl.model import ResNet

NHWC = ("NHWC", "HWIO", "NHWC")
# float32 sums of up to ~10^4 products: relative error a few 1e-7 in the largest entries.
TOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def handlers():
    cpu_conv.require()


def xla_conv(x, w, stride, padding):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=NHWC,
                                        precision=jax.lax.Precision.HIGHEST)


def onednn_conv(x, w, stride, padding):
    return cpu_conv.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=NHWC)


def values_and_grads(conv, x, w, dy, stride, padding):
    y, pullback = jax.vjp(lambda x, w: conv(x, w, stride, padding), x, w)
    return (y, *pullback(dy))


def relative_error(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))) / np.max(np.abs(b)))


# (height = width, input channels, output channels, stride, padding): ResNet-32's convolutions (the stem,
# a stage's 3x3, a stage entrance with stride 2), and odd sizes and uneven padding the model does not use.
SHAPES = [(32, 3, 16, 1, ((1, 1), (1, 1))), (32, 16, 16, 1, ((1, 1), (1, 1))), (16, 16, 32, 2, ((1, 1), (1, 1))),
          (8, 64, 64, 1, ((1, 1), (1, 1))), (7, 5, 6, 2, ((0, 1), (2, 0)))]


@pytest.mark.parametrize("size, c_in, c_out, stride, padding", SHAPES)
def test_forward_and_gradients_equal_xla(size, c_in, c_out, stride, padding):
    rng = np.random.default_rng(size * c_in + c_out)
    x = rng.standard_normal((4, size, size, c_in), np.float32)
    w = rng.standard_normal((3, 3, c_in, c_out), np.float32)
    y_shape = jax.eval_shape(lambda: xla_conv(x, w, stride, padding)).shape
    dy = rng.standard_normal(y_shape, np.float32)
    with jax.enable_x64(True):
        reference = values_and_grads(xla_conv, *(jnp.asarray(a, jnp.float64) for a in (x, w, dy)), stride, padding)
    ours = jax.jit(functools.partial(values_and_grads, onednn_conv), static_argnums=(3, 4))(x, w, dy, stride, padding)
    for name, got, want in zip(("output", "input gradient", "weight gradient"), ours, reference):
        assert got.dtype == jnp.float32 and got.shape == want.shape, name
        assert relative_error(got, want) < TOL, name


@pytest.mark.parametrize("size, c_in, c_out, stride, padding", SHAPES)
def test_bfloat16_forward_and_gradients_within_bfloat16_rounding(size, c_in, c_out, stride, padding):
    """--amp bf16: bfloat16 operands, a bfloat16 result accumulated in float32, as XLA's: each entry within
    bfloat16's unit roundoff (2^-8, relative) of the exact convolution of the same bfloat16 inputs."""
    rng = np.random.default_rng(size * c_in + c_out)
    x = jnp.asarray(rng.standard_normal((4, size, size, c_in)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((3, 3, c_in, c_out)), jnp.bfloat16)
    y_shape = jax.eval_shape(lambda: xla_conv(x, w, stride, padding)).shape
    dy = jnp.asarray(rng.standard_normal(y_shape), jnp.bfloat16)
    with jax.enable_x64(True):
        reference = values_and_grads(xla_conv, *(jnp.asarray(a, jnp.float64) for a in (x, w, dy)), stride, padding)
    ours = jax.jit(functools.partial(values_and_grads, onednn_conv), static_argnums=(3, 4))(x, w, dy, stride, padding)
    for name, got, want in zip(("output", "input gradient", "weight gradient"), ours, reference):
        assert got.dtype == jnp.bfloat16 and got.shape == want.shape, name
        got, want = np.asarray(got, np.float64), np.asarray(want)
        np.testing.assert_array_less(np.abs(got - want), 2**-8 * np.abs(want) + TOL * np.max(np.abs(want)), name)


def test_replicated_kernel_under_shard_map_sums_its_gradient_over_devices():
    """Data parallel as the trainer runs it: the batch split over 4 devices, the kernel replicated; the
    kernel's gradient of the summed loss is the sum over devices, as on one device."""
    mesh = train.make_mesh(4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 8, 8, 16), np.float32)
    w = rng.standard_normal((3, 3, 16, 16), np.float32)
    pad = ((1, 1), (1, 1))

    def loss(w, x):
        return jnp.sum(jnp.square(onednn_conv(x, w, 1, pad)))

    sharded = jax.shard_map(lambda w, x: jax.lax.psum(loss(w, x), train.DATA_AXIS), mesh=mesh,
                            in_specs=(P(), P(train.DATA_AXIS)), out_specs=P())
    grad_four = jax.jit(jax.grad(sharded))(w, train.global_batch(mesh, x))
    with jax.enable_x64(True):
        grad_one = jax.grad(lambda w, x: jnp.sum(jnp.square(xla_conv(x, w, 1, pad))))(
            jnp.asarray(w, jnp.float64), jnp.asarray(x, jnp.float64))
    assert relative_error(grad_four, grad_one) < TOL


def test_training_step_equals_xla_convolutions():
    """One ResNet-8 training step (forward, backward, SGD) with oneDNN's convolutions and with XLA's, float32,
    from the same weights on the same batch: the same loss and new weights to float32 accuracy."""
    recipe = Recipe(depth=8, batch_size=16)
    mesh = train.make_mesh(1)
    rng = np.random.default_rng(1)
    images = train.global_batch(mesh, rng.standard_normal((16, 32, 32, 3), np.float32))
    labels = train.global_batch(mesh, rng.integers(0, 10, 16).astype(np.int32))
    results = {}
    for kernels in ("xla", "onednn"):
        state = train.replicate(mesh, train.create_state(ResNet(8, conv_kernels=kernels), recipe))
        with jax.default_matmul_precision("highest"):
            state, metrics = train.compile_train_step(mesh)(state, images, labels)
        results[kernels] = float(metrics["loss_sum"]), jax.tree.leaves(state.params)
    (xla_loss, xla_params), (onednn_loss, onednn_params) = results["xla"], results["onednn"]
    assert onednn_loss == pytest.approx(xla_loss, rel=TOL)
    for ours, theirs in zip(onednn_params, xla_params):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL * float(np.max(np.abs(theirs))))


def test_unsupported_calls_are_clear_errors():
    x, w = jnp.zeros((1, 8, 8, 4)), jnp.zeros((3, 3, 4, 4))
    with pytest.raises(ValueError, match="explicit padding"):
        cpu_conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)
    with pytest.raises(ValueError, match="no dilation"):
        cpu_conv.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), rhs_dilation=(2, 2), dimension_numbers=NHWC)
    with jax.enable_x64(True), pytest.raises(ValueError, match="float32 or bfloat16 operands.*--conv xla"):
        cpu_conv.conv_general_dilated(x.astype(jnp.float64), w.astype(jnp.float64), (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=NHWC)
    with pytest.raises(ValueError, match="operands of one type"):
        cpu_conv.conv_general_dilated(x, w.astype(jnp.bfloat16), (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC)


def test_conv_flag_resolution():
    assert platforms.resolve_conv_kernels("auto", "cpu") == "onednn"
    assert platforms.resolve_conv_kernels("auto", "gpu") == "xla"
    assert platforms.resolve_conv_kernels("xla", "cpu") == "xla"
    with pytest.raises(ValueError, match="--conv onednn is for the CPU"):
        platforms.resolve_conv_kernels("onednn", "gpu")


def test_build_failure_names_the_compiler_and_the_way_out(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.raises(cpu_conv.Unavailable, match="no-such-compiler.*--conv xla"):
        cpu_conv.build()
    assert not any(tmp_path.rglob("*.so"))
