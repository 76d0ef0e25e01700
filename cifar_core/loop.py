"""Bookkeeping both training loops share, so that each backend's train.py shows only the training itself:
metric records, the best-val model, the lr warm-up, the progress bar, NaN detection, stop signals and final.json."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import time

from tqdm import tqdm

from .recipe import Recipe
from .run import RunDir


class NonFiniteLossError(RuntimeError):
    pass


TIME_BUDGET = "time budget"  # StopSignal.received when --time-budget ran out
ELSEWHERE = "stop on another process"  # StopSignal.received when another rank or host stopped the run
RESUMABLE_EXIT_STATUS = 75  # sysexits.h EX_TEMPFAIL: stopped by the time budget, resumable; a job chain reruns


class StopSignal:
    """Turns SIGINT/SIGTERM, or the end of a wall-clock budget, into a flag the loop checks after each step, so
    it can save and exit cleanly. Entered when the trainer starts, so a signal during data loading or
    compilation is kept until the loop can act on it, and the budget counts the whole process, as a
    cluster's wall-time limit does."""

    def __init__(self, budget_s: float | None = None):
        self.received = None
        self.deadline = None if budget_s is None else time.monotonic() + budget_s
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if name == "SIGINT" and self.received == "SIGINT":
            raise KeyboardInterrupt  # Ctrl-C twice: stop now (during a stuck download, say), without saving
        self.received = self.received or name
        print(f"{name}: saving and stopping after the current step" +
              (" (Ctrl-C again: stop at once, without saving)" if name == "SIGINT" else ""), file=sys.stderr)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def poll(self) -> str | None:
        """Why the run should stop now ('SIGTERM', 'SIGINT', TIME_BUDGET), or None."""
        if self.received is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.received = TIME_BUDGET
        return self.received

    def agree(self, stop_anywhere: bool) -> bool:
        """Take the distributed verdict (any process's poll()): every process must stop at the same step."""
        if stop_anywhere and self.received is None:
            self.received = ELSEWHERE
        return stop_anywhere

    @property
    def exit_status(self) -> int:
        """128 + the signal's number for a signal, as a shell reports it; RESUMABLE_EXIT_STATUS otherwise."""
        if self.received in signal.Signals.__members__:
            return 128 + signal.Signals[self.received].value
        return RESUMABLE_EXIT_STATUS

    def exit(self, step: int, run: RunDir, backend: str):
        """Say where the run stopped and how to continue it, and exit. The caller has saved the checkpoint."""
        run.end_slice(step, self.received)
        print(f"{self.received}: stopped at step {step}, resumable: saved to {run.checkpoints}; continue with "
              f"python -m {backend}.train --resume --run-dir {run.path}", file=sys.stderr)
        sys.exit(self.exit_status)


@dataclasses.dataclass
class WarmUp:
    """The lr warm-up (He et al. §4.2, ResNet-110): recipe.warmup_lr until the running train error is below
    recipe.warmup_until_train_error, then the schedule's lr for good. Decided at each training-loss record
    (every log_every steps) from the error of the steps since the previous one: both trainers compute that
    number, and jax_impl's multi-step calls end at those steps, so the lr of every step is the same in both.
    `ended_at`, the first step at the schedule's lr (None while the warm-up lasts), goes into the checkpoint."""

    recipe: Recipe
    ended_at: int | None = None

    def on(self, step: int) -> bool:
        """Whether 0-indexed iteration `step` trains at the warm-up lr."""
        return self.recipe.warmup_lr is not None and (self.ended_at is None or step < self.ended_at)

    def lr_at(self, step: int) -> float:
        return self.recipe.lr_at(step, self.on(step))

    def record(self, step: int, train_error: float) -> bool:
        """After the record at `step` of the running `train_error`: True when the warm-up ends here, so that
        iteration `step` onwards train at the schedule's lr."""
        if self.on(step) and train_error < self.recipe.warmup_until_train_error:
            self.ended_at = step
            return True
        return False


def evaluate_and_save(tracker: "Tracker", step: int, evaluate_all, export, save_checkpoint) -> tuple:
    """An evaluation point of both trainers: the val and test error recorded, the weights exported as
    best.safetensors when the val error improved, the resumable checkpoint saved. (val error, test error)."""
    val_error, test_error = evaluate_all()
    if tracker.log_eval(step, val_error, test_error):
        export("best.safetensors", step)
    save_checkpoint(step)
    return val_error, test_error


def finish_run(tracker: "Tracker", step: int, evaluate_all, export, save_checkpoint, parameters: int,
               n_train: int) -> dict:
    """The end of a run in both trainers: the last evaluation point, final.safetensors, final.json."""
    val_error, test_error = evaluate_and_save(tracker, step, evaluate_all, export, save_checkpoint)
    export("final.safetensors", step)
    final = tracker.finish(step, val_error, test_error, parameters, n_train)
    tracker.run.write_final(final)
    return final


