"""The command line both trainers share: `python -m {torch_impl,jax_impl}.train [flags]`."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .data import DataError
from .loop import NonFiniteLossError
from .recipe import PRESETS, Recipe
from .run import RunDirError
from .weights import WeightsError

# Errors of the user's making (data, flags, run directory, weights, divergence): one line, no traceback.
USER_ERRORS = (DataError, RunDirError, NonFiniteLossError, WeightsError, ValueError)

# Flags that set a Recipe field of the same name.
RECIPE_FLAGS = ("depth", "iterations", "batch_size", "lr", "seed", "split_seed", "eval_every", "log_every",
                "full_train")


def build_parser(backend: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {backend}.train",
        description="Train a CIFAR-10 ResNet-(6n+2) with the recipe of He et al. 2015, §4.2.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                        help="starting point; the flags below override it")
    parser.add_argument("--depth", type=int, help="6n+2: 20, 32, 44, 56, 110 (paper preset: 32)")
    parser.add_argument("--iterations", type=int,
                        help="total iterations; the lr milestones move to 50%% and 75%% of it (paper: 64000)")
    parser.add_argument("--batch-size", type=int, help="global batch, split across devices (paper: 128)")
    parser.add_argument("--lr", type=float, help="initial learning rate (paper: 0.1)")
    parser.add_argument("--seed", type=int, help="initialisation and augmentation seed (default 0)")
    parser.add_argument("--split-seed", type=int, help="seed of the 45k/5k train/val split (default 0)")
    parser.add_argument("--full-train", action="store_true", default=None,
                        help="train on all 50,000 images (no val set, no best-val selection)")
    parser.add_argument("--eval-every", type=int, help="iterations between evaluations (default: iterations/20)")
    parser.add_argument("--log-every", type=int, help="iterations between training-loss records (default 50)")
    parser.add_argument("--data-dir", help="folder holding cifar-10-python.tar.gz or cifar-10-batches-py/ "
                                           "(else $CIFAR10_DIR, else the cache, else download)")
    parser.add_argument("--run-dir", help="where config, metrics and checkpoints go "
                                          "(default runs/<backend>-resnet<depth>-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    return parser


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The preset, overridden by every flag given. A new --iterations rescales eval_every unless it is given."""
    preset = PRESETS[args.preset]
    overrides = {name: getattr(args, name) for name in RECIPE_FLAGS if getattr(args, name, None) is not None}
    if "iterations" in overrides and "eval_every" not in overrides:
        overrides["eval_every"] = max(1, overrides["iterations"] // 20)
    return dataclasses.replace(preset, **overrides)


def run_cli(parser: argparse.ArgumentParser, run, argv=None, cleanup=None):
    """Parse, run, and turn a user error into one line on stderr and exit status 1 (no traceback)."""
    args = parser.parse_args(argv)
    try:
        return run(args)
    except USER_ERRORS as error:
        sys.exit(f"error: {error}")
    finally:
        if cleanup is not None:
            cleanup()
