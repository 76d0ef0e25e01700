"""The run directory both backends write, with the same files and keys:

    config.json     everything needed to rerun: recipe, options, command, git commit, versions, hardware, data;
                    and "slices": one entry per process that trained the run (a first start, then each
                    --resume): its command, commit, versions, hardware, options, start, first and last step,
                    wall time and why it ended ("finished", "SIGTERM", "SIGINT", "time budget")
    metrics.jsonl   one object per record: {"kind": "train", step, epoch, lr, loss, train_error, images_per_s,
                    wall_time} every log_every steps, {"kind": "eval", step, epoch, lr, val_error, test_error,
                    wall_time} every eval_every steps and at the end (errors are fractions in [0, 1]); with an lr
                    warm-up, {"kind": "warmup_end", step, train_error, lr, wall_time} at the step it ended
    final.json      final and best-val errors, test error of the best-val model, wall time, parameter count; with
                    an lr warm-up, warmup_ended_at (the first step after it; null if it never ended)
    checkpoints/    last.* (resumable state, backend format) and best.safetensors (neutral weights)
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from .files import write_text_atomically
from .recipe import Recipe

REPO_ROOT = Path(__file__).resolve().parent.parent


class RunDirError(RuntimeError):
    pass


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomically(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def git_info() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    # A copy without .git (e.g. a working tree shipped to a GPU machine) names its commit in $GIT_COMMIT.
    fallback = {"commit": os.environ.get("GIT_COMMIT"), "dirty": None}
    try:
        commit = git("rev-parse", "HEAD")
        # Outputs under results/ (a committed run directory being trained) do not make the code dirty.
        dirty = bool(git("status", "--porcelain", "--", ".", ":(exclude)results"))
        return {"commit": commit, "dirty": dirty} if commit else fallback
    except (OSError, subprocess.SubprocessError):
        return fallback


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_info() -> dict:
    info = {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return info


def read_config(path, backend: str) -> dict:
    """The config.json of the run in `path`, for --resume; RunDirError if there is none or it is another backend's."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        raise RunDirError(f"--resume: {path} holds no config.json; is --run-dir the run to continue?")
    try:
        config = json.loads(config_path.read_text())
        saved_backend, _ = config["backend"], config["recipe"]["depth"]
    except (ValueError, KeyError, TypeError) as error:
        raise RunDirError(f"--resume: {config_path} is not a run's config ({type(error).__name__}: {error}); "
                          "nothing was changed.") from None
    if saved_backend != backend:
        raise RunDirError(f"--resume: {path} is a {saved_backend} run, not {backend}; "
                          f"continue it with python -m {saved_backend}.train.")
    return config


# What must be equal for a resumed run to see the data its first slice saw.
DATA_IDENTITY = ("content_sha256", "n_train", "n_val", "n_test", "steps_per_epoch")


def default_run_dir(backend: str, depth: int) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{backend}-resnet{depth}-{stamp}"


