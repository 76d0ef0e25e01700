"""Train a CIFAR-10 ResNet with the paper's recipe, in PyTorch. Mirror: jax_impl/train.py.

    python -m torch_impl.train --preset smoke --data-dir ../shared/data/cifar10
    torchrun --nproc_per_node=2 -m torch_impl.train ...      # data parallel: the global batch is split

Weight decay 1e-4 applies to every parameter (conv, BN gamma/beta, linear weight and bias), coupled into the
gradient before momentum, as torch.optim.SGD does and as the paper's Torch code did.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from cifar_core import cli
from cifar_core.loop import StopSignal, Tracker, evaluate_and_save, finish_run
from cifar_core.plan import CROP, PAD, eval_batches
from cifar_core.run import RunDir, default_run_dir

from . import checkpoint
from .model import build, convert_to_cross_rank_bn, count_parameters

BACKEND = "torch_impl"


def make_optimizer(model: torch.nn.Module, recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":  # an ablation (results/ablations.md, question 1); L2 decay coupled, as SGD's
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=(0.9, 0.999), eps=1e-8,
                                weight_decay=recipe.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)


def to_device(images: np.ndarray, device, channels_last: bool, dtype=torch.float32) -> torch.Tensor:
    """NHWC NumPy -> NCHW tensor. The permuted view already has channels_last strides, so that layout is free."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(device=device, dtype=dtype, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def augment_on_device(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """The core's pad-crop-flip (cifar_core.plan.augment) on device-resident normalised NHWC images: a gather,
    so the pixels are bit-identical to the NumPy materializer's."""
    padded = F.pad(images, (0, 0, PAD, PAD, PAD, PAD))  # NHWC: pad W, then H, with zeros
    window = torch.arange(CROP, device=images.device)
    rows = offsets[:, 0, None] + window
    cols = offsets[:, 1, None] + window
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(len(images), device=images.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]


class DeviceStream:
    """The train split resident on the device; each step moves only the plan (indices, offsets, flips)."""

    def __init__(self, stream, device):
        self.stream, self.device = stream, device
        self.images = torch.from_numpy(stream.images).to(device)
        self.labels = torch.from_numpy(stream.labels).long().to(device)

    def batch(self, step: int, shard: int = 0, num_shards: int = 1):
        plan = self.stream.plan(step).shard(shard, num_shards)
        rows = torch.from_numpy(plan.rows).to(self.device, non_blocking=True)
        images = augment_on_device(self.images[rows], torch.from_numpy(plan.offsets).to(self.device),
                                   torch.from_numpy(plan.flips).to(self.device))
        return images, self.labels[rows]


def train_step(model, optimizer, images, labels, lr: float, amp_dtype=None):
    """One SGD step on one (local) batch. Returns the summed loss and the number of correct predictions."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(images)
        loss = F.cross_entropy(logits if amp_dtype is None else logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach() * len(labels), (logits.argmax(1) == labels).sum()


@torch.inference_mode()
def evaluate(model, images: np.ndarray, labels: np.ndarray, batch_size: int, device, channels_last=False,
             dtype=torch.float32):
    """Top-1 error of `model` in eval mode on unaugmented images; None for an empty set."""
    if len(images) == 0:
        return None
    was_training = model.training
    model.eval()
    wrong = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in eval_batches(images, labels, batch_size):
        logits = model(to_device(x, device, channels_last, dtype))
        wrong += (logits.argmax(1) != torch.from_numpy(y).to(device)).sum()
    model.train(was_training)
    return wrong.item() / len(images)


def setup_distributed(device_flag: str):
    """(rank, world_size, device). torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; multi-node the same way."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_flag == "cuda" or (device_flag == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, device


def build_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser(BACKEND)
    group = parser.add_argument_group("PyTorch options")
    group.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    group.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                       help="NHWC memory layout (faster on CPU and CUDA: results/benchmarks.md)")
    group.add_argument("--compile", action="store_true", help="torch.compile the model")
    group.add_argument("--tf32", action="store_true", help="allow TF32 matmuls/convs on CUDA (off: exact fp32)")
    group.add_argument("--sync-bn", action="store_true",
                       help="BN statistics over the global batch (default: per rank, as the paper's 2-GPU runs)")
    group.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    group.add_argument("--data-on-device", action=argparse.BooleanOptionalAction, default=None,
                       help="keep the train split on the device and crop/flip there (default: on for CUDA)")
    return parser


def main(argv=None) -> dict | None:
    return cli.run_cli(build_parser(), run, argv,
                       cleanup=lambda: dist.destroy_process_group() if dist.is_initialized() else None)


