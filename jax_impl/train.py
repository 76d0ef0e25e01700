"""Train a CIFAR-10 ResNet with the paper's recipe, in JAX/Flax. Mirror: torch_impl/train.py.

    python -m jax_impl.train --preset smoke --data-dir ../shared/data/cifar10

Data parallel over every local device (and every host after jax.distributed.initialize): the per-device
program is written with jax.shard_map over a 1-D mesh, the successor of pmap (JAX >= 0.8 implements pmap on
it). Each device takes a contiguous slice of the global batch; the loss is pmean-ed over the data axis, and
the step is differentiated through the shard_map. On CPU a step is two jitted programs, forward then backward
with the update (compile_train_step says why), compiled with XLA options of their own, and the convolutions run
on oneDNN (--conv; jax_impl/cpu_conv.py). With the train split on the device (the default off the CPU), several
steps run per jitted call as one lax.scan (train_steps). What differs by platform is decided in
jax_impl/platforms.py.

Weight decay 1e-4 applies to every parameter and is added to the gradient before SGD momentum, exactly as
torch.optim.SGD's coupled weight decay: optax.chain(add_decayed_weights, sgd(momentum)).
"""

from __future__ import annotations

import argparse
import functools
import os
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cifar_core import cli
from cifar_core.loop import StopSignal, Tracker, evaluate_and_save, finish_run
from cifar_core.plan import CROP, PAD, eval_batches
from cifar_core.run import RunDir, default_run_dir

from . import checkpoint, cpu_conv
from .model import ResNet, count_parameters, init_variables
from .platforms import (CONV_CHOICES, STEPS_PER_CALL_ACCELERATOR, resolve_compiler_options, resolve_conv_kernels,
                        resolve_steps_per_call, two_programs)

BACKEND = "jax_impl"
DATA_AXIS = "data"


class TrainState(train_state.TrainState):
    batch_stats: Any


def lr_schedule(recipe, warming_up: bool = False):
    """Piecewise constant; the same float64 values as the PyTorch loop, read from the recipe. While
    `warming_up`, recipe.warmup_lr at every step."""
    if warming_up:
        return lambda count: recipe.warmup_lr
    values, boundaries = jnp.asarray(recipe.lr_values()), jnp.asarray(recipe.milestones)
    return lambda count: values[jnp.searchsorted(boundaries, count, side="right")]


@functools.cache
def make_optimizer(recipe, warming_up: bool = False) -> optax.GradientTransformation:
    """SGD (or the Adam ablation) with the lr schedule, or while `warming_up` the warm-up's lr. Cached: the
    optimizer is a static field of the TrainState, so the trainer's swap where the warm-up ends
    (cifar_core.loop.WarmUp) compiles the step once more, and every other step finds its compiled program. Both
    optimizers have the same state (the step count), so a checkpoint loads into either."""
    if recipe.optimizer == "adam":  # an ablation (results/ablations.md, question 1): torch.optim.Adam's L2 decay
        return optax.chain(optax.add_decayed_weights(recipe.weight_decay),
                           optax.adam(lr_schedule(recipe, warming_up), b1=0.9, b2=0.999, eps=1e-8))
    return optax.chain(optax.add_decayed_weights(recipe.weight_decay),
                       optax.sgd(lr_schedule(recipe, warming_up), momentum=recipe.momentum))


def create_state(model: ResNet, recipe) -> TrainState:
    variables = init_variables(model, recipe.seed)
    return TrainState.create(apply_fn=model.apply, params=variables["params"],
                             batch_stats=variables["batch_stats"], tx=make_optimizer(recipe))


