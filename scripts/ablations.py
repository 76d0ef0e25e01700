"""Answers by measurement to the questions people ask when their CIFAR ResNet does not train: each a variant of
the paper's recipe, everything else fixed, trained by torch_impl on one compressed schedule and written up in
results/ablations.md (one table row per variant, one figure per question, answers from the measured numbers).

    python scripts/ablations.py run [--time-budget 2h] [--jobs 2]     # train what is missing (resumable)
    python scripts/ablations.py report                                # results/ablations.md and the figures
    python scripts/ablations.py list                                  # the variants, their flags, their state

The schedule (SCHEDULE): ResNet-20, all 50,000 training images, 4,000 iterations at batch 128 (~10 epochs), lr
divided by 10 at 50% and 75%, test error every 250 iterations, seed 0; the baseline runs twice (seeds 0, 1), so
each claim can be set against the seed-to-seed spread. Each variant changes only what its flags say: trainer
options of both backends (cifar_core/cli.py, "departures from the paper"), or for question 6 the module
torch_impl/imagenet_resnet.py. PyTorch trains them all (JAX has every option but the ImageNet layout and computes
the same functions: parity_tests/test_ablation_variants.py).

`run` starts or resumes (--resume) every unfinished variant's run directory under results/ablations/, as many at
a time as --jobs (each pinned to a core of its own with one thread, as scripts/paper_slice.sh), each under the
time left of --time-budget; a trainer stopped by it (exit 75) or by SIGTERM continues at the next call, a finished
run is left alone, and a run whose loss turns NaN is recorded as diverged (diverged.json). Once the baseline has
finished, its final weights are evaluated on test images without the mean subtraction (question 3) into
baseline/evaluations.json. Run directories, logs, final weights and the report are committed, but for the
ImageNet ResNet-18's weights (~45 MB; .gitignore).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
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

BACKEND = "torch_impl"
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
)
BY_NAME = {v.name: v for v in VARIANTS}


@dataclasses.dataclass(frozen=True)
class Question:
    number: int
    slug: str
    title: str
    variants: tuple  # the baseline first


QUESTIONS = (
    Question(1, "optimizer", "Why does Adam at lr 0.1 not train, when SGD at 0.1 does?",
             ("baseline", "adam-lr0.1", "adam-lr0.001")),
    Question(2, "logit-relu", "Why does a ReLU after the final linear layer stop training?", ("baseline", "logit-relu")),
    Question(3, "test-mean", "Why must the per-pixel mean also be subtracted from the test images?", ("baseline",)),
    Question(4, "batchnorm", "What do BN's eps and momentum change?",
             ("baseline", "bn-eps-1e-3", "bn-eps-1e-1", "bn-momentum-0.01")),
    Question(5, "downsampling", "Why stride 2 in the first conv of a stage, and not max-pooling or no downsampling?",
             ("baseline", "maxpool-downsampling", "no-downsampling")),
    Question(6, "imagenet", "Why not the ImageNet ResNet on CIFAR-10?", ("baseline", "imagenet-resnet18")),
    Question(7, "overfitting", "Why 99.96% train accuracy and 41.7% test accuracy after 20 epochs?",
             ("baseline", "no-augment-no-mean-lr0.01")),
)


def schedule_flags(schedule: dict) -> list:
    return ["--depth", str(schedule["depth"]), "--iterations", str(schedule["iterations"]),
            "--batch-size", str(schedule["batch_size"]), "--eval-every", str(schedule["eval_every"]),
            "--log-every", str(schedule["log_every"]), "--full-train"]


def variant_recipe(variant: Variant, schedule: dict):
    """The recipe the trainer makes of the variant's flags (for the costs of a variant not yet run)."""
    from cifar_core import cli
    args = cli.build_parser(BACKEND).parse_args([*schedule_flags(schedule), "--seed", str(variant.seed), *variant.flags])
    return cli.recipe_from_args(args)


# ---------------------------------------------------------------------------------------------- state


def state_of(run: Path) -> str:
    """"finished", "diverged", "started" (resumable), "stale" (begun, but its checkpoint was not kept: the
    ImageNet ResNet-18's is too big to commit) or "new"."""
    if (run / "final.json").is_file():
        return "finished"
    if (run / "diverged.json").is_file():
        return "diverged"
    if (run / "checkpoints" / "last.pt").is_file():
        return "started"
    if (run / "config.json").is_file() or (run / "metrics.jsonl").is_file():
        return "stale"
    return "new"


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
        flags = [*schedule_flags(schedule), "--seed", str(variant.seed), *variant.flags, "--run-dir", str(run)]
    if data_dir:
        flags += ["--data-dir", data_dir]
    if budget_s is not None:
        flags += ["--time-budget", f"{int(budget_s)}"]
    return [sys.executable, "-m", f"{BACKEND}.train", *flags, "--no-progress"]


