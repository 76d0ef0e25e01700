"""Summarise finished runs beside He et al. 2015 (Table 6, Figure 6): a Markdown table and one error-curve figure
per comparison group (same depth and iterations, both backends overlaid).

    python scripts/report.py [--runs results/runs] [--out results]

Reads every run directory under --runs (config.json, metrics.jsonl, final.json; see cifar_core/run.py), writes
--out/README.md, --out/curves-resnet<depth>-<iterations>it.png and --out/error-vs-depth.png, and prints what it
wrote. README.md opens with a summary by depth of the finished paper-protocol runs (Table 6's: 64,000 iterations on
all 50,000 training images, nothing departing from the recipe): each backend's median, range and seed count
beside the paper's figure, and the difference of the backends' means with its 95% Welch interval. A run without
final.json (unfinished, or still running) is listed under "In progress" with the step it reached and its latest
test error, with its curves so far in --out/progress-curves-resnet<depth>-<iterations>it.png, never in the
results table or the results' figures. Each run's slices (the processes that trained it: a
first start and every --resume, with their hardware, commit and wall time) are listed too. The output depends
only on the run directories, so running it again on the same runs gives the same README.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cifar_core.recipe import Recipe  # noqa: E402

PAPER_ITERATIONS = 64_000  # He et al. 2015, Sec. 4.2: lr 0.1, divided by 10 at 32k and 48k, stop at 64k
PAPER_MILESTONE_FRACTIONS = (0.5, 0.75)
# He et al. 2015, Table 6: CIFAR-10 test error (%) of the ResNets (option A: zero-padding identity shortcuts).
PAPER_TEST_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
PAPER_NOTES = {110: "best of 5 runs; mean 6.61±0.16"}
PAPER_RECIPE = {"batch_size": 128, "lr": 0.1, "lr_decay": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
BACKEND_COLOURS = {"torch_impl": "tab:red", "jax_impl": "tab:blue"}
OTHER_COLOURS = ("tab:green", "tab:purple", "tab:orange", "tab:brown")
RUN_MARKERS = ("o", "s", "^", "D")


class Run:
    """One run directory: its config, final summary ({} while unfinished) and metrics records."""

    def __init__(self, path: Path, config: dict, final: dict, metrics: list):
        self.path, self.config, self.final, self.metrics = path, config, final, metrics
        self.name = path.name
        recipe = config.get("recipe", {})
        self.recipe = recipe
        self.backend = final.get("backend") or config.get("backend") or "?"
        self.depth = int(final.get("depth") or recipe.get("depth"))
        self.iterations = int(final.get("iterations") or recipe.get("iterations"))
        self.departures = departures(recipe)

    @property
    def sort_key(self):
        return (self.depth, self.iterations, self.backend, self.recipe.get("seed", 0), self.name)

    @property
    def group(self) -> tuple:
        return (self.depth, self.iterations)

    @property
    def slices(self) -> list:
        """The processes that trained the run: config["slices"], or for a run recorded before slices were,
        its first start and each entry of config["resumed"] (without their steps)."""
        if self.config.get("slices"):
            return self.config["slices"]
        first = {k: self.config.get(k) for k in ("command", "git", "hardware")}
        return [{**first, "started": self.config.get("created")}, *self.config.get("resumed", [])]

    @property
    def last_step(self) -> int:
        return max((r.get("step", 0) for r in self.metrics), default=0)


def departures(recipe: dict) -> dict:
    """What a run's recipe changes from the paper's at its depth, name -> value: the fixed hyperparameters
    (PAPER_RECIPE), the ablations' departures and the warm-up (Recipe.departures; a run recorded before those
    existed has none)."""
    fixed = {k: recipe[k] for k, v in PAPER_RECIPE.items() if k in recipe and recipe[k] != v}
    return {**fixed, **Recipe.from_dict(recipe).departures()}


def read_jsonl(path: Path) -> list:
    """Records of metrics.jsonl; a line that does not parse (a record being written) is left out."""
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def load_runs(runs_dir: Path) -> tuple[list, list, list]:
    """(finished runs, unfinished runs, [(name, why skipped)]); runs sorted by depth, iterations, backend, seed,
    name."""
    runs, unfinished, skipped = [], [], []
    candidates = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    for path in candidates:
        if not any((path / f).exists() for f in ("config.json", "metrics.jsonl", "final.json")):
            continue  # not a run directory
        try:
            final = json.loads((path / "final.json").read_text()) if (path / "final.json").is_file() else {}
            config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
            run = Run(path, config, final, read_jsonl(path / "metrics.jsonl"))
        except (OSError, ValueError, TypeError) as error:
            skipped.append((path.name, f"unreadable ({type(error).__name__}: {error})"))
            continue
        (runs if final else unfinished).append(run)
    runs.sort(key=lambda r: r.sort_key)
    unfinished.sort(key=lambda r: r.sort_key)
    return runs, unfinished, skipped


# ---------------------------------------------------------------- formatting


def pct(fraction) -> str:
    return "—" if fraction is None else f"{100 * fraction:.2f}%"


def schedule_label(iterations: int, milestones=None) -> str:
    """'64,000 (paper schedule)', '2,000 (compressed 32×)'; milestones are noted when not at 50%/75%."""
    if iterations == PAPER_ITERATIONS:
        label = f"{iterations:,} (paper schedule)"
    else:
        factor = PAPER_ITERATIONS / iterations
        k = f"{factor:.0f}" if abs(factor - round(factor)) < 1e-9 else f"{factor:.3g}"
        word = "compressed" if iterations < PAPER_ITERATIONS else "extended"
        if word == "extended":
            ratio = iterations / PAPER_ITERATIONS
            k = f"{ratio:.0f}" if abs(ratio - round(ratio)) < 1e-9 else f"{ratio:.3g}"
        label = f"{iterations:,} ({word} {k}×)"
    if milestones is not None:
        expected = [int(round(f * iterations)) for f in PAPER_MILESTONE_FRACTIONS]
        if list(milestones) != expected:
            label += f"; lr ÷10 at {'/'.join(f'{m:,}' for m in milestones)}"
    return label


def schedule_title(iterations: int) -> str:
    if iterations == PAPER_ITERATIONS:
        return f"{iterations:,} iterations, paper schedule"
    return f"{iterations:,} iterations, {schedule_label(iterations).split('(', 1)[1].rstrip(')')} schedule"


def duration(seconds) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


# jax's str(device) with its device_kind after it ('gpu:0 NVIDIA H200'), or an id alone ('cuda:0', 'TPU_0(...)')
_GENERIC_DEVICE = re.compile(r"^([A-Za-z]+)[:_]?\d+\b(?:\s+(\S.*))?")


def hardware(hw: dict) -> str:
    """CPU model (and core count) for a CPU run, otherwise the accelerator name(s) with their count."""
    devices = hw.get("devices") or []
    accelerators = [d for d in devices if not str(d).lower().startswith("cpu")]
    if not accelerators:
        cores = hw.get("cpu_count")
        return f"{hw.get('cpu', 'CPU')}" + (f" ({cores} cores)" if cores else "")
    names = []
    for d in accelerators:
        m = _GENERIC_DEVICE.match(str(d))
        if not m:
            names.append(str(d))
        else:
            names.append(m.group(2) or f"{m.group(1)} device (model not recorded)")
    return ", ".join(f"{n}× {name}" for name, n in sorted(Counter(names).items()))


def commit(git: dict) -> str:
    sha = (git or {}).get("commit")
    if not sha:
        return "unknown"
    return sha[:7] + ("+dirty" if git.get("dirty") else "")


def cell(text) -> str:
    return str(text).replace("|", "\\|")


# ---------------------------------------------------------------- table

COLUMNS = ("Run", "Backend", "Depth", "Iterations", "Train images", "Seed", "Best val error (step)",
           "Test error @ best val", "Final test error", "Paper test error (Table 6)", "Wall time (train)",
           "Images/s", "Hardware", "Commit")


def train_images_cell(run: Run) -> str:
    n_train = run.final.get("n_train_images") or run.config.get("data", {}).get("n_train")
    if n_train is None:
        return "—"
    return f"{n_train:,}" + (" (train+val)" if run.recipe.get("full_train") else "")


def table_row(run: Run, out_dir: Path) -> list:
    f, recipe = run.final, run.recipe
    link = Path(os.path.relpath(run.path, out_dir)).as_posix()
    iterations = schedule_label(run.iterations, recipe.get("milestones"))
    differ = [f"{k}={v}" for k, v in run.departures.items()]
    if differ:
        iterations += f"; {', '.join(differ)}"
    steps = f.get("steps_completed")
    if steps is not None and steps != run.iterations:
        iterations += f"; stopped at {steps:,}"
    train_images = train_images_cell(run)
    best = pct(f.get("best_val_error"))
    if f.get("best_val_error") is not None and f.get("best_val_step") is not None:
        best += f" ({f['best_val_step']:,})"
    paper = PAPER_TEST_ERROR.get(run.depth)
    paper_cell = "—" if paper is None else f"{paper:.2f}%" + (
        f" ({PAPER_NOTES[run.depth]})" if run.depth in PAPER_NOTES else "")
    wall = duration(f.get("wall_time_s"))
    if f.get("train_time_s") is not None:
        wall += f" ({duration(f['train_time_s'])})"
    ips = f.get("images_per_s")
    hw, git = slices_hardware_and_commits(run)
    return [f"[{run.name}]({link}/)", run.backend, str(run.depth), iterations, train_images,
            str(recipe.get("seed", "—")), best, pct(f.get("best_val_test_error")), pct(f.get("final_test_error")),
            paper_cell, wall, "—" if ips is None else f"{ips:,.1f}", hw, git]


def slices_hardware_and_commits(run: Run) -> tuple[str, str]:
    """The run's hardware and commit, with those of any slice that differs from its first (a run may span
    machines)."""
    first, *later = run.slices
    hw, git = hardware(first.get("hardware") or {}), commit(first.get("git"))
    if later:
        other_hw = sorted({hardware(s.get("hardware") or {}) for s in later} - {hw})
        other_git = sorted({commit(s.get("git")) for s in later} - {git})
        hw += f"; {len(run.slices)} slices" + (f", also on {', '.join(other_hw)}" if other_hw else "")
        if other_git:
            git += f" (resumed at {', '.join(other_git)})"
    return hw, git


def latest_test_error(run: Run) -> str:
    evals = [r for r in run.metrics if r.get("kind") == "eval" and r.get("test_error") is not None]
    return "—" if not evals else f"{pct(evals[-1]['test_error'])} ({evals[-1]['step']:,})"


IN_PROGRESS_COLUMNS = ("Run", "Backend", "Depth", "Iterations", "Train images", "Seed", "Steps done",
                       "Latest test error (step)", "Wall time so far", "Images/s (median)",
                       "Remaining steps at that rate",
                       "Hardware", "Commit")


def progress_so_far(run: Run) -> tuple:
    """(wall time so far, median training images/s, seconds the remaining steps take at that rate) of an
    unfinished run, each None when its metrics do not tell."""
    wall = max((r.get("wall_time") or 0 for r in run.metrics), default=None)
    rates = sorted(r["images_per_s"] for r in run.metrics if r.get("kind") == "train" and r.get("images_per_s"))
    rate = rates[len(rates) // 2] if rates else None
    remaining = None if not rate else (run.iterations - run.last_step) * run.recipe.get("batch_size", 128) / rate
    return wall, rate, remaining


def in_progress_row(run: Run, out_dir: Path) -> list:
    link = Path(os.path.relpath(run.path, out_dir)).as_posix()
    recipe = run.recipe
    train_images = train_images_cell(run)
    wall, rate, remaining = progress_so_far(run)
    hw, git = slices_hardware_and_commits(run)
    return [f"[{run.name}]({link}/)", run.backend, str(run.depth),
            schedule_label(run.iterations, recipe.get("milestones")),
            train_images, str(recipe.get("seed", "—")), f"{run.last_step:,} of {run.iterations:,}",
            latest_test_error(run), duration(wall), "—" if rate is None else f"{rate:,.1f}",
            "—" if remaining is None else f"{duration(remaining)} of training", hw, git]


SLICE_COLUMNS = ("Run", "Slice", "Steps", "Started (UTC)", "Wall time", "Ended by", "Hardware", "Commit")


def slice_rows(run: Run) -> list:
    rows = []
    for i, s in enumerate(run.slices, 1):
        steps = "—" if s.get("from_step") is None else \
            f"{s['from_step']:,} → " + ("?" if s.get("to_step") is None else f"{s['to_step']:,}")
        started = (s.get("started") or "—").replace("T", " ").split("+")[0]
        rows.append([run.name, str(i), steps, started, duration(s.get("wall_time_s")),
                     s.get("stopped") or "still running, or killed", hardware(s.get("hardware") or {}),
                     commit(s.get("git"))])
    return rows


def markdown_table(rows: list, columns: tuple = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- summary by depth

BACKEND_NAMES = {"torch_impl": "PyTorch", "jax_impl": "JAX"}
SUMMARY_COLUMNS = ("Depth", "Paper (Table 6)", "PyTorch: median (min–max, n)", "JAX: median (min–max, n)",
                   "PyTorch − JAX: difference of means (95% interval)")
SUMMARY_FIGURE = "error-vs-depth.png"
# Student's t, two-sided 95%, by degrees of freedom: used without scipy, with Welch's fractional df rounded down to
# the nearest listed (a slightly wider interval, never a narrower one).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def paper_protocol(run: Run) -> bool:
    """Table 6's protocol: all 64,000 iterations done, lr drops at 32k and 48k, all 50,000 training images, and
    nothing departing from the paper's recipe at the run's depth."""
    f = run.final
    return (f.get("steps_completed") == f.get("iterations") == PAPER_ITERATIONS
            and f.get("final_test_error") is not None
            and list(run.recipe.get("milestones") or [32_000, 48_000]) == [32_000, 48_000]
            and bool(run.recipe.get("full_train")) and not run.departures)


def errors_by_depth(runs: list) -> dict:
    """{depth: {backend: [final test error (%) of each paper-protocol run, in seed order]}}."""
    table: dict = {}
    for run in sorted(filter(paper_protocol, runs), key=lambda r: r.sort_key):
        table.setdefault(run.depth, {}).setdefault(run.backend, []).append(100 * run.final["final_test_error"])
    return dict(sorted(table.items()))


def spread(errors: list) -> str:
    """'7.42% (7.21–7.74%, n=3)': median, range and count of a backend's final test errors (%)."""
    if not errors:
        return "—"
    return f"{statistics.median(errors):.2f}% ({min(errors):.2f}–{max(errors):.2f}%, n={len(errors)})"


