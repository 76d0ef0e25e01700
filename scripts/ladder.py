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
The trainers have no reduce-on-plateau schedule; the report instead replays torch's ReduceLROnPlateau on rung 0's
per-epoch test errors, which says whether it would have cut the lr within the 20 epochs at all. The notes do not
give their batch size either: PROBES train the attempt's first epoch at larger batches, to compare with the notes'
first epoch. Runs, resumable and run as many at a time as --jobs, are scripts/ablations.py's (run_set), under
results/ladder/<rung>/; the ImageNet rungs' checkpoints are not committed.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ablations  # noqa: E402
from ablations import REPO, Result, Variant, load_result, network_cost, noise_margin, pct  # noqa: E402

RUNS = REPO / "results" / "ladder"
REPORT = REPO / "results" / "ladder.md"
SCHEDULE = {"depth": 32, "iterations": 7813, "batch_size": 128, "eval_every": 391, "log_every": 50}
# The attempt's log as its notes give it, per epoch: mean train loss, train accuracy, test accuracy (None: not given).
NOTES = {"sgd": {1: (3.09, 0.256, 0.296), 20: (0.0016, 0.9996, 0.4172)},
         "adam": {1: (None, 0.0581, None), 20: (None, 0.5853, 0.3745)}}
ATTEMPT_TRAIN_ACCURACY, ATTEMPT_TEST_ACCURACY = NOTES["sgd"][20][1:]
REGIME = (0.02, 0.35)  # the notes' regime: running train error at most 2%, test error at least 35%


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

