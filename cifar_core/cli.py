"""The command line both trainers share: `python -m {torch_impl,jax_impl}.train [flags]`."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path
from typing import NoReturn

from . import data, pipeline
from .data import DataError
from .loop import RESUMABLE_EXIT_STATUS, NonFiniteLossError, StopSignal
from .recipe import ARCHITECTURES, AUGMENTATIONS, DEPARTURES, DOWNSAMPLING, OPTIMIZERS, PAPER_WARMUP_LR, PRESETS, Recipe
from .run import RunDir, RunDirError, read_config
from .weights import WeightsError

# Errors of the user's making (data, flags, run directory, weights, divergence): one line, no traceback.
USER_ERRORS = (DataError, RunDirError, NonFiniteLossError, WeightsError, ValueError)
USER_ERROR_EXIT_STATUS = 2  # argparse's status for a bad command line, and ours for every error of the user's making


class UserError(SystemExit):
    """Exit status 2 after one line on stderr. The line is str(error), so a test can read it."""

    def __init__(self, message: str):
        super().__init__(USER_ERROR_EXIT_STATUS)
        self.message = message if message.startswith("error: ") else f"error: {message}"

    def __str__(self):
        return self.message


def fail(error) -> NoReturn:
    """Print `error` as one line ("error: ...") on stderr and exit with status 2, without a traceback."""
    exit_ = UserError(str(error))
    print(exit_.message, file=sys.stderr)
    raise exit_

AMP_CHOICES = ("none", "bf16")  # --amp

# Flags that set a Recipe field of the same name.
RECIPE_FLAGS = ("depth", "iterations", "batch_size", "lr", "lr_decay", "seed", "split_seed", "eval_every",
                "log_every", "full_train", *DEPARTURES)


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
    parser.add_argument("--lr-decay", type=float,
                        help="the lr's factor at each milestone (paper: 0.1; 1 keeps the lr constant)")
    warmup = parser.add_mutually_exclusive_group()
    warmup.add_argument("--warmup-lr", type=float, metavar="LR",
                        help="train at LR until the running train error (of the steps since the last training-loss "
                             "record, every --log-every) is below --warmup-until, then at --lr: the paper's ResNet-110 "
                             "warm-up (§4.2). Default with the paper preset: 0.01 at --depth 110, none at other "
                             "depths")
    warmup.add_argument("--no-warmup", action="store_true", help="no warm-up, at --depth 110 too")
    parser.add_argument("--warmup-until", dest="warmup_until_train_error", type=float, metavar="ERROR",
                        help="the train error, a fraction, below which the warm-up ends (paper: 0.8)")
    parser.add_argument("--seed", type=int, help="initialisation and augmentation seed (default 0)")
    parser.add_argument("--split-seed", type=int, help="seed of the 45k/5k train/val split (default 0)")
    parser.add_argument("--full-train", action="store_true", default=None,
                        help="train on all 50,000 images (no val set, no best-val selection)")
    parser.add_argument("--eval-every", type=int, help="iterations between evaluations (default: iterations/20)")
    parser.add_argument("--log-every", type=int, help="iterations between training-loss records (default 50)")
    parser.add_argument("--data-dir", help="folder holding cifar-10-python.tar.gz or cifar-10-batches-py/ "
                                           "(else $CIFAR10_DIR, else the cache, else download)")
    add_data_source_flags(parser)
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
    parser.add_argument("--amp", choices=AMP_CHOICES,
                        help="bf16: mixed precision, the convolutions and the linear layer in bfloat16 (PyTorch's "
                             "autocast; JAX's model dtype), parameters, optimizer state, BN statistics, the loss and "
                             "evaluation in float32; none: float32 throughout (default: none; with --resume: the "
                             "run's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    ablation = parser.add_argument_group(
        "departures from the paper", "for the ablations in results/ablations.md (scripts/ablations.py); the defaults "
        "are the paper's, and a run records the ones it departs by in config.json")
    ablation.add_argument("--optimizer", choices=OPTIMIZERS, help="sgd: SGD with momentum 0.9 (paper); adam: "
                          "Adam, betas (0.9, 0.999), eps 1e-8; both with weight decay added to the gradient")
    ablation.add_argument("--augment", choices=AUGMENTATIONS,
                          help="crop-flip: 4-pixel zero padding, a random 32x32 crop and a random flip (paper); flip: "
                               "the random flips alone; none: the images as they are")
    ablation.add_argument("--no-augment", dest="augment", action="store_const", const="none",
                          help="--augment none")
    ablation.add_argument("--no-mean-subtraction", dest="subtract_mean", action="store_const", const=False,
                          default=None,
                          help="feed pixels in [0, 1], train and test, without subtracting the mean image")
    ablation.add_argument("--test-mean-subtraction", dest="test_subtract_mean", type=yes_no, metavar="{yes,no}",
                          help="whether val and test images have the train mean subtracted, whatever training did "
                               "(default: as in training)")
    ablation.add_argument("--logit-relu", action="store_const", const=True, default=None,
                          help="a ReLU after the final linear layer (a bug: logits cannot go negative)")
    ablation.add_argument("--bn-eps", type=float, help="BN's epsilon (paper: 1e-5)")
    ablation.add_argument("--bn-momentum", type=float,
                          help="weight of the new batch in BN's running averages, PyTorch's convention (paper: 0.1)")
    ablation.add_argument("--downsample", choices=DOWNSAMPLING,
                          help="how stages 2 and 3 halve the resolution: stride (a stride-2 conv, paper), maxpool "
                               "(2x2 max-pool, then stride-1 convs), none (all stages at 32x32)")
    ablation.add_argument("--architecture", choices=ARCHITECTURES,
                          help="cifar: the paper's ResNet-(6n+2); imagenet-resnet18: torchvision's "
                               "resnet18 (torch_impl only; --depth is not used)")
    ablation.add_argument("--imagenet-head", type=int,
                          help="the ImageNet ResNet-18's outputs (default 10; 1000: resnet18() as it comes, trained "
                               "with cross-entropy on labels 0-9)")
    return parser


def yes_no(text: str) -> bool:
    if text not in ("yes", "no"):
        raise argparse.ArgumentTypeError(f"{text!r}: choose yes or no")
    return text == "yes"


def add_data_source_flags(parser: argparse.ArgumentParser) -> None:
    """--data-source and --tfds-data-dir: the trainers, both evaluates and scripts/data_info.py."""
    parser.add_argument("--data-source", choices=data.SOURCES, default=None,
                        help="archive: cifar-10-python.tar.gz or its folder (--data-dir); tfds: a prepared TensorFlow "
                             "Datasets cifar10 (--tfds-data-dir), read without TensorFlow; auto: the archive if one is "
                             "found, else a prepared TFDS copy, else the download. The same images give the same "
                             "arrays and results either way (default: auto; with --resume, the run's)")
    parser.add_argument("--tfds-data-dir",
                        help="TFDS's data folder (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets)")


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
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: write e.g. 2h20m, 90m, 5400 (seconds) "
                                         "or 2:20:00")
    return 3600 * h + 60 * m + s


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The preset, overridden by every flag given. A new --iterations rescales eval_every unless it is given;
    the paper preset warms up at the depths where the paper did (PAPER_WARMUP_LR) unless told otherwise.
    With --resume and no --preset: the run's saved recipe with the flags given laid over it, so that RunDir
    finds any flag that contradicts the run."""
    overrides = {name: getattr(args, name) for name in RECIPE_FLAGS if getattr(args, name, None) is not None}
    if getattr(args, "no_warmup", False):
        overrides["warmup_lr"] = None
    if getattr(args, "resume", False) and args.preset is None:
        if not args.run_dir:
            raise RunDirError("--resume needs --run-dir: the run directory to continue.")
        return dataclasses.replace(Recipe.from_dict(read_config(args.run_dir, args.backend)["recipe"]), **overrides)
    if "iterations" in overrides and "eval_every" not in overrides:
        overrides["eval_every"] = max(1, overrides["iterations"] // 20)
    preset = PRESETS[args.preset or "paper"]
    if args.preset in (None, "paper") and "warmup_lr" not in overrides:  # the paper's warm-up at its depth
        overrides["warmup_lr"] = PAPER_WARMUP_LR.get(overrides.get("depth", preset.depth))
    return dataclasses.replace(preset, **overrides)


def run_option(args: argparse.Namespace, name: str, default):
    """A trainer option that holds for a whole run (--amp): the flag given, else on --resume the run's (its
    config.json's options), else `default`. On --resume a flag that contradicts the run is a RunDirError, as a
    recipe flag is: a run half in one precision and half in another would be neither."""
    given = getattr(args, name)
    if not getattr(args, "resume", False):
        return default if given is None else given
    if not args.run_dir:
        raise RunDirError("--resume needs --run-dir: the run directory to continue.")
    saved = read_config(args.run_dir, args.backend).get("options", {}).get(name, default)
    if given is not None and given != saved:
        flag = "--" + name.replace("_", "-")
        raise RunDirError(f"--resume: {flag} {given} is different from the saved run's {flag} {saved}. Leave it "
                          f"out: --resume takes it from {Path(args.run_dir) / 'config.json'}.")
    return saved


def data_location(args: argparse.Namespace, saved: dict | None) -> tuple[str | None, str, str | None]:
    """(data folder, data source, TFDS data folder) to read. Flags given win; on --resume (`saved`: the run's
    config.json, as RunDir read it) the rest come from where the run's data came from: the archive's folder, or a
    TFDS copy read again from the folder it was in, where those still exist (else the usual search: $CIFAR10_DIR,
    the cache, ~/tensorflow_datasets)."""
    data_dir, source, tfds_dir = args.data_dir, args.data_source, args.tfds_data_dir
    saved_source = ((saved or {}).get("data") or {}).get("source") or ""
    if saved_source.startswith("tfds:"):
        if source is None:
            source = "tfds"
            root = Path(saved_source[len("tfds:"):]).parent.parent  # <root>/cifar10/<version>
            tfds_dir = tfds_dir or (str(root) if root.is_dir() else None)
    elif saved_source and data_dir is None:
        folder = Path(saved_source).parent
        data_dir = str(folder) if folder.is_dir() else None
    return data_dir, source or "auto", tfds_dir


def load_data(args: argparse.Namespace, recipe: Recipe, run: RunDir) -> pipeline.Pipeline:
    """The data the trainer reads; on --resume checked to be the data the run started on."""
    data_dir, source, tfds_dir = data_location(args, run.saved)
    built = pipeline.build(recipe, dataset=data.load(data_dir, source=source, tfds_data_dir=tfds_dir))
    run.check_data(built.info)
    return built


def run_cli(parser: argparse.ArgumentParser, run, argv=None, cleanup=None):
    """Parse, run, and turn a user error into one line on stderr and exit status 2 (no traceback). Stop
    signals are caught from here on (StopSignal), and `run(args, stop)` polls them."""
    args = parser.parse_args(argv)
    try:
        with StopSignal(args.time_budget) as stop:
            return run(args, stop)
    except USER_ERRORS as error:
        fail(error)
    finally:
        if cleanup is not None:
            cleanup()