def t_975(df: float) -> float:
    try:
        from scipy import stats
    except ImportError:
        return T_975[max(k for k in T_975 if k <= max(df, 1))]
    return float(stats.t.ppf(0.975, df))


def welch_interval(a: list, b: list) -> tuple | None:
    """(mean(a) - mean(b), low, high): the difference of means with its 95% Welch t interval; None unless each
    side has at least 2 values."""
    if len(a) < 2 or len(b) < 2:
        return None
    difference = statistics.mean(a) - statistics.mean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:  # no spread on either side: the difference is all there is
        return difference, difference, difference
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_975(df) * math.sqrt(va + vb)
    return difference, difference - half, difference + half


def difference_cell(interval: tuple | None) -> str:
    if interval is None:
        return "n/a"
    difference, low, high = interval
    return f"{difference:+.2f} points ({low:+.2f} to {high:+.2f})"


def verdict(depth: int, torch_errors: list, jax_errors: list) -> str:
    """One sentence: whether the backends' final test errors at `depth` differ beyond seed noise."""
    interval = welch_interval(torch_errors, jax_errors)
    if interval is None:
        return (f"ResNet-{depth}: too few seeds to tell a difference from seed noise (PyTorch {len(torch_errors)}, "
                f"JAX {len(jax_errors)}; the interval needs at least 2 a side).")
    difference, low, high = interval
    seeds = f"{len(torch_errors)} and {len(jax_errors)} seeds"
    if low <= 0 <= high:
        return (f"ResNet-{depth}: no detectable difference between the backends: the 95% interval of PyTorch's mean "
                f"minus JAX's ({low:+.2f} to {high:+.2f} points) contains 0, so the gap of {difference:+.2f} points is "
                f"within seed noise ({seeds}).")
    higher, lower = ("PyTorch", "JAX") if difference > 0 else ("JAX", "PyTorch")
    return (f"ResNet-{depth}: {higher}'s mean test error is higher than {lower}'s by {abs(difference):.2f} points, "
            f"beyond seed noise: the 95% interval of PyTorch's mean minus JAX's ({low:+.2f} to {high:+.2f} points) "
            f"excludes 0 ({seeds}).")