class RunDir:
    """Creates or reopens a run directory; refuses to overwrite a run unless asked to resume it."""

    def __init__(self, path, backend: str, recipe: Recipe, resume: bool = False, write: bool = True):
        self.path = Path(path)
        self.backend = backend
        self.recipe = recipe
        self.write = write  # False on non-zero ranks/processes: one writer per run
        self.checkpoints = self.path / "checkpoints"
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.final_path = self.path / "final.json"
        self.opened = time.monotonic()
        self.saved = read_config(self.path, backend) if resume else None  # the config of the run to continue
        if resume:
            self.refuse_finished()
            # Read through Recipe, so that a field added since the run started takes its default (the paper's).
            saved = Recipe.from_dict(self.saved["recipe"]).to_dict()
            differ = {k: (saved.get(k), v) for k, v in recipe.to_dict().items() if saved.get(k) != v}
            if differ:
                raise RunDirError(f"--resume: the flags give a different recipe from the saved run's "
                                  f"(saved, given): {differ}. Leave them out: --resume takes the recipe from "
                                  f"{self.config_path}.")
        elif self.config_path.exists() or self.metrics_path.exists():
            raise RunDirError(f"{self.path} already holds a run. Pass --resume to continue it, "
                              "or choose another --run-dir; nothing was overwritten.")
        if self.write:
            self.checkpoints.mkdir(parents=True, exist_ok=True)

    def refuse_finished(self) -> None:
        """On --resume: RunDirError if the run has finished (final.json), saying what to do instead. A finished
        run has nothing left to train, and its resumable checkpoint is often gone: results/runs/ keep only
        checkpoints/final.safetensors."""
        if not self.final_path.is_file():
            return
        try:
            test_error = json.loads(self.final_path.read_text()).get("final_test_error")
        except (ValueError, AttributeError):
            test_error = None
        known = f" (final test error {100 * test_error:.2f}%)" if isinstance(test_error, (int, float)) else ""
        weights = self.checkpoints / "final.safetensors"
        evaluate = (f"evaluate its weights with python -m {self.backend}.evaluate --checkpoint {weights}, or "
                    if weights.is_file() else "")
        raise RunDirError(f"--resume: {self.path} has finished{known}; there is nothing to continue: "
                          f"{evaluate}start a new run with another --run-dir.")

    def resume_checkpoint(self, name: str) -> Path:
        """The path of the run's resumable checkpoint `name`; RunDirError if it is not there."""
        path = self.checkpoints / name
        if not path.is_file():
            raise RunDirError(f"--resume: {path} is missing: the run in {self.path} has no resumable checkpoint; "
                              "start a new run with another --run-dir.")
        return path

    def write_config(self, options: dict, versions: dict, devices: list, data_info: dict,
                     start_step: int = 0, tracker_state: dict | None = None) -> None:
        """Write config.json, or on --resume record the new slice in it."""
        if not self.write:
            return
        config = {"backend": self.backend, "recipe": self.recipe.to_dict(), "options": options,
                  "command": [sys.executable, *sys.argv], "git": git_info(), "versions": versions,
                  "hardware": {**host_info(), "devices": devices}, "data": data_info,
                  "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        slice_ = {k: config[k] for k in ("command", "git", "versions", "hardware", "options")}
        slice_.update(started=config["created"], from_step=start_step)
        if self.saved is not None:
            original = self.saved
            slices = original.setdefault("slices", [])
            if not slices:  # a run started before slices were recorded: its first slice from what was saved
                first = {k: original.get(k) for k in ("command", "git", "versions", "hardware", "options")}
                slices.append({**first, "started": original.get("created"), "from_step": 0, "to_step": start_step,
                               "wall_time_s": (tracker_state or {}).get("wall_time"), "ended": None,
                               "stopped": "not recorded"})
            slices.append(slice_)
            config = original
        else:
            config["slices"] = [slice_]
        write_json_atomic(self.config_path, config)

    def check_data(self, data_info: dict) -> None:
        """On --resume: RunDirError unless the data are those the run started on (content, split, epoch)."""
        if self.saved is None:
            return
        saved = self.saved.get("data", {})
        differ = [k for k in DATA_IDENTITY if k in saved and k in data_info and saved[k] != data_info[k]]
        if differ:
            raise RunDirError(f"--resume: the data differ from the run's ({', '.join(differ)}: "
                              f"saved {saved[differ[0]]}, "
                              f"now {data_info[differ[0]]}); resume with the CIFAR-10 copy it was started on "
                              f"({saved.get('source')}), or start a new run. Nothing was changed.")

    def end_slice(self, step: int, why: str) -> None:
        """Record where and why this process's slice ended, and its wall time."""
        if not self.write or not self.config_path.is_file():
            return
        config = json.loads(self.config_path.read_text())
        if not config.get("slices"):
            return
        config["slices"][-1].update(
            to_step=step, stopped=why, wall_time_s=round(time.monotonic() - self.opened, 3),
            ended=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        write_json_atomic(self.config_path, config)

    def truncate_metrics(self, step: int) -> None:
        """On resume: drop records past the checkpoint's step; the resumed run writes them again."""
        if not self.write or not self.metrics_path.is_file():
            return
        lines = [line for line in self.metrics_path.read_text().splitlines() if line.strip()]
        kept = []
        for number, line in enumerate(lines, 1):
            try:
                record_step = json.loads(line)["step"]
            except (ValueError, KeyError, TypeError):
                if number == len(lines):
                    break  # the last record, cut short by a kill while it was written: the run writes it again
                raise RunDirError(f"--resume: {self.metrics_path} line {number} is not a metrics record "
                                  f"({line[:60]!r}); repair or remove that line. Nothing was changed.") from None
            if record_step <= step:
                kept.append(line)
        write_text_atomically(self.metrics_path, "".join(line + "\n" for line in kept))

    def log(self, record: dict) -> None:
        if self.write:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def write_final(self, final: dict) -> None:
        if self.write:
            write_json_atomic(self.final_path, final)
            self.end_slice(final["steps_completed"], "finished")


def read_metrics(path) -> list:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