def run(args, stop: StopSignal) -> dict | None:
    recipe = cli.recipe_from_args(args)
    amp = cli.run_option(args, "amp", "none")
    rank, world, device = setup_distributed(args.device)
    if recipe.batch_size % world:
        raise ValueError(f"--batch-size {recipe.batch_size} does not divide across {world} processes; "
                         f"use a multiple of {world}.")
    channels_last = args.channels_last
    data_on_device = args.data_on_device if args.data_on_device is not None else device.type == "cuda"
    amp_dtype = torch.bfloat16 if amp == "bf16" else None
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    run_dir = RunDir(args.run_dir or default_run_dir(BACKEND, recipe.depth), BACKEND, recipe, args.resume,
                     write=rank == 0)
    data = cli.load_data(args, recipe, run_dir)

    model = build(recipe).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.sync_bn and world > 1:  # before the optimizer is built: the BN layers are new modules
        model = convert_to_cross_rank_bn(model)
    optimizer = make_optimizer(model, recipe)
    start_step, tracker_state = 0, None
    if args.resume:
        state = checkpoint.load(run_dir.resume_checkpoint(checkpoint.CHECKPOINT_NAME), model, optimizer)
        start_step, tracker_state = state["step"], state["tracker"]
        run_dir.truncate_metrics(start_step)
    if world > 1:
        # broadcast_buffers (default): BN running statistics follow rank 0's, as in jax_impl's per-device BN.
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    net = torch.compile(model) if args.compile else model
    eval_model = checkpoint.unwrap(model)

    options = {k: getattr(args, k) for k in ("compile", "tf32", "sync_bn", "deterministic")}
    options.update(amp=amp, channels_last=channels_last, data_on_device=data_on_device, device=str(device),
                   world_size=world, threads=torch.get_num_threads())
    devices = [torch.cuda.get_device_name(device)] if device.type == "cuda" else ["cpu"]
    run_dir.write_config(options, versions(), devices * world, data.info, start_step, tracker_state)

    if data_on_device:
        device_stream = DeviceStream(data.train, device)

        def next_batch(step):
            images, labels = device_stream.batch(step, rank, world)
            memory_format = torch.channels_last if channels_last else torch.contiguous_format
            return images.permute(0, 3, 1, 2).contiguous(memory_format=memory_format), labels
    else:
        def next_batch(step):
            images, labels = data.train.batch(step, rank, world)
            return to_device(images, device, channels_last), torch.from_numpy(labels).long().to(device)

    tracker = Tracker(run_dir, recipe, data.train.steps_per_epoch, start_step, tracker_state,
                      progress=not args.no_progress)

    def save_checkpoint(step):
        checkpoint.save(run_dir.checkpoints / checkpoint.CHECKPOINT_NAME, model, optimizer, step,
                        {"seed": recipe.seed, "step": step, "epoch": step // data.train.steps_per_epoch},
                        tracker.checkpoint_state(step), recipe.to_dict())

    def export(name, step):
        if recipe.architecture == "cifar":  # the neutral format holds the paper's ResNet-(6n+2) only
            checkpoint.export_neutral(run_dir.checkpoints / name, model, {"step": step, "recipe": recipe.to_dict()},
                                      data.eval_mean_image)

    def evaluate_all():
        return (evaluate(eval_model, data.val_images, data.val_labels, recipe.eval_batch_size, device, channels_last),
                evaluate(eval_model, data.test_images, data.test_labels, recipe.eval_batch_size, device, channels_last))

    loss_sum = correct = torch.zeros((), device=device)
    step = start_step
    model.train()
    while step < recipe.iterations:
        loss, batch_correct = train_step(net, optimizer, *next_batch(step), tracker.warmup.lr_at(step), amp_dtype)
        loss_sum, correct = loss_sum + loss, correct + batch_correct
        step += 1
        if tracker.should_log(step):
            totals = torch.stack([loss_sum, correct.to(loss_sum.dtype)])
            if world > 1:
                dist.all_reduce(totals)
            tracker.log_train(step, totals[0].item(), totals[1].item())
            loss_sum = correct = torch.zeros((), device=device)
        if tracker.should_eval(step) and step < recipe.iterations:
            with tracker.paused():
                if rank == 0:
                    evaluate_and_save(tracker, step, evaluate_all, export, save_checkpoint)
        if should_stop(stop, world, device):
            with tracker.paused():
                if rank == 0:
                    save_checkpoint(step)
            tracker.bar.close()
            leave_together(world)
            stop.exit(step, run_dir, BACKEND)
    final = None
    if rank == 0:
        final = finish_run(tracker, step, evaluate_all, export, save_checkpoint, count_parameters(eval_model),
                           data.info["n_train"])
    leave_together(world)
    return final


def should_stop(stop: StopSignal, world: int, device) -> bool:
    """A signal or the time budget; every rank must stop at the same step, so the verdict is all-reduced."""
    if world == 1:
        return stop.poll() is not None
    flag = torch.tensor([float(stop.poll() is not None)], device=device)
    dist.all_reduce(flag)
    return stop.agree(bool(flag.item()))


def leave_together(world: int):
    """Every rank leaves when rank 0 has written its last files, so none tears the process group down under it."""
    if world > 1:
        dist.barrier()


def versions() -> dict:
    return {"torch": torch.__version__, "numpy": np.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}


if __name__ == "__main__":
    main()