def paper_cell(depth: int) -> str:
    paper = PAPER_TEST_ERROR.get(depth)
    if paper is None:
        return "—"
    return f"{paper:.2f}%" + (f" ({PAPER_NOTES[depth]})" if depth in PAPER_NOTES else "")


def summary_lines(runs: list, figure: str | None) -> list:
    """The summary by depth: its table, one verdict per depth, and the error-vs-depth figure (a link `figure`,
    relative to where the lines go; None: no figure)."""
    table = errors_by_depth(runs)
    if not table:
        return ["No finished paper-protocol run (64,000 iterations on all 50,000 training images, the paper's "
                "recipe) yet."]
    rows = [[str(depth), paper_cell(depth), spread(errors.get("torch_impl", [])), spread(errors.get("jax_impl", [])),
             difference_cell(welch_interval(errors.get("torch_impl", []), errors.get("jax_impl", [])))]
            for depth, errors in table.items()]
    lines = [markdown_table(rows, SUMMARY_COLUMNS), ""]
    lines += [verdict(depth, errors.get("torch_impl", []), errors.get("jax_impl", []))
              for depth, errors in table.items()]
    if figure:
        lines += ["", f"![Final test error against depth, each seed a point, beside Table 6]({figure})"]
    return lines


def plot_error_vs_depth(runs: list, path: Path) -> bool:
    """Final test error against depth of the paper-protocol runs, one point per seed, each backend slightly
    offset, the paper's Table 6 as a line; False (nothing written) without such runs."""
    table = errors_by_depth(runs)
    if not table:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    depths = sorted(d for d in PAPER_TEST_ERROR if d <= max(110, *table))
    ax.plot(depths, [PAPER_TEST_ERROR[d] for d in depths], color="black", linestyle=":", marker="x",
            label="paper (Table 6)")
    order = list(BACKEND_NAMES)  # the table's: PyTorch, then JAX
    backends = sorted({b for errors in table.values() for b in errors},
                      key=lambda b: (order.index(b) if b in order else len(order), b))
    for i, backend in enumerate(backends):
        offset = 1.2 * (i - (len(backends) - 1) / 2)  # depths are 12 apart
        points = [(depth + offset, e) for depth, errors in table.items() for e in errors.get(backend, [])]
        ax.scatter(*zip(*points), s=22, color=BACKEND_COLOURS.get(backend, OTHER_COLOURS[i % len(OTHER_COLOURS)]),
                   label=f"{BACKEND_NAMES.get(backend, backend)} (each seed)", zorder=3)
    ax.set_xticks(sorted({*depths, *table}))
    ax.set_xlabel("depth (layers)")
    ax.set_ylabel("final test error (%)")
    ax.set_title("CIFAR-10 ResNets, 64,000 iterations: test error against depth")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True