# The notes do not give their batch size, and rung 0 at batch 128 learns far faster in its first epoch than their
# log. One epoch of the attempt at larger batches (fewer, equally large steps per epoch) says whether the batch
# size alone could be what differs: which one, if any, lands near the notes' first epoch.
PROBE_BATCHES = (256, 512, 1024)
PROBES = tuple(Rung(f"probe-batch{b}-first-epoch", f"the attempt's first epoch at batch {b}",
                    flags({**ATTEMPT, "batch_size": str(b), "iterations": str(50_000 // b)})) for b in PROBE_BATCHES)


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
    ax.set(ylabel="error", ylim=(0, 1), xlim=(-0.6, len(finished) - 0.4),
           title="From the attempt to the paper's recipe, one change per rung")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------- rung 0 and the notes


def per_epoch(result: Result) -> dict:
    """{epoch: (mean train loss, train accuracy, test accuracy)}: an epoch is the iterations up to an evaluation
    (every 391: 50,000 images), its train figures the mean of its training records, as a log that prints an
    epoch's running loss and accuracy has them."""
    every = result.config.get("recipe", {}).get("eval_every", SCHEDULE["eval_every"])
    train, test = {}, {}
    for record in result.metrics:
        epoch = -(-record.get("step", 0) // every)
        if record.get("kind") == "train":
            train.setdefault(epoch, []).append((record["loss"], 1 - record["train_error"]))
        elif record.get("kind") == "eval" and record.get("test_error") is not None:
            test[epoch] = 1 - record["test_error"]
    return {epoch: (statistics.fmean(loss for loss, _ in rows), statistics.fmean(acc for _, acc in rows),
                    test.get(epoch)) for epoch, rows in sorted(train.items())}


def plateau_first_cut(test_errors: list, lr: float) -> int | None:
    """The epoch after which torch's ReduceLROnPlateau with its defaults (mode min, factor 0.1, patience 10,
    threshold 1e-4 relative), stepped once per epoch on these test errors, first cuts the lr; None: never. Until
    then a run under that scheduler is the constant-lr run."""
    import torch

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    for epoch, error in enumerate(test_errors, 1):
        scheduler.step(error)
        if optimizer.param_groups[0]["lr"] < lr:
            return epoch
    return None


def in_regime(result: Result) -> bool:
    return result.train_error <= REGIME[0] and result.test_error >= REGIME[1]


def regime_text(r: Result) -> str:
    """Where a run ends against the notes' regime, a count at a time."""
    counts = {f"train error at most {pct(REGIME[0])}": r.train_error <= REGIME[0],
              f"test error at least {pct(REGIME[1])}": r.test_error >= REGIME[1]}
    met = [count for count, holds in counts.items() if holds]
    missed = [count for count, holds in counts.items() if not holds]
    if not missed:
        where = f"inside the notes' regime ({' and '.join(met)})"
    elif not met:
        where = f"outside the notes' regime ({' and '.join(missed)})"
    else:
        where = f"inside the notes' regime on one count ({met[0]}), outside on the other ({missed[0]})"
    return (f"{r.variant.name} ends at {pct(r.train_error)} running train error and {pct(r.test_error)} test error, "
            f"{where}. ")


def cell(value, kind: str) -> str:
    if value is None:
        return "—"
    return (f"{value:.4f}" if value < 0.1 else f"{value:.3f}") if kind == "loss" else pct(value)


def first_epoch_text(attempt: Result | None, probes: dict) -> str:
    """How rung 0's first epoch of training compares with the notes', and which batch size's lands nearest. Only
    the training figures: they are the same whichever way the test images are fed."""
    loss, train, _ = NOTES["sgd"][1]
    if attempt is None:
        return "Rung 0b has not finished: its first epoch is not compared yet."
    mine = per_epoch(attempt)[1]
    text = (f"At batch 128 the attempt's first epoch of training ends at {cell(mine[0], 'loss')} train loss and "
            f"{pct(mine[1])} train accuracy; the notes' ended at {loss} and {pct(train)}.")
    measured = {b: per_epoch(r)[1] for b, r in probes.items() if r is not None}
    if not measured:
        return text + " The larger batches' first epochs have not been run yet (`python scripts/ladder.py run --only " \
                      + ",".join(p.name for p in PROBES) + "`)."
    nearest = min(measured, key=lambda b: abs(measured[b][1] - train))
    text += (f" Of batch {', '.join(map(str, measured))}, the first epoch nearest the notes' in train accuracy is "
             f"batch {nearest}'s: {cell(measured[nearest][0], 'loss')} and {pct(measured[nearest][1])}.")
    if all(e[1] > train for e in (mine, *measured.values())):
        text += (f" Every batch size tried, 128 to {max(measured)}, learns faster in its first epoch than the notes' "
                 "run did: the batch size alone does not account for the notes' first epoch.")
    return text


def training_records(r: Result) -> list:
    return [(m["step"], m["loss"], m["train_error"]) for m in r.metrics if m.get("kind") == "train"]


def largest_swing(r: Result) -> float:
    """The largest change of test accuracy from one epoch to the next."""
    tests = [acc for _, _, acc in per_epoch(r).values() if acc is not None]
    return max((abs(b - a) for a, b in zip(tests, tests[1:])), default=0.0)


def test_time_choice(without: Result, attempt: Result) -> str:
    """Which way of feeding the test images (0a: without the mean subtraction, 0b: with it) gives test accuracies
    nearer the notes' after epochs 1 and 20, and what else the two runs, one training tested two ways, show."""
    last = max(NOTES["sgd"])
    notes = [NOTES["sgd"][e][2] for e in (1, last)]
    tests = {}
    for r in (without, attempt):
        epochs = per_epoch(r)
        tests[r.variant.name] = [accuracy(r.test_error) if epochs.get(e, (None,) * 3)[2] is None else epochs[e][2]
                                 for e in (1, last)]
    match, other = sorted(tests, key=lambda name: sum(abs(a - n) for a, n in zip(tests[name], notes)))
    text = (f"The notes' test accuracies ({pct(notes[0])} after epoch 1, {pct(notes[1])} after epoch {last}) lie "
            f"nearer {match}'s ({pct(tests[match][0])} and {pct(tests[match][1])}) than {other}'s "
            f"({pct(tests[other][0])} and {pct(tests[other][1])}): by this measure the attempt "
            f"{'did not subtract' if match == without.variant.name else 'subtracted'} the train mean from its test "
            "images. ")
    mine, theirs = training_records(without), training_records(attempt)
    if mine == theirs:
        text += (f"The two runs' {len(mine)} training records (loss and running accuracy) are equal, bit for bit: "
                 "the choice touches the test images only. ")
    else:
        gap = max((abs(a[1] - b[1]) for a, b in zip(mine, theirs)), default=0.0)
        text += f"The two runs' training records differ by up to {gap:.2g} in loss. "
    return text + (f"From one epoch to the next the test accuracy moves by up to {100 * largest_swing(without):.1f} "
                   f"points without the mean, {100 * largest_swing(attempt):.1f} with it. ")


def what_differs(attempt: Result, same_training: bool) -> str:
    """Where rung 0 leaves the notes' regime: what the measurements here say about why."""
    epochs = per_epoch(attempt)
    (_, train1, _), (loss20, _, _) = NOTES["sgd"][1], NOTES["sgd"][max(NOTES["sgd"])]
    first, last = epochs[1], epochs[max(epochs)]
    subject = "Their training (one and the same)" if same_training else "Its training"
    text = (f"{subject} {'runs ahead of' if first[1] > train1 else 'lags behind'} the notes' in the first epoch "
            f"({pct(first[1])} train accuracy against {pct(train1)}) ")
    if loss20 < last[0]:
        text += (f"and yet fits the training images less tightly by epoch {max(epochs)} (train loss "
                 f"{cell(last[0], 'loss')} against {cell(loss20, 'loss')}). ")
    else:
        text += f"and fits the training images as tightly by epoch {max(epochs)}. "
    return text + ("Neither open choice of the notes touches that: the test-time mean subtraction changes no "
                   f"training figure{' (0a against 0b above)' if same_training else ''}, and a reduce-on-plateau "
                   "scheduler with torch's default patience of 10 cannot cut the lr until the end of epoch 12. So the "
                   "notes' run departs from the attempt as they describe it in something they do not state, from "
                   "its first epoch on. ")


def notes_section(finished: dict, runs_dir: Path) -> list:
    """Rung 0 beside the attempt's log: which test-time choice the log matches, whether rung 0 lands in the notes'
    regime, and whether the notes' reduce-on-plateau scheduler would have changed the run."""
    last = max(NOTES["sgd"])
    lines = ["", "## Rung 0 beside the attempt's log", "",
             f"Per epoch, as the notes give them: the mean train loss and train accuracy of the epoch's training "
             f"records, and the test accuracy after it (— where the notes give none).", "",
             f"| Run | Epoch 1 train loss | train accuracy | test accuracy | Epoch {last} train loss | "
             "train accuracy | test accuracy |", "|---|---|---|---|---|---|---|"]
    probes = {b: done([(None, load_result(probe, runs_dir / probe.name))]) for b, probe in zip(PROBE_BATCHES, PROBES)}
    rows = [("the notes, SGD", NOTES["sgd"]), *[(n, finished[n]) for n in (RUNGS[0].name, RUNGS[1].name)],
            ("the notes, Adam", NOTES["adam"]), (RUNGS[2].name, finished[RUNGS[2].name]),
            *[(f"{probe.name} (one epoch)", r) for probe, r in zip(PROBES, probes.values()) if r is not None]]
    for name, source in rows:
        epochs = source if isinstance(source, dict) else per_epoch(source) if source else {}
        cells = [cell(v, kind) for epoch in (1, last)
                 for v, kind in zip(epochs.get(epoch, (None,) * 3), ("loss", "accuracy", "accuracy"))]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    lines += ["", first_epoch_text(finished[RUNGS[1].name], probes)]
    without, attempt = finished[RUNGS[0].name], finished[RUNGS[1].name]
    if attempt is None:
        return lines + ["", "Rung 0b has not finished: nothing more is compared yet."]
    paragraphs, same_training = [], False
    if without is not None:
        paragraphs.append(test_time_choice(without, attempt))
        same_training = training_records(without) == training_records(attempt)
    rung_0 = [r for r in (without, attempt) if r is not None]
    paragraphs.append("".join(map(regime_text, rung_0))
                      + ("" if any(map(in_regime, rung_0)) else what_differs(attempt, same_training)))
    paragraphs.append(plateau_text(rung_0))
    return lines + [part for paragraph in paragraphs for part in ("", paragraph.strip())]


def plateau_text(runs: list) -> str:
    """What torch's ReduceLROnPlateau would have done to each run, replayed on its test error after each epoch."""
    cuts = {}
    for r in runs:
        # Up to the last epoch but one: a cut after the last changes nothing.
        errors = [1 - acc for _, _, acc in per_epoch(r).values() if acc is not None][:-1]
        cuts[r.variant.name] = plateau_first_cut(errors, r.config.get("recipe", {}).get("lr", 0.01))
    said = []
    for cut in dict.fromkeys(cuts.values()):
        names = " and ".join(name for name, c in cuts.items() if c == cut)
        said.append(f"on {names}'s test errors " + ("it never cuts the lr before the last epoch" if cut is None else
                    f"it cuts the lr tenfold after epoch {cut}, and a run under it would differ from this constant-lr "
                    "run from there on"))
    text = ("Replayed on the test error after each epoch, torch's ReduceLROnPlateau with its defaults (patience 10): "
            + "; ".join(said) + ".")
    if None in cuts.values():
        text += (" Where it never cuts, a run under the notes' scheduler is this same constant-lr run, if the "
                 "scheduler watched the test error (the notes do not say what it watched; this trainer records the "
                 "error, not the test loss).")
    return text


# ---------------------------------------------------------------------------------------------- why each rung


def train_accuracy(r: Result) -> float | None:
    return accuracy(r.train_error)


def standard_error(r: Result) -> float:
    """The standard error of a test accuracy on the run's test images (one run: no seed spread to add)."""
    return noise_margin([r.test_error], r.config.get("data", {}).get("n_test", 10_000))


def moved(r: Result, below: Result) -> str:
    """The test accuracy's change from the rung below, against the noise of one test set."""
    change = below.test_error - r.test_error
    if abs(change) <= 2 * standard_error(r):
        return f"leaves the test accuracy where it was ({pct(accuracy(r.test_error))}, within twice the noise)"
    return (f"{'raises' if change > 0 else 'lowers'} the test accuracy from {pct(accuracy(below.test_error))} to "
            f"{pct(accuracy(r.test_error))}")


def why_test_without_mean(r: Result, below: Result | None, finished: dict) -> str:
    attempt = finished[RUNGS[1].name]
    if attempt is None:
        return ""
    text = (f"The same training as 0b, tested on images without the train mean subtracted: "
            f"{pct(accuracy(r.test_error))} test accuracy against 0b's {pct(accuracy(attempt.test_error))} on the "
            "same images with it.")
    if r.test_error - attempt.test_error > 2 * standard_error(r):
        text += (" The network learned on inputs centred at 0; in eval mode BN subtracts the running means of the "
                 "training batches, not the test batch's, so the shift reaches every layer.")
    return text


def why_attempt(r: Result, below: Result | None, finished: dict) -> str:
    gap = train_accuracy(r) - accuracy(r.test_error)
    text = (f"It ends at {pct(train_accuracy(r))} train accuracy and {pct(accuracy(r.test_error))} test accuracy, "
            f"{100 * gap:.1f} points apart.")
    if gap > 0.1:
        text += (" With flips only, each epoch shows the network the same 50,000 images or their mirrors, and its "
                 "11.7M parameters fit them far better than images it has not seen.")
    return text


def why_adam(r: Result, below: Result, finished: dict) -> str:
    return (f"Adam at lr 0.001 reaches {pct(train_accuracy(r))} train and {pct(accuracy(r.test_error))} test accuracy, "
            f"where SGD at lr 0.01 reaches {pct(train_accuracy(below))} and {pct(accuracy(below.test_error))}; the "
            f"notes' Adam run ended at {pct(NOTES['adam'][20][1])} and {pct(NOTES['adam'][20][2])}.")


def why_head(r: Result, below: Result, finished: dict) -> str:
    ten, thousand = per_epoch(r).get(1), per_epoch(below).get(1)
    text = f"A 10-way head {moved(r, below)}."
    if ten and thousand:
        text += (f" It starts at a loss of ln 10 = 2.30 instead of ln 1000 = 6.91 and ends its first epoch at "
                 f"{cell(ten[0], 'loss')} train loss against {cell(thousand[0], 'loss')}.")
        if abs(ten[0] - thousand[0]) < 0.1 * thousand[0]:
            text += (" Cross-entropy pushes the 990 unused logits down within the first epoch, after which they "
                     "cost little.")
    return text


def why_crop(r: Result, below: Result, finished: dict) -> str:
    text = (f"Taking random 32x32 crops of the 4-pixel padded image {moved(r, below)}, and the train accuracy goes "
            f"from {pct(train_accuracy(below))} to {pct(train_accuracy(r))}.")
    if train_accuracy(r) < train_accuracy(below):
        text += " Shifted copies of an image are harder to fit by heart than the image itself."
    return text


def why_resnet32(r: Result, below: Result, finished: dict) -> str:
    params, gflops = network_cost(r.config.get("recipe") or {})
    params_below, gflops_below = network_cost(below.config.get("recipe") or {})
    text = (f"The CIFAR ResNet-32 {moved(r, below)} and the train accuracy from {pct(train_accuracy(below))} to "
            f"{pct(train_accuracy(r))}, with {params:,} parameters against {params_below:,} and {gflops:.3f} GFLOPs "
            f"per image against {gflops_below:.3f}. The ImageNet stem (a 7x7 stride-2 conv and a stride-2 max-pool) "
            "shrinks a 32x32 image to 8x8 before the first block; ResNet-32 keeps 32x32 through its first stage.")
    if train_accuracy(r) > train_accuracy(below) and params < params_below:
        text += (f" It fits the training images better with {params_below / params:.0f}x fewer parameters, so "
                 "what held the ImageNet net back here was not capacity.")
    return text


def why_steps(r: Result, below: Result, finished: dict) -> str:
    text = (f"lr 0.1, divided by 10 at 50% and 75% of the 20 epochs, {moved(r, below)}, with the train accuracy "
            f"from {pct(train_accuracy(below))} to {pct(train_accuracy(r))}")
    if below.test_error - r.test_error > 2 * standard_error(r):
        return text + ": a high lr early, then small steps that settle in the minimum it found."
    return text + "."


PAPER_RESNET32_ERROR = 0.0751  # Table 6


def why_paper(r: Result, below: Result, finished: dict) -> str:
    text = (f"Training for the paper's 64,000 iterations (8.2x the 20 epochs, the same milestones as fractions) "
            f"{moved(r, below)} and the train accuracy from {pct(train_accuracy(below))} to "
            f"{pct(train_accuracy(r))}. Its test error, {pct(r.test_error)}, ")
    if abs(r.test_error - PAPER_RESNET32_ERROR) <= 2 * standard_error(r):
        return text + f"is the paper's {pct(PAPER_RESNET32_ERROR)} within twice the noise of one test set."
    return text + f"differs from the paper's {pct(PAPER_RESNET32_ERROR)} by more than twice that noise."


WHY = {"0a-attempt-test-without-mean": why_test_without_mean, "0b-attempt-test-with-mean": why_attempt,
       "0c-attempt-adam": why_adam, "1-10-way-head": why_head, "2-pad-crop": why_crop, "3-resnet32": why_resnet32,
       "4-lr0.1-steps": why_steps, "5-paper-64k": why_paper}


def why_section(finished: dict) -> list:
    """Two to four sentences per finished rung, each from its numbers and the rung below's."""
    lines = ["", "## Why each rung moves the numbers", ""]
    for rung in RUNGS:
        r, below = finished[rung.name], finished.get(rung.below)
        if r is None:
            text = "not yet run."
        elif rung.below and below is None and rung.name != RUNGS[1].name:
            text = f"waits for {rung.below}, the rung it is measured against."
        else:
            text = WHY[rung.name](r, below, finished) or "waits for 0b, the same training tested with the mean."
        lines.append(f"- **{rung.name}**: {text}")
    return lines


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
    lines += notes_section(finished, Path(args.runs)) + why_section(finished)
    report.write_text("\n".join(lines) + "\n")
    print(f"wrote {report}")
    return 0


def list_rungs(args) -> int:
    ablations.list_variants(args, TRAINED + PROBES, SCHEDULE)
    for rung in RUNGS:
        if rung.linked:
            print(f"{rung.name:28s} {'linked':9s} {', '.join(rung.linked)}")
    return 0


def main(argv=None) -> int:
    args = ablations.build_parser(__doc__, RUNS, REPORT, SCHEDULE).parse_args(argv)
    commands = {"run": lambda a: ablations.run_set(a, TRAINED + PROBES, SCHEDULE, {}), "report": write_report,
                "list": list_rungs}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
