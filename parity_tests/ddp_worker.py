"""One process of a CPU DDP (gloo) parity run, started by harness.torch_ddp_train_losses."""

import os

import numpy as np
import torch
import torch.distributed as dist

from cifar_core.recipe import Recipe
from torch_impl import checkpoint, train
from torch_impl.model import convert_to_cross_rank_bn, resnet


def worker(rank, world, port, inputs_path, output_path, recipe_dict, sync_bn, dtype_name):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        recipe = Recipe.from_dict(recipe_dict)
        dtype = {"float32": torch.float32, "float64": torch.float64}[dtype_name]
        inputs = np.load(inputs_path)
        tensors = {k[2:]: inputs[k] for k in inputs.files if k.startswith("w/")}
        model = checkpoint.from_neutral(resnet(recipe.depth).to(dtype), tensors)
        if sync_bn:
            model = convert_to_cross_rank_bn(model)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        optimizer = train.make_optimizer(ddp, recipe)
        losses = []
        for step, (images, labels) in enumerate(zip(inputs["images"], inputs["labels"])):
            share = len(labels) // world
            part = slice(rank * share, (rank + 1) * share)
            loss_sum, _ = train.train_step(ddp, optimizer, train.to_device(images[part], "cpu", False, dtype),
                                           torch.from_numpy(labels[part]).long(), recipe.lr_at(step))
            dist.all_reduce(loss_sum)
            losses.append(loss_sum.item() / len(labels))
        if rank == 0:
            np.savez(output_path, losses=np.asarray(losses),
                     **{f"w/{k}": v for k, v in checkpoint.to_neutral(model).items()})
        # Leave together: a rank tearing gloo down while its peer is still busy (rank 0 writing the result)
        # aborted once in CI ("terminate called without an active exception", SIGABRT in rank 1).
        dist.barrier()
    finally:
        dist.destroy_process_group()