def figure_name(depth: int, iterations: int) -> str:
    return f"curves-resnet{depth}-{iterations}it.png"


SUMMARY_INTRO = (
    "The finished runs of Table 6's protocol (64,000 iterations, lr drops at 32k and 48k, all 50,000 training "
    "images, the paper's recipe with nothing departing from it, ResNet-110's warm-up included), by depth: each "
    "backend's final test error as median (min–max, n seeds) beside the paper's Table 6 figure, and PyTorch's mean "
    "minus JAX's in percentage points with its 95% Welch t interval (n/a unless each backend has at least 2 seeds). "
    "An interval that contains 0 means no difference between the backends beyond what the seed alone changes.")


def readme(runs: list, unfinished: list, skipped: list, figures: list, out_dir: Path, runs_dir: Path,
           progress: list = (), summary_figure: str | None = None) -> str:
    runs_link = Path(os.path.relpath(runs_dir, out_dir)).as_posix()
    parts = [
        "# Results: CIFAR-10 ResNets, PyTorch and JAX, beside He et al. 2015",
        "",
        "## Summary by depth",
        "",
        SUMMARY_INTRO,
        "",
        *summary_lines(runs, summary_figure),
        "",
        "## Every run",
        "",
        "Each row is one finished run in [`" + runs_link + "/`](" + runs_link + "/), trained by `torch_impl` "
        "(PyTorch) or `jax_impl` (JAX/Flax) with the paper's recipe (departures are noted in the Iterations "
        "column): SGD with momentum 0.9, weight decay 1e-4, "
        "batch 128, lr 0.1 divided by 10 at 50% and 75% of training, 4-pixel-pad random crops and horizontal "
        "flips. The paper's schedule is 64,000 iterations (lr drops at 32k and 48k); a run with fewer iterations "
        "is a compressed schedule, labelled with how many times shorter it is, with its lr drops at the same "
        "50%/75% fractions, so its errors are not expected to reach the paper's. The best-val model is the "
        "checkpoint with the lowest error on the held-out validation split (5,000 training images unless the run "
        "used train+val), and its test error is the fair figure to compare; the paper's Table 6 figure for the "
        "same depth is shown beside it. Errors are percentages on the 10,000 CIFAR-10 test images (val: the "
        "held-out split); wall time covers the whole run including evaluation, with pure training time in "
        "brackets; images/s is the training throughput. This file is written by `python scripts/report.py`.",
        "",
    ]
    if runs:
        parts += [markdown_table([table_row(r, out_dir) for r in runs]), ""]
    else:
        parts += ["No finished runs yet.", ""]
    if unfinished:
        parts += ["## In progress", "",
                  "Runs without a final.json: carried forward in slices (`--time-budget`, `--resume`), each committed "
                  "with its resumable checkpoint. Their errors are those of an unfinished schedule; the time the "
                  "remaining steps take is the median training rate of the run so far applied to them (evaluations "
                  "and start-ups not included).", "",
                  markdown_table([in_progress_row(r, out_dir) for r in unfinished], IN_PROGRESS_COLUMNS), ""]
        for title, name in progress:
            parts += [f"![{title}]({name})", ""]
    sliced = [r for r in [*runs, *unfinished] if r.config.get("slices") and
              (len(r.slices) > 1 or r.iterations == PAPER_ITERATIONS)]
    if sliced:
        parts += ["## Slices", "",
                  "The processes that trained each run: its first start and every `--resume`, each with the "
                  "steps it trained, its wall time (start-up and evaluations included), how it ended, and its "
                  "hardware and commit (from the run's config.json).", "",
                  markdown_table([row for r in sliced for row in slice_rows(r)], SLICE_COLUMNS), ""]
    if skipped:
        parts += ["Skipped:", ""] + [f"- `{name}`: {why}" for name, why in skipped] + [""]
    if figures:
        parts += ["## Figures", "",
                  "Training error (dashed; averaged over each logging interval of augmented minibatches) and test "
                  "error (solid) against iterations, one colour per backend, as in the paper's Figure 6; the "
                  "dotted line is the paper's Table 6 test error for that depth, dash-dotted verticals are the lr "
                  "drops.",
                  ""]
        for title, name in figures:
            parts.append(f"- [{title}]({name})")
        parts.append("")
        for title, name in figures:
            parts += [f"![{title}]({name})", ""]
    return "\n".join(parts).rstrip("\n") + "\n"


