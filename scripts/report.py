"""Summarise finished runs beside He et al. 2015 (Table 6, Figure 6): a Markdown table and one error-curve figure
per comparison group (same depth and iterations, both backends overlaid).

    python scripts/report.py [--runs results/runs] [--out results]

Reads every run directory under --runs (config.json, metrics.jsonl, final.json; see cifar_core/run.py), writes
--out/README.md and --out/curves-resnet<depth>-<iterations>it.png, and prints what it wrote. A run without
final.json (unfinished, or still running) is listed under "In progress" with the step it reached and its latest
test error, with its curves so far in --out/progress-curves-resnet<depth>-<iterations>it.png, never in the
results table or the results' figures. Each run's slices (the processes that trained it: a
first start and every --resume, with their hardware, commit and wall time) are listed too. The output depends
only on the run directories, so running it again on the same runs gives the same README.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

PAPER_ITERATIONS = 64_000  # He et al. 2015, Sec. 4.2: lr 0.1, divided by 10 at 32k and 48k, stop at 64k
PAPER_MILESTONE_FRACTIONS = (0.5, 0.75)
# He et al. 2015, Table 6: CIFAR-10 test error (%) of the ResNets (option A: zero-padding identity shortcuts).
PAPER_TEST_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
PAPER_NOTES = {110: "best of 5 runs; mean 6.61±0.16"}
PAPER_RECIPE = {"batch_size": 128, "lr": 0.1, "lr_decay": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
# The ablations' departures (cifar_core/recipe.py), at the paper's values; a run recorded before they existed has none.
PAPER_DEFAULTS = {"optimizer": "sgd", "augment": "crop-flip", "subtract_mean": True, "test_subtract_mean": None,
                  "logit_relu": False, "bn_eps": 1e-5, "bn_momentum": 0.1, "downsample": "stride",
                  "architecture": "cifar", "imagenet_head": 10}
AUGMENT_BOOLEANS = {True: "crop-flip", False: "none"}  # what augment's true/false in an older config.json mean
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
    if isinstance(recipe.get("augment"), bool):
        recipe = {**recipe, "augment": AUGMENT_BOOLEANS[recipe["augment"]]}
    differ = [f"{k}={recipe[k]}" for k, v in {**PAPER_RECIPE, **PAPER_DEFAULTS}.items()
              if recipe.get(k, v) != v]
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
                       "Latest test error (step)", "Wall time so far", "Images/s (median)", "Remaining steps at that rate",
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
    return [f"[{run.name}]({link}/)", run.backend, str(run.depth), schedule_label(run.iterations, recipe.get("milestones")),
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


def figure_name(depth: int, iterations: int) -> str:
    return f"curves-resnet{depth}-{iterations}it.png"


def readme(runs: list, unfinished: list, skipped: list, figures: list, out_dir: Path, runs_dir: Path,
           progress: list = ()) -> str:
    runs_link = Path(os.path.relpath(runs_dir, out_dir)).as_posix()
    parts = [
        "# Results: CIFAR-10 ResNets, PyTorch and JAX, beside He et al. 2015",
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


def update_project_readme(path: Path, runs: list, figures: list, out_dir: Path, unfinished: list = ()) -> None:
    """The project README's results section (the same table, links relative to that README) and, between its
    how-long markers if it has them, what the paper-schedule runs cost."""
    where = path.parent
    table = markdown_table([table_row(run, where) for run in runs])
    links = [f"[{title}]({Path(os.path.relpath(out_dir / name, where)).as_posix()})" for title, name in figures]
    text = replace_between(path.read_text(), START, END,
                           "\n".join([table, "", "Curves: " + ("; ".join(links) if links else "none yet") + "."]))
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
    written = {name for _, name in progress}
    for stale in out_dir.glob(f"progress-{figure_name('*', '*')}"):  # runs that have finished since
        if stale.name not in written:
            stale.unlink()
            print(f"removed {stale} (no unfinished run left in its group)")
    readme_path = out_dir / "README.md"
    readme_path.write_text(readme(runs, unfinished, skipped, figures, out_dir, runs_dir, progress))
    project_readme = Path(args.project_readme) if args.project_readme else out_dir.resolve().parent / "README.md"
    if project_readme.is_file() and START in project_readme.read_text():
        update_project_readme(project_readme, runs, figures, out_dir, unfinished)
        print(f"updated the results table in {project_readme}")
    print(f"wrote {readme_path} ({len(runs)} finished run{'s' * (len(runs) != 1)}, {len(unfinished)} in progress, "
          f"{len(skipped)} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