def run_set(args) -> int:
    runs_dir = Path(args.runs)
    names = args.only.split(",") if args.only else [v.name for v in VARIANTS]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        fail(f"--only: no variant {', '.join(unknown)}; the variants: {', '.join(BY_NAME)}")
    schedule = {**SCHEDULE, **{k: getattr(args, k) for k in SCHEDULE if getattr(args, k) is not None}}
    deadline = time.monotonic() + (args.time_budget if args.time_budget is not None else float("inf"))
    queue = [BY_NAME[n] for n in names if state_of(runs_dir / n) in ("new", "started", "stale")]
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
                    (run / "checkpoints" / "last.pt").unlink(missing_ok=True)  # finished: final.safetensors stays
                    print(f"{variant.name}: finished", flush=True)
                elif code in RESUMABLE:
                    print(f"{variant.name}: stopped, resumable (exit {code})", flush=True)
                    status = status or 75
                elif record_divergence(run):
                    print(f"{variant.name}: diverged (its loss became NaN or Inf; recorded in diverged.json)", flush=True)
                else:
                    print(f"{variant.name}: FAILED (exit {code}); see {run / 'train.log'}", flush=True)
                    status = 1
            time.sleep(0.5)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    baseline = runs_dir / "baseline"
    if state_of(baseline) == "finished" and not (baseline / "evaluations.json").is_file():
        evaluate_without_mean(baseline, args.data_dir)
    return status