# ---------------------------------------------------------------- figures


FIGURE_6_TOP = 20.0  # % error: the top of He et al.'s Figure 6, which cuts the first epochs off as well


def plot_group(runs: list, path: Path, in_progress: bool = False) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depth, iterations = runs[0].group
    title = f"ResNet-{depth} on CIFAR-10, {schedule_title(iterations)}"
    if in_progress:
        title += f", in progress (to step {max(r.last_step for r in runs):,})"
    per_backend = Counter(r.backend for r in runs)
    extra = iter(OTHER_COLOURS)
    colours, seen = {}, Counter()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    top, latest = 0.0, []
    for run in runs:
        base = colours.setdefault(run.backend, BACKEND_COLOURS.get(run.backend) or next(extra, "black"))
        # A backend's later runs (its other seeds): darker shades of its colour, other markers.
        k = seen[run.backend]
        seen[run.backend] += 1
        colour = tuple(c * 0.6 ** k for c in matplotlib.colors.to_rgb(base))
        marker = RUN_MARKERS[k % len(RUN_MARKERS)]
        label = run.backend if per_backend[run.backend] == 1 else f"{run.backend} ({run.name})"
        train = [(r["step"], 100 * r["train_error"]) for r in run.metrics
                 if r.get("kind") == "train" and r.get("train_error") is not None]
        test = [(r["step"], 100 * r["test_error"]) for r in run.metrics
                if r.get("kind") == "eval" and r.get("test_error") is not None]
        if train:
            ax.plot(*zip(*train), linestyle="--", linewidth=1.0, color=colour, alpha=0.8, label=f"{label} train")
            top = max(top, max(e for _, e in train))
        if test:
            ax.plot(*zip(*test), linestyle="-", linewidth=1.8, marker=marker, markersize=3, color=colour,
                    label=f"{label} test")
            top = max(top, max(e for _, e in test))
            latest.append(test[-1][1])
    for i, m in enumerate(runs[0].recipe.get("milestones") or []):
        ax.axvline(m, color="0.55", linestyle="-.", linewidth=0.8, zorder=0, label="lr ÷10" if i == 0 else None)
    paper = PAPER_TEST_ERROR.get(depth)
    if paper is not None:
        ax.axhline(paper, color="black", linestyle=":", linewidth=1.2, label=f"paper ResNet-{depth} ({paper:.2f}%)")
    ax.set_xlim(0, iterations)
    if latest and max(latest) < FIGURE_6_TOP:  # the paper's axis, where the end of the curves is what matters
        ax.set_ylim(0, FIGURE_6_TOP)
    else:
        ax.set_ylim(0, min(100.0, max(top, paper or 0) * 1.05) or 100.0)
    ax.set_xlabel("iterations")
    ax.set_ylabel("error (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return title


START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"
HOW_LONG_START, HOW_LONG_END = "<!-- how-long:start -->", "<!-- how-long:end -->"


def how_long_lines(runs: list, unfinished: list) -> list:
    """What each paper-schedule run cost: a finished run's wall and training time from its final.json, an
    unfinished one's time so far and what its remaining steps take at its median rate."""
    lines = []
    for run in sorted([*runs, *unfinished], key=lambda r: r.sort_key):
        if run.iterations != PAPER_ITERATIONS:
            continue
        hw, _ = slices_hardware_and_commits(run)
        if run.final:
            f = run.final
            evals = sum(1 for r in run.metrics if r.get("kind") == "eval")
            overheads = ", checkpoints and restarts" if len(run.slices) > 1 else " and checkpoints"  # hw counts slices
            ips = "" if f.get("images_per_s") is None else f" at {f['images_per_s']:,.0f} images/s"
            lines.append(f"- `{run.name}` ({pct(f.get('final_test_error'))}): {duration(f.get('wall_time_s'))} in all, "
                         f"{duration(f.get('train_time_s'))} of it training{ips}, the rest its {evals} evaluations"
                         f"{overheads}; {hw}.")
        else:
            wall, rate, remaining = progress_so_far(run)
            rest = "" if rate is None else (f"; its remaining {run.iterations - run.last_step:,} steps take about "
                                            f"{duration(remaining)} of training at its median {rate:,.0f} images/s")
            lines.append(f"- `{run.name}` (unfinished): {run.last_step:,} of {run.iterations:,} steps in "
                         f"{duration(wall)}{rest}; {hw}.")
        pace = pace_by_hardware(run)
        if len(pace) > 1:
            lines[-1] += " By hardware: " + "; ".join(
                f"{name}, {steps:,} steps in {duration(seconds)} (all {run.iterations:,} at that pace: "
                f"{duration(seconds * run.iterations / steps)})" for name, (steps, seconds) in pace.items()) + "."
    return lines or ["- No paper-schedule (64,000-iteration) run yet."]


def pace_by_hardware(run: Run) -> dict:
    """{hardware: (steps, wall seconds)} over the run's ended slices, in the order the hardware first trained
    it; a slice's wall time includes its start-up, evaluations and checkpoints."""
    pace: dict = {}
    for s in run.slices:
        if s.get("from_step") is None or s.get("to_step") is None or not s.get("wall_time_s"):
            continue
        name = hardware(s.get("hardware") or {})
        steps, seconds = pace.get(name, (0, 0.0))
        pace[name] = (steps + s["to_step"] - s["from_step"], seconds + s["wall_time_s"])
    return {name: v for name, v in pace.items() if v[0] > 0}


def replace_between(text: str, start: str, end: str, block: str) -> str:
    head, rest = text.split(start, 1)
    return head + start + "\n" + block + "\n" + end + rest.split(end, 1)[1]


def update_project_readme(path: Path, runs: list, figures: list, out_dir: Path, unfinished: list = (),
                          summary_figure: str | None = None) -> None:
    """The project README's results section (the same summary by depth, links relative to that README; every run
    and its curves stay in out_dir's README) and, between its how-long markers if it has them, what the
    paper-schedule runs cost."""
    where = path.parent
    figure = Path(os.path.relpath(out_dir / summary_figure, where)).as_posix() if summary_figure else None
    every_run = Path(os.path.relpath(out_dir / "README.md", where)).as_posix()
    text = replace_between(path.read_text(), START, END, "\n".join(
        [*summary_lines(runs, figure), "", f"Every run, with its curves: [`{every_run}`]({every_run})."]))
    if HOW_LONG_START in text:
        text = replace_between(text, HOW_LONG_START, HOW_LONG_END, "\n".join(how_long_lines(runs, unfinished)))
    path.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="results/runs", help="folder of run directories (default: results/runs)")
    parser.add_argument("--out", default="results", help="where README.md and the figures go (default: results)")
    parser.add_argument("--project-readme",
                        help=f"also rewrite the table between {START} and {END} in this file, if it has them, "
                             f"and the paper-schedule runs' cost between {HOW_LONG_START} and {HOW_LONG_END} "
                             "(default: the README.md beside the --out folder)")
    args = parser.parse_args(argv)
    runs_dir, out_dir = Path(args.runs), Path(args.out)
    if not runs_dir.is_dir():
        print(f"error: {runs_dir} is not a folder of run directories", file=sys.stderr)
        return 2
    runs, unfinished, skipped = load_runs(runs_dir)
    for name, why in skipped:
        print(f"skipped {runs_dir / name}: {why}", file=sys.stderr)
    for run in unfinished:
        print(f"in progress {run.path}: step {run.last_step:,} of {run.iterations:,} (no final.json)", file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: dict = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    figures = []
    for (depth, iterations), members in sorted(groups.items()):
        path = out_dir / figure_name(depth, iterations)
        figures.append((plot_group(members, path), path.name))
        print(f"wrote {path}")
    progress_groups: dict = {}
    for run in unfinished:
        progress_groups.setdefault(run.group, []).append(run)
    progress = []
    for (depth, iterations), members in sorted(progress_groups.items()):
        path = out_dir / f"progress-{figure_name(depth, iterations)}"
        progress.append((plot_group(members, path, in_progress=True), path.name))
        print(f"wrote {path}")
    summary_path = out_dir / SUMMARY_FIGURE
    summary_figure = SUMMARY_FIGURE if plot_error_vs_depth(runs, summary_path) else None
    if summary_figure:
        print(f"wrote {summary_path}")
    elif summary_path.is_file():  # its runs are gone from --runs
        summary_path.unlink()
        print(f"removed {summary_path} (no finished paper-protocol run)")
    written = {name for _, name in progress}
    for stale in out_dir.glob(f"progress-{figure_name('*', '*')}"):  # runs that have finished since
        if stale.name not in written:
            stale.unlink()
            print(f"removed {stale} (no unfinished run left in its group)")
    readme_path = out_dir / "README.md"
    readme_path.write_text(readme(runs, unfinished, skipped, figures, out_dir, runs_dir, progress, summary_figure))
    project_readme = Path(args.project_readme) if args.project_readme else out_dir.resolve().parent / "README.md"
    if project_readme.is_file() and START in project_readme.read_text():
        update_project_readme(project_readme, runs, figures, out_dir, unfinished, summary_figure)
        print(f"updated the results table in {project_readme}")
    print(f"wrote {readme_path} ({len(runs)} finished run{'s' * (len(runs) != 1)}, {len(unfinished)} in progress, "
          f"{len(skipped)} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