def make_mesh(num_devices: int | None = None) -> Mesh:
    devices = jax.devices()
    if num_devices is not None:
        if num_devices > len(devices):
            raise ValueError(f"--num-devices {num_devices}: only {len(devices)} devices are visible.")
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def device_loss(apply_fn, params, batch_stats, images, labels):
    """The per-device program: the global batch's mean loss from this device's slice, with the slice's
    new BN statistics and metrics. Run under shard_map (compile_train_step)."""
    chex.assert_rank([images, labels], [4, 1])  # NHWC images, integer class labels (not one-hot)
    chex.assert_equal_shape_prefix([images, labels], 1)
    chex.assert_type(labels, int)
    logits, updates = apply_fn({"params": params, "batch_stats": batch_stats}, images, train=True,
                               mutable=["batch_stats"])
    # The softmax and the loss in float32 at least: bfloat16 logits (--amp bf16) are cast, as torch_impl casts them.
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    local_loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    # The loss is the global batch's mean (pmean of the equal-sized local means), so its gradient with
    # respect to the replicated params is already the global gradient: shard_map's autodiff sums the
    # per-device contributions (the transpose of replication), exactly the all-reduce DDP performs.
    loss = jax.lax.pmean(local_loss, DATA_AXIS)
    # Per-device BN leaves each device its own running statistics; keep device 0's, as DDP's
    # broadcast_buffers keeps rank 0's. With cross-device BN they are equal everywhere already.
    first = jax.lax.axis_index(DATA_AXIS) == 0
    batch_stats = jax.tree.map(lambda s: jax.lax.psum(jnp.where(first, s, jnp.zeros_like(s)), DATA_AXIS),
                               updates["batch_stats"])
    metrics = {"loss_sum": loss * labels.shape[0] * jax.lax.axis_size(DATA_AXIS),
               "correct": jax.lax.psum(jnp.sum(jnp.argmax(logits, -1) == labels), DATA_AXIS)}
    return loss, (batch_stats, metrics)


def forward_pass(mesh: Mesh, state: TrainState, images, labels):
    """(pullback, BN statistics, metrics). The pullback maps the loss's cotangent to the gradient; it holds
    the activations the backward pass reads."""
    loss_fn = jax.shard_map(functools.partial(device_loss, state.apply_fn), mesh=mesh,
                            in_specs=(P(), P(), P(DATA_AXIS), P(DATA_AXIS)), out_specs=P())
    _, pullback, (batch_stats, metrics) = jax.vjp(
        lambda params: loss_fn(params, state.batch_stats, images, labels), state.params, has_aux=True)
    return pullback, batch_stats, metrics


def backward_pass(state: TrainState, pullback, batch_stats) -> TrainState:
    """The gradient (d loss / d loss = 1 pulled back to the params) and the SGD update."""
    (grads,) = pullback(jnp.ones((), jax.tree.leaves(state.params)[0].dtype))
    return state.apply_gradients(grads=grads, batch_stats=batch_stats)


def train_step(mesh: Mesh, state: TrainState, images, labels):
    """One SGD step on the global batch: (new state, metrics)."""
    pullback, batch_stats, metrics = forward_pass(mesh, state, images, labels)
    return backward_pass(state, pullback, batch_stats), metrics


def compile_train_step(mesh: Mesh, split: bool | None = None, xla_options: dict | str | None = "auto"):
    """The jitted train_step, (state, images, labels) -> (state, metrics), data parallel over `mesh`: state
    replicated and donated, batch split along the data axis.

    On GPU it is one program. On CPU (`split` None: when the mesh is on CPU) it is two, the forward pass,
    then the backward pass with the update: XLA:CPU does not keep a fused program's forward activations in
    memory but recomputes them, residual stream and all, inside every relayout its weight-gradient
    convolutions need. Handing the activations from one program to the next materialises them; the results
    are bit-identical (parity_tests/test_multi_device.py; the speed-up: results/benchmarks.md). `xla_options`
    "auto" is platforms.compiler_options(platform).
    """
    options = resolve_compiler_options(mesh, xla_options)
    if not two_programs(mesh.devices.flat[0].platform, split):
        return jax.jit(functools.partial(train_step, mesh), donate_argnums=0, compiler_options=options)
    forward = jax.jit(functools.partial(forward_pass, mesh), compiler_options=options)
    backward = jax.jit(backward_pass, donate_argnums=0, compiler_options=options)

    def split_train_step(state, images, labels):
        pullback, batch_stats, metrics = forward(state, images, labels)
        return backward(state, pullback, batch_stats), metrics
    return split_train_step


def train_steps(mesh: Mesh, state: TrainState, images, labels, rows, offsets, flips):
    """len(rows) SGD steps in one program, step k on the batch that the plan (rows[k], offsets[k], flips[k])
    picks and crops from the device-resident train split (`images`, `labels`): (new state, metrics summed
    over the steps). One dispatch for several steps: at a GPU's pace a step costs about as much as launching it
    from Python."""
    sharded = NamedSharding(mesh, P(DATA_AXIS))

    def one_step(state, plan):
        step_rows, step_offsets, step_flips = plan
        batch_images = jax.lax.with_sharding_constraint(
            augment_on_device(images[step_rows], step_offsets, step_flips), sharded)
        return train_step(mesh, state, batch_images, jax.lax.with_sharding_constraint(labels[step_rows], sharded))
    state, metrics = jax.lax.scan(one_step, state, (rows, offsets, flips))
    return state, jax.tree.map(lambda m: m.sum(0), metrics)