def evaluate_without_mean(run: Path, data_dir: str | None) -> dict:
    """Question 3: the run's final weights on the test images as the recipe feeds them, and without the mean."""
    import torch

    from cifar_core import data, evaluation
    from cifar_core.run import git_info, host_info
    from torch_impl.checkpoint import load_any
    from torch_impl.train import evaluate

    weights = run / "checkpoints" / "final.safetensors"
    model, metadata = load_any(weights)
    recipe = evaluation.recipe_of(metadata, weights)
    if data_dir is None:  # the folder the run read, where it still exists; else the trainers' search
        folder = Path(json.loads((run / "config.json").read_text())["data"]["source"]).parent
        data_dir = str(folder) if folder.is_dir() else None
    errors = {}
    for key, subtract in (("test_error", True), ("test_error_without_mean_subtraction", False)):
        images, labels = evaluation.test_set(recipe, data_dir, subtract_mean=subtract)
        errors[key] = evaluate(model, images, labels, 1000, torch.device("cpu"))
    dataset = data.load(data_dir)
    splits = data.make_splits(dataset, recipe.val_fraction, recipe.split_seed, recipe.full_train)
    record = {**errors, "mean_image_average": float(splits.mean_image.mean()), "weights": str(weights.relative_to(run)),
              "command": f"python -m torch_impl.evaluate --checkpoint {weights.name} [--no-mean-subtraction]",
              "git": git_info(), "hardware": host_info(),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    (run / "evaluations.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


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


def load_results(runs_dir: Path) -> dict:
    results = {}
    for variant in VARIANTS:
        run = runs_dir / variant.name

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
        results[variant.name] = Result(variant, state_of(run), read("config.json", {}), read("final.json", {}),
                                       metrics, read("diverged.json"), read("evaluations.json"))
    return results


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


def versus(error, baseline, spread) -> str:
    """How `error` compares with the baseline's, against the seed-to-seed spread (two baseline seeds)."""
    if error is None or baseline is None:
        return "cannot be compared (a run is missing)"
    margin = max(spread or 0.0, 0.002)  # below 0.2 points nothing is claimed even if the two seeds agree closely
    if abs(error - baseline) <= margin:
        return f"within the seed-to-seed spread of the baseline ({pct(error)} vs {pct(baseline)})"
    return f"{points(error, baseline)} {'worse' if error > baseline else 'better'} than the baseline ({pct(error)} vs {pct(baseline)})"


def outcome(r: Result) -> str:
    if r.state not in ("finished", "diverged"):
        return "not run yet"
    if r.diverged:
        return f"diverged (loss {r.diverged['loss']} by step {r.diverged['between_steps'][1]:,})"
    return f"{pct(r.test_error)} test error ({pct(r.train_error)} train error)"


def answer(q: Question, results: dict, spread, costs: dict) -> str:
    """Two to four sentences from the measured numbers; the mechanism sentences say what the numbers show."""
    base = results["baseline"]
    b = base.test_error
    if base.state != "finished":
        return "The baseline has not finished yet; no answer is claimed."
    if q.number == 1:
        fast, slow = results["adam-lr0.1"], results["adam-lr0.001"]
        return (f"SGD with momentum at lr 0.1 reaches {outcome(base)}; Adam at lr 0.1 gives {outcome(fast)}, and "
                f"Adam at lr 0.001 {outcome(slow)}. SGD's step is lr times the gradient, small where the gradient "
                "is small; Adam divides the gradient by its running RMS, so each weight moves by about lr per step "
                "whatever its gradient: at 0.1 that is a large jump for weights of order 0.1 (He init of a 3x3x64 "
                "conv: std 0.06), which is why Adam's usual lr is 1e-3. "
                + (f"Adam at 0.1 is {versus(fast.test_error, b, spread)}." if fast.test_error is not None else ""))
    if q.number == 2:
        r = results["logit-relu"]
        return (f"With a ReLU on the logits the network ends at {outcome(r)}, against {outcome(base)} without"
                + (f", {versus(r.test_error, b, spread)}. " if r.test_error is not None else ". ")
                + "A ReLU sends every negative logit to 0 and passes it no gradient: the wrong classes can no longer "
                "be pushed down, only the right one up, and a class whose logit is negative for an image gets no "
                "signal from it at all; once it is negative for every image, that class stops learning.")
    if q.number == 3:
        e = base.evaluations
        if not e:
            return "The baseline's evaluation without mean subtraction has not been made yet (`run` makes it)."
        return (f"The same weights score {pct(e['test_error'])} test error on test images with the train mean "
                f"subtracted and {pct(e['test_error_without_mean_subtraction'])} on the same images without it. "
                "The network learned on inputs centred at 0; test pixels left uncentred are shifted by the mean image "
                f"(which averages {e.get('mean_image_average', float('nan')):.2f} on the 0-1 scale), and BN in eval "
                "mode subtracts the running means of the training batches, not the test batch's, so the shift "
                "passes through every layer.")
    if q.number == 4:
        rows = [results[n] for n in ("bn-eps-1e-3", "bn-eps-1e-1", "bn-momentum-0.01")]
        return (f"Against the baseline's {pct(b)} (eps 1e-5, momentum 0.1): eps 1e-3 is "
                f"{versus(rows[0].test_error, b, spread)}, eps 1e-1 is {versus(rows[1].test_error, b, spread)}, and "
                f"momentum 0.01 is {versus(rows[2].test_error, b, spread)}. eps is added to the batch variance "
                "before dividing, so it only matters for channels whose variance is near it; momentum 0.01 makes "
                "the running statistics that evaluation uses average over ~100 steps instead of ~10, so they lag "
                "behind the weights while these still change fast.")
    if q.number == 5:
        rows = {n: results[n] for n in q.variants}

        def cost(n):
            params, gflops = costs.get(n, (None, None))
            ips = rows[n].images_per_s
            return (f"{gflops:.3f} GFLOPs per image" if gflops else "FLOPs not counted") + \
                (f", {ips:,.0f} images/s" if ips else "")
        return (f"Stride 2: {outcome(base)} ({cost('baseline')}). Max-pool then stride 1: "
                f"{outcome(rows['maxpool-downsampling'])}, {versus(rows['maxpool-downsampling'].test_error, b, spread)} "
                f"({cost('maxpool-downsampling')}). No downsampling: {outcome(rows['no-downsampling'])}, "
                f"{versus(rows['no-downsampling'].test_error, b, spread)} ({cost('no-downsampling')}). Halving the "
                "resolution where the width doubles keeps the cost of every stage the same; without it stages 2 and "
                "3 run at 32x32 with 2x and 4x the filters.")
    if q.number == 6:
        r = results["imagenet-resnet18"]
        (p_cifar, f_cifar), (p_in, f_in) = costs.get("baseline", (None, None)), costs.get("imagenet-resnet18", (None, None))
        depth = base.config.get("recipe", {}).get("depth", SCHEDULE["depth"])
        sizes = (f"{p_in:,} parameters and {f_in:.3f} GFLOPs per image against the CIFAR ResNet-{depth}'s "
                 f"{p_cifar:,} and {f_cifar:.3f}" if p_in and p_cifar else "its size was not counted")
        return (f"The ImageNet ResNet-18 reaches {outcome(r)}, {versus(r.test_error, b, spread)}, with {sizes}. "
                "Its stem (7x7 stride-2 conv, 3x3 stride-2 max-pool) turns a 32x32 image into 8x8 before the first "
                "block, and its last stage runs at 1x1: built for 224x224 inputs, it throws away most of a CIFAR "
                "image's resolution at once.")
    if q.number == 7:
        r = results["no-augment-no-mean-lr0.01"]
        text = (f"Without augmentation and mean subtraction, at lr 0.01, the network ends at {outcome(r)}; the "
                f"recipe gives {outcome(base)}.")
        if r.train_error is None or r.test_error is None or base.train_error is None:
            return text
        gap, base_gap = r.test_error - r.train_error, b - base.train_error
        text += (f" The test error exceeds the train error by {points(r.test_error, r.train_error)} without the "
                 f"recipe and by {points(b, base.train_error)} with it.")
        if gap > base_gap + max(spread or 0.0, 0.002):
            text += (" Without random crops and flips the network sees each training image unchanged every epoch "
                     "and fits those exact images, which generalises worse than fitting their shifted and mirrored "
                     "versions.")
        return text
    return ""


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
        test = [(m["step"], m["test_error"]) for m in r.metrics if m.get("kind") == "eval" and m.get("test_error") is not None]
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
    spread = abs(seeds[0] - seeds[1]) if None not in seeds else None
    recipe = results["baseline"].config.get("recipe", {})
    sizes = results["baseline"].config.get("data", {})
    link = Path(os.path.relpath(runs_dir, report.parent)).as_posix()
    lines = [
        "# Ablations: the questions people ask when their CIFAR ResNet does not train",
        "",
        "Each row is one run in [`" + link + "/`](" + link + "/), trained by `torch_impl` with the paper's recipe "
        "changed only as its flags say (`python scripts/ablations.py list`). Schedule, the same for every row: "
        f"ResNet-{recipe.get('depth', SCHEDULE['depth'])} (question 6: the ImageNet ResNet-18), all "
        f"{sizes.get('n_train', 50_000):,} training images, {recipe.get('iterations', SCHEDULE['iterations']):,} "
        "iterations at batch "
        f"{recipe.get('batch_size', SCHEDULE['batch_size'])}, lr divided by 10 at 50% and 75%, seed 0. This is a "
        "compressed schedule (the paper's is 64,000 iterations), long enough to separate the variants, not to reach "
        "the paper's errors. The baseline runs twice (seeds 0 and 1): a difference smaller than theirs "
        f"({'not measured yet' if spread is None else points(seeds[0], seeds[1])}) is not claimed. Errors are on the "
        f"{sizes.get('n_test', 10_000):,} test images at the last iteration; train error is the running error of the "
        f"last {recipe.get('log_every', SCHEDULE['log_every'])} iterations, in train mode. Written by "
        "`python scripts/ablations.py report` from the run directories.",
        "",
        "| Variant | Question | Test error | Train error | Final loss | Parameters | GFLOPs/image | Images/s | "
        "Train time | Hardware |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        questions = ", ".join(str(q.number) for q in QUESTIONS if r.variant.name in q.variants) or "seed spread"
        params, gflops = costs.get(r.variant.name, (None, None))
        hw = (r.config.get("hardware") or {}).get("cpu") if r.config else None
        devices = [d for d in (r.config.get("hardware") or {}).get("devices", []) if not str(d).startswith("cpu")]
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
                     f"{pct(base_eval['test_error_without_mean_subtraction'])} | — | — | — | — | — | — | — |")
    lines.append("")
    figures_dir = report.parent / "ablations-figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    for q in QUESTIONS:
        figure = figures_dir / f"q{q.number}-{q.slug}.png"
        drawn = plot_question(q, results, figure)
        lines += [f"## {q.number}. {q.title}", "", answer(q, results, spread, costs), ""]
        if drawn:
            rel = Path(os.path.relpath(figure, report.parent)).as_posix()
            lines += [f"![Q{q.number}: test error (solid) and train error (dashed) by iteration]({rel})", ""]
    report.write_text("\n".join(lines))
    print(f"wrote {report} and {figures_dir}/")
    return 0


def list_variants(args) -> int:
    runs_dir = Path(args.runs)
    for v in VARIANTS:
        flags = " ".join([*schedule_flags(SCHEDULE), "--seed", str(v.seed), *v.flags])
        print(f"{v.name:28s} {state_of(runs_dir / v.name):9s} python -m {BACKEND}.train {flags}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report", "list"))
    parser.add_argument("--runs", default=str(RUNS), help="the run directories (default: results/ablations)")
    parser.add_argument("--out", default=str(REPORT), help="the report (default: results/ablations.md)")
    parser.add_argument("--data-dir", help="CIFAR-10 folder (default: the trainers' search)")
    parser.add_argument("--time-budget", type=parse_duration, help="stop every trainer cleanly after this long")
    parser.add_argument("--jobs", type=int, default=2, help="trainers at a time, one core each (default 2)")
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    for key in SCHEDULE:  # for tests and trials only: the report's schedule is SCHEDULE
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return {"run": run_set, "report": write_report, "list": list_variants}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
