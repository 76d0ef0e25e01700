"""The run directory both backends write, with the same files and keys:

    config.json     everything needed to rerun: recipe, options, command, git commit, versions, hardware, data
    metrics.jsonl   one object per record: {"kind": "train", step, epoch, lr, loss, train_error, images_per_s,
                    wall_time} every log_every steps, {"kind": "eval", step, epoch, lr, val_error, test_error,
                    wall_time} every eval_every steps and at the end (errors are fractions in [0, 1])
    final.json      final and best-val errors, test error of the best-val model, wall time, parameter count
    checkpoints/    last.* (resumable state, backend format) and best.safetensors (neutral weights)
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from .recipe import Recipe

REPO_ROOT = Path(__file__).resolve().parent.parent


class RunDirError(RuntimeError):
    pass


def write_json_atomic(path: Path, obj) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def git_info() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    # A copy without .git (e.g. a working tree shipped to a GPU machine) names its commit in $GIT_COMMIT.
    fallback = {"commit": os.environ.get("GIT_COMMIT"), "dirty": None}
    try:
        commit = git("rev-parse", "HEAD")
        return {"commit": commit, "dirty": bool(git("status", "--porcelain"))} if commit else fallback
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
        if resume:
            if not self.config_path.is_file():
                raise RunDirError(f"--resume: {self.path} holds no config.json; is --run-dir the run to continue?")
            saved = json.loads(self.config_path.read_text())
            if saved.get("backend") != backend:
                raise RunDirError(f"--resume: {self.path} is a {saved.get('backend')} run, not {backend}.")
            differ = {k: (saved["recipe"].get(k), v) for k, v in recipe.to_dict().items()
                      if saved["recipe"].get(k) != v}
            if differ:
                raise RunDirError(f"--resume: the flags give a different recipe from the saved run's "
                                  f"(saved, given): {differ}. Repeat the original command with --resume.")
        elif self.config_path.exists() or self.metrics_path.exists():
            raise RunDirError(f"{self.path} already holds a run. Pass --resume to continue it, "
                              "or choose another --run-dir; nothing was overwritten.")
        if self.write:
            self.checkpoints.mkdir(parents=True, exist_ok=True)

    def write_config(self, options: dict, versions: dict, devices: list, data_info: dict) -> None:
        if not self.write:
            return
        config = {"backend": self.backend, "recipe": self.recipe.to_dict(), "options": options,
                  "command": [sys.executable, *sys.argv], "git": git_info(), "versions": versions,
                  "hardware": {**host_info(), "devices": devices}, "data": data_info,
                  "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        if self.config_path.is_file():  # a resume: keep the original, record the new session beside it
            original = json.loads(self.config_path.read_text())
            original.setdefault("resumed", []).append(
                {k: config[k] for k in ("command", "git", "versions", "hardware", "created")})
            config = original
        write_json_atomic(self.config_path, config)

    def truncate_metrics(self, step: int) -> None:
        """On resume: drop records past the checkpoint's step; the resumed run writes them again."""
        if not self.write or not self.metrics_path.is_file():
            return
        kept = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        fd, tmp = tempfile.mkstemp(dir=self.path, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write("".join(line + "\n" for line in kept))
        os.replace(tmp, self.metrics_path)

    def log(self, record: dict) -> None:
        if self.write:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def write_final(self, final: dict) -> None:
        if self.write:
            write_json_atomic(self.final_path, final)


def read_metrics(path) -> list:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