def compile_train_steps(mesh: Mesh, xla_options: dict | str | None = "auto"):
    """The jitted train_steps, (state, images, labels, rows, offsets, flips) -> (state, summed metrics), state
    donated. For GPUs and TPUs: XLA:CPU runs convolutions inside a loop on a slow path (results/benchmarks.md),
    so the trainer scans by default only where the data is on the device and the platform is not the CPU
    (--steps-per-call)."""
    return jax.jit(functools.partial(train_steps, mesh), donate_argnums=0,
                   compiler_options=resolve_compiler_options(mesh, xla_options))


def augment_on_device(images, offsets, flips):
    """The core's pad-crop-flip (cifar_core.plan.augment) on device-resident normalised NHWC images: a gather,
    so the pixels are bit-identical to the NumPy materializer's."""
    padded = jnp.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))
    window = jnp.arange(CROP)
    rows = offsets[:, 0, None] + window
    cols = offsets[:, 1, None] + window
    cols = jnp.where(flips[:, None], cols[:, ::-1], cols)
    return padded[jnp.arange(images.shape[0])[:, None, None], rows[:, :, None], cols[:, None, :]]


class DeviceStream:
    """The train split resident on every device; each step moves only the plan (indices, offsets, flips).
    Single-process only: multi-host runs materialise their share on the host."""

    def __init__(self, stream, mesh: Mesh):
        self.stream = stream
        self.images = replicate(mesh, stream.images)
        self.labels = replicate(mesh, stream.labels)
        sharded = NamedSharding(mesh, P(DATA_AXIS))
        self._gather = jax.jit(lambda images, labels, rows, offsets, flips:
                               (augment_on_device(images[rows], offsets, flips), labels[rows]),
                               out_shardings=(sharded, sharded))

    def batch(self, step: int):
        plan = self.stream.plan(step)
        return self._gather(self.images, self.labels, plan.rows, plan.offsets, plan.flips)

    def plans(self, step: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The plans of steps step .. step + count - 1, stacked: (rows, offsets, flips) for train_steps."""
        plans = [self.stream.plan(i) for i in range(step, step + count)]
        return tuple(np.stack([getattr(p, name) for p in plans]) for name in ("rows", "offsets", "flips"))


def global_batch(mesh: Mesh, local: np.ndarray) -> jax.Array:
    """This process's rows of a global batch -> one array sharded along the data axis over all devices."""
    return jax.make_array_from_process_local_data(NamedSharding(mesh, P(DATA_AXIS)), local)


def replicate(mesh: Mesh, tree):
    return jax.device_put(tree, NamedSharding(mesh, P()))


def predict(model: ResNet, variables, images):
    """Eval-mode class predictions: the argmax of the logits."""
    return jnp.argmax(model.apply(variables, images, train=False), -1)


@functools.cache
def _jitted_predict(options: tuple | None):
    return jax.jit(predict, static_argnums=0, compiler_options=dict(options) if options else None)


def compile_predict(mesh: Mesh, xla_options: dict | str | None = "auto"):
    """The jitted predict, (model, variables, images) -> predictions; `xla_options` as in compile_train_step."""
    options = resolve_compiler_options(mesh, xla_options)
    return _jitted_predict(tuple(sorted(options.items())) if options else None)


def evaluate(model: ResNet, variables, images: np.ndarray, labels: np.ndarray, batch_size: int, mesh: Mesh):
    """Top-1 error in eval mode; None for an empty set. Batches are padded to one shape, `batch_size` or the whole
    set when it is smaller (one compile per set size; a small set is not padded to a large batch)."""
    if len(images) == 0:
        return None
    devices, world, rank = mesh.size, jax.process_count(), jax.process_index()
    predict_fn = compile_predict(mesh)
    padded = -(-min(batch_size, len(images)) // devices) * devices
    wrong = 0
    for x, y in eval_batches(images, labels, batch_size):
        valid = len(x)
        x = np.concatenate([x, np.zeros((padded - valid, *x.shape[1:]), x.dtype)]).astype(model.param_dtype)
        share = padded // world
        predictions = predict_fn(model, variables, global_batch(mesh, x[rank * share:(rank + 1) * share]))
        wrong += int(np.sum(np.asarray(jax.device_get(predictions))[:valid] != y))
    return wrong / len(images)


def maybe_initialize_distributed(args) -> None:
    """Multi-host: jax.distributed.initialize when a coordinator is named by flag or environment."""
    address = args.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address:
        jax.distributed.initialize(coordinator_address=address, num_processes=args.num_processes,
                                   process_id=args.process_id)


AMP_DTYPES = {"none": jnp.float32, "bf16": jnp.bfloat16}  # --amp -> the model's dtype (its parameters stay float32)
def build_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser(BACKEND)
    group = parser.add_argument_group("JAX options")
    group.add_argument("--num-devices", type=int, help="use the first N local devices (default: all)")
    group.add_argument("--cross-device-bn", action="store_true",
                       help="BN statistics over the global batch (default: per device, as the paper's 2-GPU runs)")
    group.add_argument("--coordinator-address", help="multi-host: host:port of process 0 (jax.distributed)")
    group.add_argument("--num-processes", type=int, help="multi-host: number of processes")
    group.add_argument("--process-id", type=int, help="multi-host: this process's index")
    group.add_argument("--data-on-device", action=argparse.BooleanOptionalAction, default=None,
                       help="keep the train split on the devices and crop/flip there (default: on for GPU/TPU)")
    group.add_argument("--steps-per-call", type=int, default=None,
                       help="with --data-on-device, run up to N steps per jitted call (one lax.scan; calls end at "
                            f"every log and eval point). Default: {STEPS_PER_CALL_ACCELERATOR} off the CPU, 1 on it "
                            "(XLA:CPU runs convolutions inside a loop on a slow path)")
    group.add_argument("--conv", choices=CONV_CHOICES, default="auto",
                       help="convolution kernels: 'onednn' (CPU only: jax_impl/cpu_conv, oneDNN through XLA's FFI, "
                            "built on first use), 'xla' (XLA's own); 'auto': onednn on CPU where it builds, else xla")
    group.add_argument("--matmul-precision", choices=("highest", "default"), default="highest",
                       help="float32 conv/matmul precision: 'highest' is true fp32 (PyTorch's default, TF32 off); "
                            "'default' lets GPUs use TF32/bf16 passes (as PyTorch's --tf32)")
    return parser


def main(argv=None) -> dict | None:
    return cli.run_cli(build_parser(), run, argv)


def run(args, stop: StopSignal) -> dict | None:
    recipe = cli.recipe_from_args(args)
    amp = cli.run_option(args, "amp", "none")
    if recipe.architecture != "cifar":
        raise ValueError(f"--architecture {recipe.architecture}: an ablation of torch_impl only; "
                         "run it with python -m torch_impl.train.")
    if args.matmul_precision == "highest":
        jax.config.update("jax_default_matmul_precision", "highest")
    maybe_initialize_distributed(args)
    mesh = make_mesh(args.num_devices)
    if recipe.batch_size % mesh.size:
        raise ValueError(f"--batch-size {recipe.batch_size} does not divide across {mesh.size} devices; "
                         f"use a multiple of {mesh.size} or --num-devices.")
    rank, world = jax.process_index(), jax.process_count()  # processes, as torch_impl's; each drives its local devices
    data_on_device = args.data_on_device if args.data_on_device is not None else jax.default_backend() != "cpu"
    if data_on_device and world > 1:
        raise ValueError("--data-on-device is single-process; multi-host runs feed each process's share.")
    steps_per_call = resolve_steps_per_call(args.steps_per_call, data_on_device, jax.default_backend())
    conv_kernels = resolve_conv_kernels(args.conv, jax.default_backend())
    run_dir = RunDir(args.run_dir or default_run_dir(BACKEND, recipe.depth), BACKEND, recipe, args.resume,
                     write=rank == 0)
    data = cli.load_data(args, recipe, run_dir)

    model = ResNet(recipe.depth, bn_axis_name=DATA_AXIS if args.cross_device_bn else None, dtype=AMP_DTYPES[amp],
                   conv_kernels=conv_kernels, **recipe.model_options())
    # float32, as torch_impl evaluates outside autocast
    eval_model = ResNet(recipe.depth, conv_kernels=conv_kernels, **recipe.model_options())
    state = create_state(model, recipe)
    start_step, tracker_state = 0, None
    if args.resume:
        state, saved = checkpoint.load(run_dir.resume_checkpoint(checkpoint.CHECKPOINT_NAME), state)
        start_step, tracker_state = saved["step"], saved["tracker"]
        run_dir.truncate_metrics(start_step)
    state = replicate(mesh, state)
    step_fn = compile_train_step(mesh)

    options = {"cross_device_bn": args.cross_device_bn, "num_devices": mesh.size, "process_count": world,
               "data_on_device": data_on_device, "steps_per_call": steps_per_call,
               "amp": amp, "matmul_precision": args.matmul_precision, "conv_kernels": conv_kernels}
    if jax.default_backend() == "cpu":  # the cores each device's programs use, what torch_impl records as threads
        options["threads"] = cpu_conv.threads_per_device()
    run_dir.write_config(options, versions(), [f"{d.platform}:{d.id} {d.device_kind}" for d in mesh.devices.flat],
                         data.info, start_step, tracker_state)

    if data_on_device:
        device_stream = DeviceStream(data.train, mesh)
        next_batch = device_stream.batch
        steps_fn = compile_train_steps(mesh) if steps_per_call > 1 else None
    else:
        def next_batch(step):
            images, labels = data.train.batch(step, rank, world)
            return global_batch(mesh, images), global_batch(mesh, labels)

    tracker = Tracker(run_dir, recipe, data.train.steps_per_epoch, start_step, tracker_state,
                      progress=not args.no_progress)

    def variables():
        return {"params": state.params, "batch_stats": state.batch_stats}

    def save_checkpoint(step):
        if rank == 0:
            checkpoint.save(run_dir.checkpoints / checkpoint.CHECKPOINT_NAME, state, step,
                            {"seed": recipe.seed, "step": step, "epoch": step // data.train.steps_per_epoch},
                            tracker.checkpoint_state(step), recipe.to_dict())

    def export(name, step):
        if rank == 0:
            checkpoint.export_neutral(run_dir.checkpoints / name, variables(), recipe.depth,
                                      {"step": step, "recipe": recipe.to_dict()}, data.eval_mean_image)

    def evaluate_all():
        return (evaluate(eval_model, variables(), data.val_images, data.val_labels, recipe.eval_batch_size, mesh),
                evaluate(eval_model, variables(), data.test_images, data.test_labels, recipe.eval_batch_size, mesh))

    loss_sum = correct = 0.0
    step = start_step

    def steps_in_call(step):
        """Up to steps_per_call, ending at the next log or eval point, where the loop reads the metrics."""
        count = min(steps_per_call, recipe.iterations - step)
        for every in (recipe.log_every, recipe.eval_every):
            count = min(count, every - step % every)
        return count

    while step < recipe.iterations:
        count = steps_in_call(step)
        # The warm-up ends only at a record, where a call ends: one optimizer serves every step of the call.
        state = state.replace(tx=make_optimizer(recipe, tracker.warmup.on(step)))
        if count > 1:
            state, metrics = steps_fn(state, device_stream.images, device_stream.labels,
                                      *device_stream.plans(step, count))
        else:
            state, metrics = step_fn(state, *next_batch(step))
        loss_sum, correct = loss_sum + metrics["loss_sum"], correct + metrics["correct"]  # stays on device
        step += count
        if tracker.should_log(step):
            tracker.log_train(step, float(loss_sum), float(correct))
            loss_sum = correct = 0.0
        if tracker.should_eval(step) and step < recipe.iterations:
            with tracker.paused():
                evaluate_and_save(tracker, step, evaluate_all, export, save_checkpoint)
        if should_stop(stop, world):
            with tracker.paused():
                save_checkpoint(step)
            tracker.bar.close()
            stop.exit(step, run_dir, BACKEND)
    final = finish_run(tracker, step, evaluate_all, export, save_checkpoint, count_parameters(state.params),
                       data.info["n_train"])
    return final if rank == 0 else None


def should_stop(stop: StopSignal, world: int) -> bool:
    """A signal or the time budget; every process must stop at the same step (a signal can reach the hosts a
    step apart, a budget end a moment apart), so with several the verdict is gathered from all."""
    if world == 1:
        return stop.poll() is not None
    from jax.experimental import multihost_utils
    return stop.agree(bool(np.any(multihost_utils.process_allgather(np.asarray(stop.poll() is not None)))))


def versions() -> dict:
    import flax
    from importlib.metadata import version
    return {"jax": jax.__version__, "jaxlib": version("jaxlib"), "flax": flax.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "backend": jax.default_backend()}


if __name__ == "__main__":
    main()
