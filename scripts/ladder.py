"""From a failed attempt to the paper's recipe, one change per rung: each rung trained by torch_impl, measured, and
written up in results/ladder.md (a row per rung, a figure of test and train error per rung).

    python scripts/ladder.py run [--time-budget 2h] [--jobs 2]     # train the rungs that are missing (resumable)
    python scripts/ladder.py report                                # results/ladder.md and results/ladder.png
    python scripts/ladder.py list                                  # the rungs, their flags, their state

Rung 0 is the attempt behind question 7 of results/ablations.md (99.96% train accuracy, 41.7% test accuracy after 20
epochs): torchvision's resnet18() as it comes (a 1,000-way head, trained with cross-entropy on labels 0-9), random
flips without the pad-and-crop, the train mean subtracted in training, SGD lr 0.01 with momentum 0.9 and weight decay
1e-4, batch 128, a constant lr, 20 epochs on all 50,000 training images. Whether the attempt subtracted the mean at
test time too is not known, so rung 0 runs both ways (0a without, 0b with: the numbers say which matches the
attempt); 0c is 0b with Adam at its usual lr 0.001. From 0b on each rung makes one change to the rung below it: a
10-way head, the 4-pixel pad and random crop, the CIFAR ResNet-32 instead of the ImageNet ResNet-18, lr 0.1 divided
by 10 at 50% and 75% of the run, and the paper's length (64,000 iterations), whose rung is the committed paper runs
(results/runs/torch_impl-resnet32-64k-seed*), not a run of its own.

The schedule (SCHEDULE): 20 epochs of 50,000 images at batch 128 are 7,813 iterations with --full-train (the plan
drops each epoch's last 80 images, so these are 20.03 of its 390-step epochs); --lr-decay 1 keeps the lr constant.
The trainers have no reduce-on-plateau schedule. Runs, resumable and run as many at a time as --jobs, are
scripts/ablations.py's (run_set), under results/ladder/<rung>/; the ImageNet rungs' checkpoints are not committed.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ablations  # noqa: E402
from ablations import REPO, Result, Variant, load_result, network_cost, pct  # noqa: E402

RUNS = REPO / "results" / "ladder"
REPORT = REPO / "results" / "ladder.md"
SCHEDULE = {"depth": 32, "iterations": 7813, "batch_size": 128, "eval_every": 391, "log_every": 50}
ATTEMPT_TRAIN_ACCURACY, ATTEMPT_TEST_ACCURACY = 0.9996, 0.417  # as reported for the attempt (results/ablations.md, Q7)


@dataclasses.dataclass(frozen=True)
class Rung(Variant):
    below: str | None = None  # the rung it changes one thing of, and whose test accuracy its gain is against
    linked: tuple = ()  # run directories (from the repository's root) that are this rung, instead of a run of its own


def flags(settings: dict) -> tuple:
    """Trainer flags from {option: value} (option spelt with underscores; None: the trainer's default)."""
    return tuple(part for key, value in settings.items() if value is not None
                 for part in (f"--{key.replace('_', '-')}", value))


# Each rung's settings: the one below's, one thing changed.
ATTEMPT = {"architecture": "imagenet-resnet18", "imagenet_head": "1000", "augment": "flip", "lr": "0.01",
           "lr_decay": "1"}
TEN_WAY = {**ATTEMPT, "imagenet_head": None}
CROP = {**TEN_WAY, "augment": "crop-flip"}
RESNET32 = {**CROP, "architecture": None, "augment": None}
STEPS = {**RESNET32, "lr": None, "lr_decay": None}

RUNGS = (
    Rung("0a-attempt-test-without-mean", "the attempt: resnet18() as it comes, flips, SGD lr 0.01 constant; test "
         "images without the mean subtraction", flags({**ATTEMPT, "test_mean_subtraction": "no"})),
    Rung("0b-attempt-test-with-mean", "test images with the train mean subtracted, as in training", flags(ATTEMPT),
         below="0a-attempt-test-without-mean"),
    Rung("0c-attempt-adam", "Adam at lr 0.001 instead of SGD", flags({**ATTEMPT, "optimizer": "adam", "lr": "0.001"}),
         below="0b-attempt-test-with-mean"),
    Rung("1-10-way-head", "a 10-way head instead of 1,000", flags(TEN_WAY), below="0b-attempt-test-with-mean"),
    Rung("2-pad-crop", "4-pixel zero padding and a random 32x32 crop", flags(CROP), below="1-10-way-head"),
    Rung("3-resnet32", "the CIFAR ResNet-32 instead of the ImageNet ResNet-18", flags(RESNET32), below="2-pad-crop"),
    Rung("4-lr0.1-steps", "lr 0.1, divided by 10 at 50% and 75%", flags(STEPS), below="3-resnet32"),
    Rung("5-paper-64k", "the paper's length: 64,000 iterations (~164 epochs)", below="4-lr0.1-steps",
         linked=("results/runs/torch_impl-resnet32-64k-seed0", "results/runs/torch_impl-resnet32-64k-seed1")),
)
TRAINED = tuple(r for r in RUNGS if not r.linked)


# ---------------------------------------------------------------------------------------------- report


def load_rungs(runs_dir: Path) -> dict:
    """Rung name -> [(run directory, Result)]: its own run, or each of its linked runs that exists."""
    def runs(rung):
        return [REPO / path for path in rung.linked
                if (REPO / path).is_dir()] if rung.linked else [runs_dir / rung.name]
    return {rung.name: [(run, load_result(rung, run)) for run in runs(rung)] for rung in RUNGS}


def done(runs: list) -> Result | None:
    """The rung's first finished (or diverged) run."""
    return next((r for _, r in runs if r.state in ("finished", "diverged")), None)


def accuracy(error) -> float | None:
    return None if error is None else 1 - error


def gain(result: Result, below: Result | None) -> str:
    if below is None or None in (result.test_error, below.test_error):
        return "—"
    return f"{100 * (below.test_error - result.test_error):+.2f} points"


def cost(result: Result) -> list:
    """Parameters, GFLOPs per image, iterations (epochs), train time and hardware of a finished rung."""
    params, gflops = network_cost(result.config.get("recipe") or {})
    recipe, sizes = result.config.get("recipe", {}), result.config.get("data", {})
    iterations = result.final.get("steps_completed") or recipe.get("iterations")
    epochs = iterations * recipe.get("batch_size", 128) / sizes.get("n_train", 50_000)
    hardware = result.config.get("hardware") or {}
    devices = [d for d in hardware.get("devices", []) if not str(d).startswith("cpu")]
    minutes = (result.final.get("train_time_s") or 0) / 60
    time = f"{minutes / 60:.1f} h" if minutes > 90 else f"{minutes:.1f} min"
    return [f"{params:,}", f"{gflops:.3f}", f"{iterations:,} ({epochs:.0f})", time,
            ", ".join(devices) or hardware.get("cpu") or "—"]


def row(rung: Rung, runs: list, below: Result | None, report_dir: Path) -> str:
    first = done(runs)
    name = rung.name
    if runs and runs[0][1].state != "new":
        name = f"[{rung.name}]({Path(os.path.relpath(runs[0][0], report_dir)).as_posix()}/)"
    if first is None:
        state = "in progress" if any(r.state in ("started", "stale") for _, r in runs) else "not yet run"
        return "| " + " | ".join([name, rung.label, "—", state, *["—"] * 6]) + " |"
    if first.diverged:
        return "| " + " | ".join([name, rung.label, "—", "diverged", "—", *cost(first)]) + " |"
    test = pct(accuracy(first.test_error)) + "".join(
        f" (seed {r.config.get('recipe', {}).get('seed')}: {pct(accuracy(r.test_error))})"
        for _, r in runs[1:] if r.test_error is not None)
    return "| " + " | ".join([name, rung.label, pct(accuracy(first.train_error)), test, gain(first, below),
                              *cost(first)]) + " |"


def plot(finished: dict, out: Path) -> bool:
    """Test error per rung with the running train error beside it; False when no rung has finished."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if all(r is None or r.test_error is None for r in finished.values()):
        return False
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for k, r in enumerate(finished.values()):
        if r is None or r.test_error is None:
            ax.text(k, 0.02, "not yet run", rotation=90, ha="center", va="bottom", fontsize=7, color="grey")
            continue
        ax.bar(k - 0.2, r.test_error, 0.4, color="tab:red", label="test error" if k == 0 else None)
        ax.bar(k + 0.2, r.train_error or 0, 0.4, color="tab:grey")
    ax.legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:red", "tab:grey")],
              ["test error", "train error (running, in train mode)"], fontsize=7)
    ax.set_xticks(range(len(finished)), list(finished), rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="error", ylim=(0, 1), title="From the attempt to the paper's recipe, one change per rung")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def write_report(args) -> int:
    report = Path(args.out)
    runs = load_rungs(Path(args.runs))
    finished = {name: done(rs) for name, rs in runs.items()}
    lines = [
        "# The ladder: from a failed attempt to the paper's recipe, one change per rung",
        "",
        f"The attempt reported {pct(ATTEMPT_TRAIN_ACCURACY)} train accuracy and {pct(ATTEMPT_TEST_ACCURACY)} test "
        "accuracy after 20 epochs: torchvision's `resnet18()` as it comes (a 1,000-way head, trained with "
        "cross-entropy on labels 0-9), random flips only, the train mean subtracted in training, SGD lr 0.01 with "
        "momentum 0.9 and weight decay 1e-4, batch 128, a constant lr, all 50,000 training images. Rung 0 repeats it "
        "with the test images fed without (0a) and with (0b) the mean subtraction, since the attempt does not say "
        "which; 0c is 0b with Adam. From 0b on, each rung changes one thing of the rung below it. Every rung but the "
        f"last trains {SCHEDULE['iterations']:,} iterations (20 epochs) with `torch_impl` and seed 0 "
        "(`python scripts/ladder.py list` gives the flags); the last is the committed 64,000-iteration paper runs "
        "(seed 0; seed 1 in brackets). Train accuracy is the running accuracy of the last "
        f"{SCHEDULE['log_every']} iterations, in train mode, on the rung's own augmented batches; test accuracy is "
        "on the 10,000 test images at the last iteration; the gain is in test accuracy over the rung below. Cost: "
        "parameters, forward GFLOPs of one 32x32 image (PyTorch's FlopCounterMode, a multiply-add as 2), "
        "iterations (epochs), train time and hardware. Written by `python scripts/ladder.py report`.",
        "",
        "| Rung | Change | Train accuracy | Test accuracy | Gain | Parameters | GFLOPs/image | Iterations (epochs) | "
        "Train time | Hardware |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [row(rung, runs[rung.name], finished.get(rung.below), report.parent) for rung in RUNGS]
    figure = report.with_suffix(".png")
    report.parent.mkdir(parents=True, exist_ok=True)
    if plot(finished, figure):
        lines += ["", f"![Test error (red) and train error (grey) per rung]({figure.name})"]
    report.write_text("\n".join(lines) + "\n")
    print(f"wrote {report}")
    return 0


def list_rungs(args) -> int:
    ablations.list_variants(args, TRAINED, SCHEDULE)
    for rung in RUNGS:
        if rung.linked:
            print(f"{rung.name:28s} {'linked':9s} {', '.join(rung.linked)}")
    return 0


def main(argv=None) -> int:
    args = ablations.build_parser(__doc__, RUNS, REPORT, SCHEDULE).parse_args(argv)
    commands = {"run": lambda a: ablations.run_set(a, TRAINED, SCHEDULE, {}), "report": write_report,
                "list": list_rungs}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
