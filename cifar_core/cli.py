"""The command line both trainers share: `python -m {torch_impl,jax_impl}.train [flags]`."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

from . import pipeline
from .data import DataError
from .loop import RESUMABLE_EXIT_STATUS, NonFiniteLossError, StopSignal
from .recipe import PRESETS, Recipe
from .run import RunDir, RunDirError, read_config
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
    parser.set_defaults(backend=backend)
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="starting point; the flags below override it (default: paper; with --resume: the "
                             "run's saved recipe)")
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
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its checkpoint, with the recipe (and, unless "
                             "--data-dir is given, the data folder) its config.json holds; recipe flags given "
                             "must agree with it")
    parser.add_argument("--time-budget", type=parse_duration, metavar="DURATION",
                        help="stop cleanly once this much wall-clock time has passed since the start (e.g. 2h20m, "
                             "90m, 5400): the checkpoint is saved as on SIGTERM and the exit status is "
                             f"{RESUMABLE_EXIT_STATUS}; continue with --resume. For slices under a wall-time limit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    return parser


def parse_duration(text: str) -> float:
    """Seconds from '5400', '5400s', '90m', '2h20m', '1h30m15s' or '2:20:00'."""
    text = text.strip()
    clock = re.fullmatch(r"(?:(\d+):)?(\d+):(\d+)", text)
    units = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text)
    if clock:
        h, m, s = (float(g or 0) for g in clock.groups())
    elif text and units:
        h, m, s = (float(g or 0) for g in units.groups())
    else:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: write e.g. 2h20m, 90m, 5400 (seconds) or 2:20:00")
    return 3600 * h + 60 * m + s


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The preset, overridden by every flag given. A new --iterations rescales eval_every unless it is given.
    With --resume and no --preset: the run's saved recipe with the flags given laid over it, so that RunDir
    finds any flag that contradicts the run."""
    overrides = {name: getattr(args, name) for name in RECIPE_FLAGS if getattr(args, name, None) is not None}
    if getattr(args, "resume", False) and args.preset is None:
        if not args.run_dir:
            raise RunDirError("--resume needs --run-dir: the run directory to continue.")
        return dataclasses.replace(Recipe.from_dict(read_config(args.run_dir, args.backend)["recipe"]), **overrides)
    if "iterations" in overrides and "eval_every" not in overrides:
        overrides["eval_every"] = max(1, overrides["iterations"] // 20)
    return dataclasses.replace(PRESETS[args.preset or "paper"], **overrides)


def data_dir_from_args(args: argparse.Namespace) -> str | None:
    """--data-dir; on --resume without it, the folder the run's data came from, where it still exists (else the
    usual search: $CIFAR10_DIR, the cache)."""
    if args.data_dir or not args.resume:
        return args.data_dir
    source = read_config(args.run_dir, args.backend).get("data", {}).get("source")
    folder = Path(source).parent if source else None
    return str(folder) if folder is not None and folder.is_dir() else None


def load_data(args: argparse.Namespace, recipe: Recipe, run: RunDir) -> pipeline.Pipeline:
    """The data the trainer reads; on --resume checked to be the data the run started on."""
    data = pipeline.build(recipe, data_dir_from_args(args))
    run.check_data(data.info)
    return data


def run_cli(parser: argparse.ArgumentParser, run, argv=None, cleanup=None):
    """Parse, run, and turn a user error into one line on stderr and exit status 1 (no traceback). Stop
    signals are caught from here on (StopSignal), and `run(args, stop)` polls them."""
    args = parser.parse_args(argv)
    try:
        with StopSignal(args.time_budget) as stop:
            return run(args, stop)
    except USER_ERRORS as error:
        sys.exit(f"error: {error}")
    finally:
        if cleanup is not None:
            cleanup()
