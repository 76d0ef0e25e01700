"""One training configuration (StepConfig) built into something to time (Runner), in either backend, from the
trainers' own functions: torch_impl.train's train_step and DeviceStream, jax_impl.train's compiled steps."""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

BACKENDS = {"torch": "PyTorch", "torch_cl": "PyTorch channels_last", "jax": "JAX"}
PRECISIONS = ("fp32", "tf32", "bf16")
PRECISION_TEXT = {"fp32": "float32 (TF32 off; JAX precision highest)", "tf32": "TF32 convolutions and matmuls",
                  "bf16": "bf16 mixed precision (--amp bf16)"}
JAX_MATMUL_PRECISION = {"fp32": "highest", "tf32": "default", "bf16": "highest"}  # as jax_impl.train's flags


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """One way to run a training step; flags() names the trainer flags it stands for."""

    backend: str  # "torch" or "jax"
    depth: int = 32
    batch_size: int = 128
    precision: str = "fp32"  # PRECISIONS
    data_on_device: bool = False  # the trainers' DeviceStream: the train split on the device
    channels_last: bool = True  # PyTorch's memory layout, torch_impl.train's default
    compile: bool = False  # PyTorch: torch.compile(mode="reduce-overhead"), CUDA graphs on a GPU
    steps_per_call: int = 1  # JAX: steps per jitted call, one lax.scan (needs data_on_device)
    step_programs: str = "auto"  # JAX: one jitted program or two (jax_impl.platforms.STEP_PROGRAMS)
    xla_options: str = "auto"  # JAX: "auto" (jax_impl.train's compiler_options) or "none" (XLA's defaults)
    conv: str = "auto"  # JAX: jax_impl.train --conv
    processes: int = 1  # cuda: copies of the run at once on one GPU

    def mode(self) -> str:
        if self.backend == "torch":
            return "torch.compile (reduce-overhead)" if self.compile else "eager"
        return f"{self.steps_per_call} step{'s' if self.steps_per_call > 1 else ''}/call"

    def flags(self) -> str:
        """The trainer command that runs this configuration (torch_impl.train --compile uses the default mode)."""
        flags = {"fp32": [], "tf32": ["--tf32" if self.backend == "torch" else "--matmul-precision default"],
                 "bf16": ["--amp bf16"]}[self.precision]
        if self.backend == "torch":
            flags += ["--compile"] * self.compile
        else:
            flags += [f"--steps-per-call {self.steps_per_call}"]
        return " ".join([f"python -m {self.backend}_impl.train --depth {self.depth} --batch-size {self.batch_size}",
                         *flags])

    def tiny(self) -> "StepConfig":
        """The same code path at the dry run's size: ResNet-8, batch 4, at most 2 steps per call and 2 processes."""
        return dataclasses.replace(self, depth=8, batch_size=4, steps_per_call=min(self.steps_per_call, 2),
                                   processes=min(self.processes, 2))


@dataclasses.dataclass
class Runner:
    """A built configuration: call(i) issues its steps_per_call training steps from step i * steps_per_call on
    without waiting; sync() waits for the device; forward(i) is one eval-mode forward and argmax of host batch
    i, finished."""

    call: Callable[[int], None]
    sync: Callable[[], None]
    forward: Callable[[int], None]


def torch_runner(config: StepConfig, stream, pool: list, device) -> Runner:
    """torch_impl.train's model, optimiser, step and per-step input for `config`."""
    import torch
    from cifar_core.recipe import Recipe
    from torch_impl.model import resnet
    from torch_impl.train import DeviceStream, make_optimizer, to_device, train_step

    recipe = Recipe(depth=config.depth, batch_size=config.batch_size)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = config.precision == "tf32"
    amp_dtype = torch.bfloat16 if config.precision == "bf16" else None
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    model = resnet(config.depth, seed=recipe.seed).to(device, memory_format=layout).train()
    optimizer = make_optimizer(model, recipe)
    net = torch_compile(model, device) if config.compile else model
    if config.data_on_device:
        device_stream = DeviceStream(stream, device)

        def batch(i):  # as torch_impl.train.run's next_batch with --data-on-device
            images, labels = device_stream.batch(i)
            return images.permute(0, 3, 1, 2).contiguous(memory_format=layout), labels
    else:
        def batch(i):
            images, labels = pool[i % len(pool)]
            return to_device(images, device, config.channels_last), torch.from_numpy(labels).long().to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    @torch.inference_mode()
    def forward(i):  # as torch_impl.train.evaluate: the eager model, float32
        model.eval()
        model(to_device(pool[i % len(pool)][0], device, config.channels_last)).argmax(1)
        sync()
        model.train()
    return Runner(lambda i: train_step(net, optimizer, *batch(i), recipe.lr_at(i), amp_dtype), sync, forward)


def torch_compile(model, device):
    """torch.compile(mode="reduce-overhead") on a GPU. On the CPU (the dry run) the same graph capture, dynamo
    and AOTAutograd, without inductor's C++ code generation, minutes on a small CPU, and CUDA graphs, GPU only."""
    import torch
    if device.type == "cuda":
        return torch.compile(model, mode="reduce-overhead")
    return torch.compile(model, backend="aot_eager")


def jax_runner(config: StepConfig, stream, pool: list, device=None) -> Runner:
    """jax_impl.train's state, step and per-step input for `config` on a 1-device mesh: train_steps (a lax.scan)
    with steps_per_call > 1, else compile_train_step; under its matmul precision."""
    import jax
    from cifar_core.recipe import Recipe
    from jax_impl.model import ResNet
    from jax_impl.platforms import STEP_PROGRAMS, resolve_conv_kernels
    from jax_impl.train import (AMP_DTYPES, DeviceStream, compile_predict, compile_train_step, compile_train_steps,
                                create_state, global_batch, make_mesh, replicate)

    amp = "bf16" if config.precision == "bf16" else "none"
    conv = resolve_conv_kernels(config.conv, jax.default_backend())
    options = {"auto": "auto", "none": None}[config.xla_options]
    mesh = make_mesh(1)
    model = ResNet(config.depth, dtype=AMP_DTYPES[amp], conv_kernels=conv)
    state = replicate(mesh, create_state(model, Recipe(depth=config.depth, batch_size=config.batch_size)))
    metrics, per_call = None, config.steps_per_call
    step_fn = compile_train_step(mesh, STEP_PROGRAMS[config.step_programs], options)
    steps_fn = compile_train_steps(mesh, options) if per_call > 1 else None
    predict_fn, eval_model = compile_predict(mesh, options), ResNet(config.depth, conv_kernels=conv)
    precision = functools.partial(jax.default_matmul_precision, JAX_MATMUL_PRECISION[config.precision])
    device_stream = DeviceStream(stream, mesh) if config.data_on_device else None

    def batch(i):
        if device_stream is not None:
            return device_stream.batch(i)
        images, labels = pool[i % len(pool)]
        return global_batch(mesh, images), global_batch(mesh, labels)

    def call(i):
        nonlocal state, metrics
        with precision():
            if steps_fn is None:
                state, metrics = step_fn(state, *batch(i))
            else:
                state, metrics = steps_fn(state, device_stream.images, device_stream.labels,
                                          *device_stream.plans(i * per_call, per_call))

    def forward(i):
        with precision():
            variables = {"params": state.params, "batch_stats": state.batch_stats}
            jax.block_until_ready(predict_fn(eval_model, variables, global_batch(mesh, pool[i % len(pool)][0])))
    return Runner(call, lambda: jax.block_until_ready((state, metrics)), forward)


RUNNERS = {"torch": torch_runner, "jax": jax_runner}