class Tracker:
    def __init__(self, run: RunDir, recipe: Recipe, steps_per_epoch: int, start_step: int = 0,
                 state: dict | None = None, progress: bool = True):
        self.run, self.recipe, self.steps_per_epoch = run, recipe, steps_per_epoch
        state = state or {}
        self.best_val_error = state.get("best_val_error")
        self.best_val_step = state.get("best_val_step")
        self.best_val_test_error = state.get("best_val_test_error")
        self.train_time = state.get("train_time", 0.0)  # seconds spent in training steps, summed over resumes
        self.wall_time_before = state.get("wall_time", 0.0)
        self.last_good_checkpoint = state.get("checkpoint_step")
        self.warmup = WarmUp(recipe, state.get("warmup_ended_at"))
        self.started = time.perf_counter()
        self.interval_start = time.perf_counter()
        self.interval_time = 0.0  # training seconds since the last record, pauses excluded
        self.last_logged_step = start_step
        self.bar = tqdm(total=recipe.iterations, initial=start_step, disable=not (progress and run.write),
                        unit="it", dynamic_ncols=True, smoothing=0.05)

    # ------------------------------------------------------------------ timing
    def wall_time(self) -> float:
        return self.wall_time_before + time.perf_counter() - self.started

    @contextlib.contextmanager
    def paused(self):
        """Evaluation and checkpointing do not count as training time."""
        self.interval_time += time.perf_counter() - self.interval_start
        try:
            yield
        finally:
            self.interval_start = time.perf_counter()

    def checkpoint_state(self, checkpoint_step: int) -> dict:
        """What a checkpoint must carry for the bookkeeping to resume exactly; the caller is writing it."""
        self.last_good_checkpoint = checkpoint_step
        return {"best_val_error": self.best_val_error, "best_val_step": self.best_val_step,
                "best_val_test_error": self.best_val_test_error, "train_time": self.train_time,
                "wall_time": self.wall_time(), "checkpoint_step": checkpoint_step,
                "warmup_ended_at": self.warmup.ended_at}

    # ------------------------------------------------------------------ records
    def should_log(self, step: int) -> bool:
        return step % self.recipe.log_every == 0 or step == self.recipe.iterations

    def should_eval(self, step: int) -> bool:
        return step % self.recipe.eval_every == 0 or step == self.recipe.iterations

    def log_train(self, step: int, loss_sum: float, correct_sum: float) -> dict:
        """Record the mean loss and error of the steps since the last record (`loss_sum` and `correct_sum` over
        their global batches). Raises on a non-finite loss."""
        elapsed = self.interval_time + time.perf_counter() - self.interval_start
        self.train_time += elapsed
        steps = step - self.last_logged_step
        images = steps * self.recipe.batch_size
        loss = loss_sum / images
        if not math.isfinite(loss):
            where = (f"the last good checkpoint (step {self.last_good_checkpoint}) is kept in {self.run.checkpoints}"
                     if self.last_good_checkpoint is not None else "no checkpoint had been written yet")
            raise NonFiniteLossError(
                f"training loss became {loss} between steps {self.last_logged_step + 1} and {step}; stopped. "
                f"{where}. Lower --lr or check the data.")
        record = {"kind": "train", "step": step, "epoch": round(step / self.steps_per_epoch, 4),
                  "lr": self.warmup.lr_at(step - 1), "loss": loss, "train_error": 1.0 - correct_sum / images,
                  "images_per_s": images / elapsed if elapsed > 0 else None,
                  "wall_time": round(self.wall_time(), 3)}
        self.run.log(record)
        self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{record['lr']:.3g}",
                             img_s=f"{record['images_per_s'] or 0:.0f}", refresh=False)
        self.bar.update(step - self.bar.n)
        self.last_logged_step = step
        self.interval_time, self.interval_start = 0.0, time.perf_counter()
        if self.warmup.record(step, record["train_error"]):
            self.end_warmup(step, record["train_error"])
        return record

    def end_warmup(self, step: int, train_error: float) -> None:
        """Record the warm-up's end in metrics.jsonl and say it in the log."""
        lr = self.warmup.lr_at(step)
        self.run.log({"kind": "warmup_end", "step": step, "train_error": train_error, "lr": lr,
                      "wall_time": round(self.wall_time(), 3)})
        if self.run.write:  # one line per run, not one per process
            self.bar.write(f"step {step}: train error {100 * train_error:.2f}% < "
                           f"{100 * self.recipe.warmup_until_train_error:g}%: warm-up over, lr {lr:g} from here on")

    def log_eval(self, step: int, val_error: float | None, test_error: float) -> bool:
        """Record an evaluation; True when it is the best val error so far (the caller saves the weights)."""
        record = {"kind": "eval", "step": step, "epoch": round(step / self.steps_per_epoch, 4),
                  "lr": self.warmup.lr_at(step - 1), "val_error": val_error, "test_error": test_error,
                  "wall_time": round(self.wall_time(), 3)}
        self.run.log(record)
        improved = val_error is not None and (self.best_val_error is None or val_error < self.best_val_error)
        if improved:
            self.best_val_error, self.best_val_step, self.best_val_test_error = val_error, step, test_error
        val = "n/a" if val_error is None else f"{100 * val_error:.2f}%"
        self.bar.write(f"step {step}: val error {val}, test error {100 * test_error:.2f}%")
        return improved

    def finish(self, step: int, val_error: float | None, test_error: float, parameters: int, n_train: int) -> dict:
        self.bar.close()
        final = {"backend": self.run.backend, "depth": self.recipe.depth, "iterations": self.recipe.iterations,
                 "steps_completed": step, "n_train_images": n_train,
                 "final_val_error": val_error, "final_test_error": test_error,
                 "best_val_error": self.best_val_error, "best_val_step": self.best_val_step,
                 "best_val_test_error": self.best_val_test_error,
                 "wall_time_s": round(self.wall_time(), 2), "train_time_s": round(self.train_time, 2),
                 "images_per_s": round(step * self.recipe.batch_size / self.train_time, 1) if self.train_time else None,
                 "parameters": parameters}
        if self.recipe.warmup_lr is not None:
            final["warmup_ended_at"] = self.warmup.ended_at  # None: the warm-up lasted the whole run
        return final
