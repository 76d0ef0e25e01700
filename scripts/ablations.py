"""Answers by measurement to the questions people ask when their CIFAR ResNet does not train: each a variant of
the paper's recipe, everything else fixed, trained by torch_impl on one compressed schedule and written up in
results/ablations.md (one table row per variant, one figure per question, answers from the measured numbers).

    python scripts/ablations.py run [--time-budget 2h] [--jobs 2]     # train what is missing (resumable)
    python scripts/ablations.py report                                # results/ablations.md and the figures
    python scripts/ablations.py list                                  # the variants, their flags, their state

The schedule (SCHEDULE): ResNet-20, all 50,000 training images, 4,000 iterations at batch 128 (~10 epochs), lr
divided by 10 at 50% and 75%, test error every 250 iterations, seed 0; the baseline runs twice (seeds 0, 1), so
each claim can be set against the seed-to-seed spread. Each variant changes only what its flags say: trainer
options of both backends (cifar_core/cli.py, "departures from the paper"), for question 6 torchvision's resnet18
(--architecture imagenet-resnet18). PyTorch trains them all (JAX has every option but the ImageNet layout and computes
the same functions: parity_tests/test_ablation_variants.py); question 8, bf16 mixed precision, is asked of both
backends, so JAX trains its runs.

`run` starts or resumes (--resume) every unfinished variant's run directory under results/ablations/, as many at
a time as --jobs (each pinned to a core of its own with one thread, as scripts/paper_slice.sh), each under the
time left of --time-budget; a trainer stopped by it (exit 75) or by SIGTERM continues at the next call, a finished
run is left alone, and a run whose loss turns NaN is recorded as diverged (diverged.json). What an answer needs
beyond the trainer's numbers is then measured once on the finished runs' final weights, into their
evaluations.json (MEASUREMENTS): the baseline on test images without the mean subtraction (question 3), the
logits a ReLU leaves at 0 (question 2), the tensors BN momentum 0.01 leaves equal to the baseline's (question 4).
A claim is made only beyond the noise: the baseline seeds' spread or, where larger, the standard error of a test
error on 10,000 images (noise_margin). Run directories, logs, final weights and the report are committed, but for
the ImageNet ResNet-18's weights (~45 MB; .gitignore).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from cifar_core.cli import fail, parse_duration  # noqa: E402
from cifar_core.data import CLASS_NAMES  # noqa: E402

BACKEND = "torch_impl"  # the variants' trainer unless one names another
RUNS = REPO / "results" / "ablations"
REPORT = REPO / "results" / "ablations.md"
SCHEDULE = {"depth": 20, "iterations": 4000, "batch_size": 128, "eval_every": 250, "log_every": 50}
RESUMABLE = (75, 128 + signal.SIGTERM, 128 + signal.SIGINT)
DIVERGED = re.compile(r"training loss became (\S+) between steps (\d+) and (\d+)")


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    label: str
    flags: tuple = ()
    seed: int = 0
    backend: str = BACKEND


VARIANTS = (
    Variant("baseline", "paper recipe (SGD, lr 0.1)"),
    Variant("baseline-seed1", "paper recipe, seed 1", seed=1),
    Variant("adam-lr0.1", "Adam, lr 0.1", ("--optimizer", "adam", "--lr", "0.1")),
    Variant("adam-lr0.001", "Adam, lr 0.001", ("--optimizer", "adam", "--lr", "0.001")),
    Variant("logit-relu", "ReLU after the final linear layer", ("--logit-relu",)),
    Variant("bn-eps-1e-3", "BN eps 1e-3", ("--bn-eps", "1e-3")),
    Variant("bn-eps-1e-1", "BN eps 1e-1", ("--bn-eps", "1e-1")),
    Variant("bn-momentum-0.01", "BN momentum 0.01 (Keras's 0.99 read as PyTorch's)", ("--bn-momentum", "0.01")),
    Variant("maxpool-downsampling", "2x2 max-pool + stride-1 conv at stages 2, 3", ("--downsample", "maxpool")),
    Variant("no-downsampling", "no downsampling (all stages at 32x32)", ("--downsample", "none")),
    Variant("imagenet-resnet18", "ImageNet ResNet-18 (7x7/2 conv, 3x3/2 max-pool, 64-512)",
            ("--architecture", "imagenet-resnet18")),
    Variant("no-augment-no-mean-lr0.01", "no augmentation, no mean subtraction, lr 0.01",
            ("--no-augment", "--no-mean-subtraction", "--lr", "0.01")),
    Variant("bf16", "bf16 mixed precision (--amp bf16)", ("--amp", "bf16")),
    Variant("bf16-seed1", "bf16 mixed precision, seed 1", ("--amp", "bf16"), seed=1),
    Variant("jax", "JAX, float32", backend="jax_impl"),
    Variant("jax-seed1", "JAX, float32, seed 1", seed=1, backend="jax_impl"),
    Variant("jax-bf16", "JAX, bf16 mixed precision", ("--amp", "bf16"), backend="jax_impl"),
    Variant("jax-bf16-seed1", "JAX, bf16 mixed precision, seed 1", ("--amp", "bf16"), seed=1, backend="jax_impl"),
)
BY_NAME = {v.name: v for v in VARIANTS}


@dataclasses.dataclass(frozen=True)
class Question:
    number: int
    slug: str
    title: str
    variants: tuple  # the baseline first; each drawn in its figure
    seed_twins: tuple = ()  # runs its answer reads too, not drawn


PRECISION_RUNS = {  # question 8: (backend, precision) -> its runs, seeds 0 and 1
    ("torch_impl", "float32"): ("baseline", "baseline-seed1"), ("torch_impl", "bf16"): ("bf16", "bf16-seed1"),
    ("jax_impl", "float32"): ("jax", "jax-seed1"), ("jax_impl", "bf16"): ("jax-bf16", "jax-bf16-seed1")}

QUESTIONS = (
    Question(1, "optimizer", "Why does Adam at lr 0.1 not train, when SGD at 0.1 does?",
             ("baseline", "adam-lr0.1", "adam-lr0.001")),
    Question(2, "logit-relu", "Why does a ReLU after the final linear layer stop training?",
             ("baseline", "logit-relu")),
    Question(3, "test-mean", "Why must the per-pixel mean also be subtracted from the test images?", ("baseline",)),
    Question(4, "batchnorm", "What do BN's eps and momentum change?",
             ("baseline", "bn-eps-1e-3", "bn-eps-1e-1", "bn-momentum-0.01")),
    Question(5, "downsampling", "Why stride 2 in the first conv of a stage, and not max-pooling or no downsampling?",
             ("baseline", "maxpool-downsampling", "no-downsampling")),
    Question(6, "imagenet", "Why not the ImageNet ResNet on CIFAR-10?", ("baseline", "imagenet-resnet18")),
    Question(7, "overfitting", "Why 99.96% train accuracy and 41.7% test accuracy after 20 epochs?",
             ("baseline", "no-augment-no-mean-lr0.01")),
    Question(8, "bf16", "Does bf16 mixed precision keep the error, in PyTorch and in JAX?",
             tuple(seed0 for seed0, _ in PRECISION_RUNS.values()),
             tuple(seed1 for _, seed1 in PRECISION_RUNS.values())),
)


def variant_flags(variant: Variant, schedule: dict) -> list:
    """The trainer flags of a variant on a schedule; an option the variant sets itself replaces the schedule's, so
    each option appears once (in the command, and in config.json's copy of it)."""
    settings = {"--depth": schedule["depth"], "--iterations": schedule["iterations"],
                "--batch-size": schedule["batch_size"], "--eval-every": schedule["eval_every"],
                "--log-every": schedule["log_every"]}
    scheduled = [part for option, value in settings.items() if option not in variant.flags
                 for part in (option, str(value))]
    return [*scheduled, "--full-train", "--seed", str(variant.seed), *variant.flags]


def variant_recipe(variant: Variant, schedule: dict):
    """The recipe the trainer makes of the variant's flags (for the costs of a variant not yet run)."""
    from cifar_core import cli
    args = cli.build_parser(variant.backend).parse_args(variant_flags(variant, schedule))
    return cli.recipe_from_args(args)


# ---------------------------------------------------------------------------------------------- state


def state_of(run: Path) -> str:
    """"finished", "diverged", "started" (resumable), "stale" (begun, but its checkpoint was not kept: the
    ImageNet ResNet-18's is too big to commit) or "new"."""
    if (run / "final.json").is_file():
        return "finished"
    if (run / "diverged.json").is_file():
        return "diverged"
    if resumable_checkpoints(run):
        return "started"
    if (run / "config.json").is_file() or (run / "metrics.jsonl").is_file():
        return "stale"
    return "new"


def resumable_checkpoints(run: Path) -> list[Path]:
    """The trainers' resumable state in `run` (PyTorch's last.pt, JAX's last.msgpack)."""
    return sorted((run / "checkpoints").glob("last.*"))


def record_divergence(run: Path) -> dict | None:
    """diverged.json from the trainer's one-line NaN error in train.log, or None when the log holds none."""
    log = (run / "train.log").read_text() if (run / "train.log").is_file() else ""
    found = list(DIVERGED.finditer(log))
    if not found:
        return None
    value, first, last = found[-1].groups()
    record = {"loss": value, "between_steps": [int(first), int(last)], "line": found[-1].group(0)}
    (run / "diverged.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


# ---------------------------------------------------------------------------------------------- run


def trainer_command(variant: Variant, run: Path, schedule: dict, data_dir: str | None, budget_s: float | None) -> list:
    if state_of(run) == "started":
        flags = ["--resume", "--run-dir", str(run)]
    else:
        flags = [*variant_flags(variant, schedule), "--run-dir", str(run)]
    if data_dir:
        flags += ["--data-dir", data_dir]
    if budget_s is not None:
        flags += ["--time-budget", f"{int(budget_s)}"]
    return [sys.executable, "-m", f"{variant.backend}.train", *flags, "--no-progress"]


def run_set(args, variants: tuple = VARIANTS, schedule: dict = SCHEDULE, measurements: dict | None = None) -> int:
    """Train `variants` (their names: run directories under args.runs) on `schedule`, then measure what
    `measurements` (default MEASUREMENTS) needs; scripts/ladder.py runs its rungs with it too."""
    runs_dir = Path(args.runs)
    by_name = {v.name: v for v in variants}
    names = args.only.split(",") if args.only else list(by_name)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        fail(f"--only: no variant {', '.join(unknown)}; the variants: {', '.join(by_name)}")
    schedule = {**schedule, **{k: getattr(args, k) for k in schedule if getattr(args, k, None) is not None}}
    deadline = time.monotonic() + (args.time_budget if args.time_budget is not None else float("inf"))
    queue = [by_name[n] for n in names if state_of(runs_dir / n) in ("new", "started", "stale")]
    cores = os.cpu_count() or 1
    jobs = max(1, min(args.jobs, cores))
    running: dict = {}  # core -> (variant, process, log file)
    stopping = []

    def stop(signum, frame):
        stopping.append(signum)
        for _, process, _ in running.values():
            process.send_signal(signal.SIGTERM)  # each trainer saves and exits; this loop then waits for it
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        while queue or running:
            free = [c for c in range(jobs) if c not in running]
            left = deadline - time.monotonic()
            while queue and free and not stopping and left > 120:
                variant, core = queue.pop(0), free.pop(0)
                run = runs_dir / variant.name
                run.mkdir(parents=True, exist_ok=True)
                if state_of(run) == "stale":  # nothing to resume from: start again, the old log kept
                    for name in ("config.json", "metrics.jsonl"):
                        (run / name).unlink(missing_ok=True)
                    with open(run / "train.log", "a") as note:
                        note.write("=== no checkpoint to resume from (not committed): started again\n")
                command = trainer_command(variant, run, schedule, args.data_dir,
                                          None if args.time_budget is None else left)
                pin = ["taskset", "-c", str(core)] if jobs > 1 else []
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                if jobs > 1:
                    env["OMP_NUM_THREADS"] = "1"
                    # JAX takes 75% of a GPU's memory at start-up unless told not to, and the next one would lack it.
                    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
                log = open(run / "train.log", "a")
                log.write(f"=== slice started {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ}: "
                          f"{' '.join(pin + command)}\n")
                log.flush()
                running[core] = (variant, subprocess.Popen(pin + command, cwd=REPO, env=env, stdout=log,
                                                           stderr=subprocess.STDOUT), log)
                print(f"{variant.name}: started on core {core}", flush=True)
            if queue and (stopping or left <= 120):  # no time for more: they start at the next call
                queue.clear()
                status = status or 75
            for core, (variant, process, log) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                log.close()
                del running[core]
                run = runs_dir / variant.name
                if code == 0:
                    for checkpoint in resumable_checkpoints(run):  # finished: final.safetensors stays
                        checkpoint.unlink()
                    print(f"{variant.name}: finished", flush=True)
                elif code in RESUMABLE:
                    print(f"{variant.name}: stopped, resumable (exit {code})", flush=True)
                    status = status or 75
                elif record_divergence(run):
                    print(f"{variant.name}: diverged (its loss became NaN or Inf; recorded in diverged.json)",
                          flush=True)
                else:
                    print(f"{variant.name}: FAILED (exit {code}); see {run / 'train.log'}", flush=True)
                    status = 1
            time.sleep(0.5)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for name, measure in (MEASUREMENTS if measurements is None else measurements).items():
        run = runs_dir / name
        if state_of(run) == "finished" and not (run / "evaluations.json").is_file():
            measure(run, args.data_dir)
    return status


# ---------------------------------------------------------------------------------------------- measurements
# What a question's answer needs beyond the trainer's own numbers, measured on a finished run's final weights
# and recorded next to them in evaluations.json (by `run`, once).


def final_weights(run: Path, data_dir: str | None):
    """(eval-mode model, its recipe, the CIFAR-10 folder the run read where it still exists, else data_dir)."""
    from cifar_core import evaluation
    from cifar_core.weights import read
    from torch_impl.checkpoint import model_from_neutral

    weights = run / "checkpoints" / "final.safetensors"
    tensors, _, metadata = read(weights)
    model = model_from_neutral(tensors, metadata, weights)
    if data_dir is None:  # the folder the run read, where it still exists; else the trainers' search
        folder = Path(json.loads((run / "config.json").read_text())["data"]["source"]).parent
        data_dir = str(folder) if folder.is_dir() else None
    return model, evaluation.recipe_of(metadata, weights), data_dir


def record_measurement(run: Path, command: str, **measured) -> dict:
    from cifar_core.run import git_info, host_info
    record = {**measured, "weights": "checkpoints/final.safetensors", "command": command, "git": git_info(),
              "hardware": host_info(),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    (run / "evaluations.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def evaluate_without_mean(run: Path, data_dir: str | None) -> dict:
    """Question 3: the final weights on the test images as the recipe feeds them, and without the mean image."""
    import torch

    from cifar_core import data, evaluation
    from torch_impl.train import evaluate

    model, recipe, data_dir = final_weights(run, data_dir)
    errors = {}
    for key, subtract in (("test_error", True), ("test_error_without_mean_subtraction", False)):
        images, labels = evaluation.test_set(recipe, data_dir, subtract_mean=subtract)
        errors[key] = evaluate(model, images, labels, 1000, torch.device("cpu"))
    splits = data.make_splits(data.load(data_dir), recipe.val_fraction, recipe.split_seed, recipe.full_train)
    return record_measurement(run, "python -m torch_impl.evaluate --checkpoint final.safetensors "
                                   "[--no-mean-subtraction]",
                              mean_image_average=float(splits.mean_image.mean()), **errors)


def count_dead_logits(run: Path, data_dir: str | None) -> dict:
    """Question 2: how many classes the ReLU'd logits left at 0 on every test image, and what the net predicts."""
    import numpy as np
    import torch

    from cifar_core import evaluation
    from cifar_core.data import NUM_CLASSES
    from cifar_core.plan import eval_batches
    from torch_impl.train import to_device

    model, recipe, data_dir = final_weights(run, data_dir)
    images, labels = evaluation.test_set(recipe, data_dir)
    with torch.no_grad():
        logits = torch.cat([model(to_device(x, torch.device("cpu"), False))
                            for x, _ in eval_batches(images, labels, 1000)]).numpy()
    predicted = logits.argmax(1)  # argmax of ten zeros is class 0
    return record_measurement(
        run, "python scripts/ablations.py run (count_dead_logits)", test_error=float((predicted != labels).mean()),
        classes_with_logit_0_on_every_test_image=[c for c in range(NUM_CLASSES) if (logits[:, c] == 0).all()],
        images_with_every_logit_0=float((logits == 0).all(1).mean()),
        predicted_class_counts=np.bincount(predicted, minlength=NUM_CLASSES).tolist())


def compare_with_baseline(run: Path, data_dir: str | None) -> dict | None:
    """Question 4: which of the final tensors equal the baseline's bit for bit (same seed, same data stream);
    None, and nothing recorded, until the baseline has finished."""
    import numpy as np

    from cifar_core import weights

    if state_of(run.parent / "baseline") != "finished":
        return None
    mine, _ = weights.load(run / "checkpoints" / "final.safetensors")
    base, _ = weights.load(run.parent / "baseline" / "checkpoints" / "final.safetensors")
    equal = sorted(k for k in mine if k in base and np.array_equal(mine[k], base[k]))
    return record_measurement(run, "python scripts/ablations.py run (compare_with_baseline)", tensors=len(mine),
                              equal_to_baseline=equal, different_from_baseline=sorted(set(mine) - set(equal)))


MEASUREMENTS = {"baseline": evaluate_without_mean, "logit-relu": count_dead_logits,
                "bn-momentum-0.01": compare_with_baseline}


# ---------------------------------------------------------------------------------------------- report


@dataclasses.dataclass
class Result:
    variant: Variant
    state: str
    config: dict
    final: dict
    metrics: list
    diverged: dict | None
    evaluations: dict | None

    @property
    def test_error(self):
        return None if self.diverged else self.final.get("final_test_error")

    @property
    def train_error(self):
        """The last training record's error (the running average of its log interval, in train mode)."""
        records = [r for r in self.metrics if r.get("kind") == "train"]
        return records[-1]["train_error"] if records and not self.diverged else None

    @property
    def final_loss(self):
        records = [r for r in self.metrics if r.get("kind") == "train"]
        return records[-1]["loss"] if records and not self.diverged else None

    @property
    def images_per_s(self):
        rates = sorted(r["images_per_s"] for r in self.metrics if r.get("kind") == "train" and r.get("images_per_s"))
        return rates[len(rates) // 2] if rates else None


def load_result(variant: Variant, run: Path) -> Result:
    """What the run directory `run` holds so far (a line cut short by a kill is skipped)."""
    def read(name, default=None):
        path = run / name
        return json.loads(path.read_text()) if path.is_file() else default
    metrics = []
    if (run / "metrics.jsonl").is_file():
        for line in (run / "metrics.jsonl").read_text().splitlines():
            try:
                metrics.append(json.loads(line))
            except ValueError:
                continue
    return Result(variant, state_of(run), read("config.json", {}), read("final.json", {}), metrics,
                  read("diverged.json"), read("evaluations.json"))


def load_results(runs_dir: Path) -> dict:
    return {variant.name: load_result(variant, runs_dir / variant.name) for variant in VARIANTS}


def network_cost(recipe_dict: dict) -> tuple[int, float]:
    """(parameters, forward GFLOPs per 32x32 image) of the network a recipe trains, counted by PyTorch's
    FlopCounterMode (a multiply-add is 2 FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cifar_core.recipe import Recipe
    from torch_impl.model import build, count_parameters

    model = build(Recipe.from_dict(recipe_dict)).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    return count_parameters(model), counter.get_total_flops() / 1e9


def pct(fraction) -> str:
    return "—" if fraction is None else f"{100 * fraction:.2f}%"


def points(a: float, b: float) -> str:
    return f"{100 * abs(a - b):.2f} points"


def noise_margin(seed_errors: list, n_test: int) -> float | None:
    """Differences from the baseline within this are not claimed: the baseline seeds' spread or, where larger, the
    standard error sqrt(p(1-p)/n) of an error rate p measured on n test images (two seeds that happen to agree
    closely say little about the noise)."""
    seeds = [e for e in seed_errors if e is not None]
    if not seeds:
        return None
    p = sum(seeds) / len(seeds)
    return max(max(seeds) - min(seeds), math.sqrt(p * (1 - p) / n_test))


def versus(error, baseline, margin) -> str:
    """How `error` compares with the baseline's, against the noise margin."""
    if error is None or baseline is None:
        return "cannot be compared (a run is missing)"
    if abs(error - baseline) <= (margin or 0.0):
        return f"within noise of the baseline ({pct(error)} vs {pct(baseline)})"
    return (f"{points(error, baseline)} {'worse' if error > baseline else 'better'} than the baseline "
            f"({pct(error)} vs {pct(baseline)})")


def outcome(r: Result) -> str:
    if r.state not in ("finished", "diverged"):
        return "not run yet"
    if r.diverged:
        return f"diverged (loss {r.diverged['loss']} by step {r.diverged['between_steps'][1]:,})"
    return f"{pct(r.test_error)} test error ({pct(r.train_error)} train error)"


def test_errors(r: Result, first=0, last=float("inf")) -> dict:
    """{iteration: test error} of the run's evaluations between two iterations."""
    return {m["step"]: m["test_error"] for m in r.metrics
            if m.get("kind") == "eval" and m.get("test_error") is not None and first <= m["step"] <= last}


def span(errors: dict) -> str:
    return f"{pct(min(errors.values()))}-{pct(max(errors.values()))}"


def fits_no_better_than_it_tests(r: Result, margin) -> bool:
    """Train error (train mode, its own data stream) as high as the test error: an optimisation failure, not
    overfitting."""
    return None not in (r.train_error, r.test_error) and r.train_error >= r.test_error - (margin or 0.0)


def schedule_iterations(base: Result) -> int:
    return base.config.get("recipe", {}).get("iterations", SCHEDULE["iterations"])


def answer_optimizer(q: Question, results: dict, margin, costs: dict) -> str:
    """Question 1: Adam against SGD at lr 0.1."""
    base = results["baseline"]
    b = base.test_error
    iterations = schedule_iterations(base)
    fast, slow = results["adam-lr0.1"], results["adam-lr0.001"]
    text = f"SGD with momentum at lr 0.1 reaches {outcome(base)}. "
    if fast.test_error is None:
        text += f"Adam at lr 0.1: {outcome(fast)}. "
    else:
        text += (f"Adam at lr 0.1 does train, but badly: {outcome(fast)}, {versus(fast.test_error, b, margin)}"
                 + ("; its train error is as high as its test error, so it fails to fit the training images, "
                    "not to generalise" if fits_no_better_than_it_tests(fast, margin) else "") + ". ")
        early, early_sgd = test_errors(fast, last=iterations // 2), test_errors(base, last=iterations // 2)
        if early and early_sgd:
            text += (f"While the lr is 0.1 (the first {iterations // 2:,} iterations) its test error stays at "
                     f"{span(early)}, SGD's at {span(early_sgd)}. ")
    return text + (f"Adam at lr 0.001, its usual rate, reaches {outcome(slow)}"
                   + (f", {versus(slow.test_error, b, margin)}" if slow.test_error is not None else "")
                   + ". SGD's step is lr times the gradient; Adam divides the gradient by its running RMS, so every "
                   "weight moves by up to about lr per step whatever its gradient: "
                   "0.1 per step for weights of order 0.06 "
                   "(the He-init std of a 3x3 conv over 64 channels).")


def answer_logit_relu(q: Question, results: dict, margin, costs: dict) -> str:
    """Question 2: a ReLU on the logits."""
    base = results["baseline"]
    b = base.test_error
    r = results["logit-relu"]
    text = (f"With a ReLU on the logits the network ends at {outcome(r)}"
            + (f", {versus(r.test_error, b, margin)}. " if r.test_error is not None else ". "))
    e = r.evaluations
    if e:
        dead = e["classes_with_logit_0_on_every_test_image"]
        counts = e["predicted_class_counts"]
        predicted = sorted((c for c in range(len(counts)) if counts[c]), key=lambda c: -counts[c])
        text += (f"Its final weights give {len(dead)} of the {len(counts)} classes ("
                 f"{', '.join(CLASS_NAMES[c] for c in dead)}) a logit of 0 on every test image, and "
                 f"{pct(e['images_with_every_logit_0'])} of the images a logit of 0 for every class, which argmax "
                 f"reads as class 0 ({CLASS_NAMES[0]}): its {sum(counts):,} predictions are "
                 f"{', '.join(f'{CLASS_NAMES[c]} {counts[c]:,}' for c in predicted)}. ")
    return text + ("A ReLU passes no gradient through a negative logit, so a class whose logit is negative on "
                   "every image gets no gradient from any image, and nothing pushes it back up.")


def answer_test_mean(q: Question, results: dict, margin, costs: dict) -> str:
    """Question 3: the test images without mean subtraction."""
    base = results["baseline"]
    e = base.evaluations
    if not e:
        return "The baseline's evaluation without mean subtraction has not been made yet (`run` makes it)."
    return (f"The same weights score {pct(e['test_error'])} test error on test images with the train mean "
            f"subtracted and {pct(e['test_error_without_mean_subtraction'])} on the same images without it. "
            "The network learned on inputs centred at 0; test pixels left uncentred are shifted by the mean image "
            f"(which averages {e.get('mean_image_average', float('nan')):.2f} on the 0-1 scale), and BN in eval "
            "mode subtracts the running means of the training batches, not the test batch's, so the shift "
            "passes through every layer.")


def answer_batchnorm(q: Question, results: dict, margin, costs: dict) -> str:
    """Question 4: BN's eps and momentum."""
    base = results["baseline"]
    b = base.test_error
    iterations = schedule_iterations(base)
    eps3, eps1, slow = (results[n] for n in ("bn-eps-1e-3", "bn-eps-1e-1", "bn-momentum-0.01"))
    rows = (("eps 1e-3", eps3), ("eps 1e-1", eps1), ("momentum 0.01", slow))
    if all(r.test_error is not None and abs(r.test_error - b) <= (margin or 0.0) for _, r in rows):
        text = (f"BN {', '.join(f'{name} ({pct(r.test_error)})' for name, r in rows[:2])} and {rows[2][0]} "
                f"({pct(rows[2][1].test_error)}) all end within noise of the baseline's {pct(b)} (eps 1e-5, "
                "momentum 0.1). ")
    else:
        text = ("Against the baseline (eps 1e-5, momentum 0.1): "
                + ", ".join(f"{name} is {versus(r.test_error, b, margin)}" for name, r in rows) + ". ")
    e = slow.evaluations
    if e:
        differ = e["different_from_baseline"]
        stats = all(k.endswith(("running_mean", "running_var")) for k in differ)
        text += (f"Momentum enters only the running statistics that evaluation uses: "
                 f"{len(e['equal_to_baseline'])} of the momentum-0.01 run's {e['tensors']} final tensors equal "
                 f"the baseline's bit for bit, and the {len(differ)} that differ "
                 + ("are all BN running means and variances. " if stats else f"include {differ[0]}. "))
    during, during_base = test_errors(slow, last=iterations - 1), test_errors(base, last=iterations - 1)
    common = [s for s in during if s in during_base]
    if common:
        worst = max(common, key=lambda s: during[s] - during_base[s])
        text += (f"The running statistics, averaged over ~100 steps instead of ~10, lag behind weights that "
                 f"still change fast: at momentum 0.01 the test error during training is up to "
                 f"{points(during[worst], during_base[worst])} higher "
                 f"({pct(during[worst])} vs {pct(during_base[worst])} at iteration {worst:,}). ")
    return text + ("eps is added to the batch variance before dividing, so it matters only for channels whose "
                   "variance is near it.")


def answer_downsampling(q: Question, results: dict, margin, costs: dict) -> str:
    """Question 5: how a stage downsamples."""
    base = results["baseline"]
    b = base.test_error
    iterations = schedule_iterations(base)
    stride, pool, none = (results[n] for n in q.variants)

    def cost(r):
        gflops, base_gflops = costs.get(r.variant.name, (None, None))[1], costs.get("baseline", (None, None))[1]
        minutes = r.final.get("train_time_s", 0) / 60
        ratio = gflops / base_gflops if gflops and base_gflops else 1.0
        return ((f"{gflops:.3f} GFLOPs per image" if gflops else "FLOPs not counted")
                + (f" ({ratio:.1f}x)" if abs(ratio - 1) > 0.05 else "")
                + (f", {minutes:.0f} min of training" if minutes else ""))
    text = (f"Stride 2 (the paper): {outcome(stride)}, at {cost(stride)}; 2x2 max-pool then a stride-1 conv: "
            f"{outcome(pool)}, {versus(pool.test_error, b, margin)}, at {cost(pool)}; no downsampling: "
            f"{outcome(none)}, {versus(none.test_error, b, margin)}, at {cost(none)}. ")
    if none.train_error is not None and base.train_error is not None and \
            none.train_error > base.train_error + (margin or 0.0):
        text += (f"Without downsampling the train error is higher too ({pct(none.train_error)} vs "
                 f"{pct(base.train_error)}): in "
                 f"{iterations:,} iterations the costlier network fits the training images worse, it does not "
                 "overfit them. ")
    return text + ("Halving the resolution where the width doubles keeps every stage's cost the same; without it "
                   "stages 2 and 3 run at 32x32 with 2x and 4x the filters.")


def answer_imagenet(q: Question, results: dict, margin, costs: dict) -> str:
    """Question 6: the ImageNet ResNet-18."""
    base = results["baseline"]
    b = base.test_error
    r = results["imagenet-resnet18"]
    (p_cifar, f_cifar), (p_in, f_in) = costs.get("baseline", (None, None)), costs.get("imagenet-resnet18", (None, None))
    depth = base.config.get("recipe", {}).get("depth", SCHEDULE["depth"])
    sizes = (f"{p_in:,} parameters ({p_in / p_cifar:.0f}x the CIFAR ResNet-{depth}'s {p_cifar:,}) and {f_in:.3f} "
             f"GFLOPs per image (ResNet-{depth}: {f_cifar:.3f})" if p_in and p_cifar else "its size not counted")
    text = f"The ImageNet ResNet-18 reaches {outcome(r)}, {versus(r.test_error, b, margin)}, with {sizes}. "
    if fits_no_better_than_it_tests(r, margin):
        text += ("Its train error is as high as its test error, so the extra parameters do not overfit: the "
                 "network fits the training images worse. ")
    return text + ("Its stem (7x7 stride-2 conv, 3x3 stride-2 max-pool) turns a 32x32 image into 8x8 before the "
                   "first block, and its last stage runs at 1x1: built for 224x224 inputs, it throws away most of a "
                   "CIFAR image's resolution at once.")


def answer_overfitting(q: Question, results: dict, margin, costs: dict) -> str:
    """Question 7: no augmentation, no mean subtraction, lr 0.01."""
    base = results["baseline"]
    b = base.test_error
    iterations = schedule_iterations(base)
    r = results["no-augment-no-mean-lr0.01"]
    text = (f"Without augmentation and mean subtraction, at lr 0.01, the network ends at {outcome(r)}; the "
            f"recipe gives {outcome(base)}.")
    if r.train_error is None or r.test_error is None or base.train_error is None:
        return text
    gap, base_gap = r.test_error - r.train_error, b - base.train_error
    text += (f" The test error exceeds the train error by {points(r.test_error, r.train_error)} without the "
             f"recipe and by {points(b, base.train_error)} with it.")
    if gap > base_gap + (margin or 0.0):
        text += (" Without random crops and flips the network sees each training image unchanged every epoch "
                 "and fits those exact images, which generalises worse than fitting their shifted and mirrored "
                 "versions.")
    recipe, n_train = base.config.get("recipe", {}), base.config.get("data", {}).get("n_train", 50_000)
    epochs = iterations * recipe.get("batch_size", SCHEDULE["batch_size"]) / n_train
    return text + (f" This schedule is {epochs:.0f} epochs, with the lr divided by 10 at 50% and 75%, so it shows "
                   "the gap opening, not how wide it is after 20; and as in the question the three changes come "
                   "together, so it does not say which costs what.")


def bf16_versus_float32(bf16: list, fp32: list, n_test: int) -> str:
    """How the mean bf16 test error compares with the mean float32 one, against the float32 runs' noise."""
    difference, margin = sum(bf16) / len(bf16) - sum(fp32) / len(fp32), noise_margin(fp32, n_test)
    if abs(difference) <= margin:
        return (f"differ by {points(difference, 0)}, within the noise ({100 * margin:.2f} points: the float32 "
                "runs' spread or the test set's standard error)")
    return (f"differ by {points(difference, 0)}, bf16 {'worse' if difference > 0 else 'better'}, beyond the noise "
            f"({100 * margin:.2f} points)")


def answer_bf16(q: Question, results: dict, margin, costs: dict) -> str:
    """Question 8: bf16 mixed precision against float32, in each backend, two seeds each."""
    n_test = results["baseline"].config.get("data", {}).get("n_test", 10_000)
    text, pooled = "", {"float32": [], "bf16": []}
    for backend, name in (("torch_impl", "PyTorch"), ("jax_impl", "JAX")):
        fp32, bf16 = ([results[n].test_error for n in PRECISION_RUNS[backend, precision]]
                      for precision in ("float32", "bf16"))
        pooled["float32"] += fp32
        pooled["bf16"] += bf16
        errors = f"bf16 {' and '.join(map(pct, bf16))}, float32 {' and '.join(map(pct, fp32))} (seeds 0 and 1)"
        if None in fp32 + bf16:
            text += f"{name}: {errors}; not every run has finished, so nothing is claimed. "
            continue
        text += f"{name}: {errors}; the means " + bf16_versus_float32(bf16, fp32, n_test) + ". "
    if None not in pooled["float32"] + pooled["bf16"]:
        # The parity suite holds the backends to one function in float32 and to bf16 errors of one size, so
        # four runs per precision measure bf16's effect better than either backend's two.
        text += ("The two backends compute one function and round it alike in bf16 (parity_tests/"
                 "test_mixed_precision.py), so their runs pool: over all four runs of each, the means " +
                 bf16_versus_float32(pooled["bf16"], pooled["float32"], n_test) + ". ")
    return text + ("Both round the inputs of every convolution and of the linear layer to bfloat16's 8 significant "
                   "bits and accumulate in float32, and keep the weights, the optimizer's state, BN's statistics and "
                   "the loss in float32, so that SGD's small updates are not rounded away. What bf16 gains in speed "
                   "is measured with each backend alone, in `results/benchmarks.md` (`python scripts/benchmark.py "
                   "steps --precision bf16`).")


ANSWERS = {1: answer_optimizer, 2: answer_logit_relu, 3: answer_test_mean, 4: answer_batchnorm, 5: answer_downsampling,
           6: answer_imagenet, 7: answer_overfitting, 8: answer_bf16}


def answer(q: Question, results: dict, margin, costs: dict) -> str:
    """Two to four sentences from the measured numbers; the mechanism sentences say what the numbers show."""
    if results["baseline"].state != "finished":
        return "The baseline has not finished yet; no answer is claimed."
    return ANSWERS[q.number](q, results, margin, costs)


def plot_question(q: Question, results: dict, out: Path) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    colours = ("black", "tab:red", "tab:blue", "tab:green", "tab:purple")
    for colour, name in zip(colours, q.variants):
        r = results[name]
        train = [(m["step"], m["train_error"]) for m in r.metrics if m.get("kind") == "train"]
        test = [(m["step"], m["test_error"]) for m in r.metrics
                if m.get("kind") == "eval" and m.get("test_error") is not None]
        if test:
            ax.plot(*zip(*test), color=colour, lw=1.8, label=f"{r.variant.label}: test")
            drawn = True
        if train:
            ax.plot(*zip(*train), color=colour, lw=1, ls="--", label=f"{r.variant.label}: train")
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    iterations = results["baseline"].config.get("recipe", {}).get("iterations", SCHEDULE["iterations"])
    for m in (iterations // 2, 3 * iterations // 4):
        ax.axvline(m, color="grey", lw=0.6, ls=":")
    ax.set(xlabel="iteration", ylabel="error", ylim=(0, 1), title=f"Q{q.number}. {q.title}")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def write_report(args) -> int:
    runs_dir, report = Path(args.runs), Path(args.out)
    results = load_results(runs_dir)
    done = [r for r in results.values() if r.state in ("finished", "diverged")]
    if not done:
        fail(f"{runs_dir}: no finished ablation run yet; train them with python scripts/ablations.py run")
    costs = {name: network_cost(r.config.get("recipe") or variant_recipe(r.variant, SCHEDULE).to_dict())
             for name, r in results.items()}
    seeds = [results[n].test_error for n in ("baseline", "baseline-seed1")]
    recipe = results["baseline"].config.get("recipe", {})
    sizes = results["baseline"].config.get("data", {})
    n_test = sizes.get("n_test", 10_000)
    margin = noise_margin(seeds, n_test)
    threads = {s.get("options", {}).get("threads") for r in done for s in r.config.get("slices", [])}
    link = Path(os.path.relpath(runs_dir, report.parent)).as_posix()
    if None in seeds:
        noise = "The baseline runs twice (seeds 0 and 1) to measure the seed spread; seed 1 has not finished yet. "
    else:
        p = sum(seeds) / 2
        noise = (f"The baseline runs twice (seeds 0 and 1: {pct(seeds[0])} and {pct(seeds[1])}). Two seeds say "
                 "little about the noise, so a difference from the baseline is claimed "
                 "only where it exceeds both their "
                 f"spread ({points(*seeds)}) and the standard error of an error rate measured on {n_test:,} test "
                 f"images (sqrt(p(1-p)/n) = {100 * math.sqrt(p * (1 - p) / n_test):.2f} points at p = {pct(p)}); "
                 "smaller ones are reported as within noise. ")
    lines = [
        "# Ablations: the questions people ask when their CIFAR ResNet does not train",
        "",
        "Each row is one run in [`" + link + "/`](" + link + "/), trained by `torch_impl` (the JAX rows of question "
        "8 by `jax_impl`) with the paper's recipe changed only as its flags say (`python scripts/ablations.py list`). "
        "Schedule, the same for every row: "
        f"ResNet-{recipe.get('depth', SCHEDULE['depth'])} (question 6: the ImageNet ResNet-18), all "
        f"{sizes.get('n_train', 50_000):,} training images, {recipe.get('iterations', SCHEDULE['iterations']):,} "
        "iterations at batch "
        f"{recipe.get('batch_size', SCHEDULE['batch_size'])}, lr divided by 10 at 50% and 75%, seed 0. This is a "
        "compressed schedule (the paper's is 64,000 iterations), long enough to separate the variants, not to reach "
        "the paper's errors. " + noise + f"Errors are on the {n_test:,} test images at the last iteration; train "
        f"error is the running error of the last {recipe.get('log_every', SCHEDULE['log_every'])} iterations, in "
        "train mode, on the run's own (augmented, unless it says otherwise) batches. Cost: parameters, and forward "
        "GFLOPs of one 32x32 image as PyTorch's FlopCounterMode counts them (convolutions and the linear layer, a "
        "multiply-add as 2); "
        + ("every run trained with one thread on one of the machine's two cores, the other core usually training "
           "another variant (`run --jobs 2`), so its images/s (the median of its log intervals) and train time "
           "depend on what ran beside it, and GFLOPs are the cost to compare across rows. "
           if threads == {1} else "images/s is the median of a run's log intervals. ")
        + "Written by `python scripts/ablations.py report` from the run directories; what a question needs beyond "
        "the trainer's numbers is measured on the final weights by `run`, into the run's `evaluations.json`.",
        "",
        "| Variant | Question | Test error | Train error | Final loss | Parameters | GFLOPs/image | Images/s | "
        "Train time | Hardware |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        questions = ", ".join(str(q.number) for q in QUESTIONS if r.variant.name in q.variants + q.seed_twins)
        if r.variant.seed:
            questions = ", ".join(filter(None, ("seed spread", questions)))
        params, gflops = costs.get(r.variant.name, (None, None))
        hw = (r.config.get("hardware") or {}).get("cpu") if r.config else None
        devices = [d for d in (r.config.get("hardware") or {}).get("devices", []) if not str(d).startswith("cpu")]
        run_threads = sorted({str(s.get("options", {}).get("threads")) for s in r.config.get("slices", [])} - {"None"})
        if hw and run_threads:
            hw += f", {'/'.join(run_threads)} thread{'' if run_threads == ['1'] else 's'}"
        state = {"finished": None, "diverged": "diverged", "started": "in progress", "new": "not run"}[r.state]
        loss = r.final_loss
        lines.append("| " + " | ".join([
            f"[{r.variant.name}]({link}/{r.variant.name}/): {r.variant.label}", questions,
            state or pct(r.test_error), pct(r.train_error) if not state else "—",
            "diverged" if r.diverged else ("—" if loss is None or state else f"{loss:.4f}"),
            "—" if params is None else f"{params:,}", "—" if gflops is None else f"{gflops:.3f}",
            "—" if r.images_per_s is None else f"{r.images_per_s:,.0f}",
            "—" if not r.final.get("train_time_s") else f"{r.final['train_time_s'] / 60:.1f} min",
            (", ".join(devices) or hw or "—")]).replace("\n", " ") + " |")
    base_eval = results["baseline"].evaluations
    if base_eval:
        lines.append(f"| [baseline]({link}/baseline/evaluations.json), tested without mean subtraction | 3 | "
                     f"{pct(base_eval['test_error_without_mean_subtraction'])} | — | — | — | — | "
                     "— | — | — |")
    lines.append("")
    figures_dir = report.parent / "ablations-figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    for q in QUESTIONS:
        figure = figures_dir / f"q{q.number}-{q.slug}.png"
        drawn = plot_question(q, results, figure)
        lines += [f"## {q.number}. {q.title}", "", answer(q, results, margin, costs), ""]
        if drawn:
            rel = Path(os.path.relpath(figure, report.parent)).as_posix()
            lines += [f"![Q{q.number}: test error (solid) and train error (dashed) by iteration]({rel})", ""]
    report.write_text("\n".join(lines))
    print(f"wrote {report} and {figures_dir}/")
    return 0


def list_variants(args, variants: tuple = VARIANTS, schedule: dict = SCHEDULE) -> int:
    runs_dir = Path(args.runs)
    for v in variants:
        flags = " ".join(variant_flags(v, schedule))
        print(f"{v.name:28s} {state_of(runs_dir / v.name):9s} python -m {v.backend}.train {flags}")
    return 0


def build_parser(doc: str, runs: Path, report: Path, schedule: dict) -> argparse.ArgumentParser:
    """The run/report/list command line, for this script and scripts/ladder.py."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report", "list"))
    parser.add_argument("--runs", default=str(runs), help=f"the run directories (default: {runs.relative_to(REPO)})")
    parser.add_argument("--out", default=str(report), help=f"the report (default: {report.relative_to(REPO)})")
    parser.add_argument("--data-dir", help="CIFAR-10 folder (default: the trainers' search)")
    parser.add_argument("--time-budget", type=parse_duration, help="stop every trainer cleanly after this long")
    parser.add_argument("--jobs", type=int, default=2, help="trainers at a time, one core each (default 2)")
    parser.add_argument("--only", help="comma-separated run names (default: all)")
    for key in schedule:  # for tests and trials only: the report's schedule is the script's
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser(__doc__, RUNS, REPORT, SCHEDULE).parse_args(argv)
    return {"run": run_set, "report": write_report, "list": list_variants}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
