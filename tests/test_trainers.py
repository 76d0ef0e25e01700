"""Both trainers, end to end on a tiny CIFAR-10 archive: the run directory, exact resume after SIGTERM,
NaN detection, bad flags. Every test runs once per backend; backend-specific ones follow."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cifar_core.pipeline
import cifar_core.weights
from cifar_core.run import read_metrics

import torch_impl.train
from trainer_runs import TINY, TRAINERS, losses, train, wrap_steps, write_data

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore:.*differ from official CIFAR-10:UserWarning")


@pytest.mark.parametrize("backend", TRAINERS)
def test_run_directory_is_complete(backend, data_dir, tmp_path):
    run = tmp_path / "run"
    final = train(backend, data_dir, run, "--iterations", "6", "--eval-every", "3")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "final.json", "metrics.jsonl"]
    assert {p.name for p in (run / "checkpoints").iterdir()} >= {"best.safetensors", "final.safetensors"}
    config = json.loads((run / "config.json").read_text())
    assert config["backend"] == backend and config["recipe"]["iterations"] == 6
    assert {"commit", "dirty"} <= set(config["git"]) and config["hardware"]["cpu_count"] >= 1
    assert config["data"]["n_train"] == 180 and config["data"]["n_val"] == 20
    records = read_metrics(run / "metrics.jsonl")
    train_records = [r for r in records if r["kind"] == "train"]
    eval_records = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in eval_records] == [3, 6]
    assert set(train_records[0]) == {"kind", "step", "epoch", "lr", "loss", "train_error", "images_per_s", "wall_time"}
    assert set(eval_records[0]) == {"kind", "step", "epoch", "lr", "val_error", "test_error", "wall_time"}
    assert all(math.isfinite(r["loss"]) and 0 <= r["train_error"] <= 1 for r in train_records)
    saved = json.loads((run / "final.json").read_text())
    assert saved == final
    assert saved["parameters"] == 75_290 and saved["steps_completed"] == 6
    assert saved["final_test_error"] == eval_records[-1]["test_error"]
    assert saved["best_val_error"] == min(r["val_error"] for r in eval_records)


def test_both_backends_write_the_same_keys(data_dir, tmp_path):
    finals = {b: train(b, data_dir, tmp_path / b, "--iterations", "2") for b in TRAINERS}
    assert set(finals["torch_impl"]) == set(finals["jax_impl"])
    configs = {b: json.loads((tmp_path / b / "config.json").read_text()) for b in TRAINERS}
    assert set(configs["torch_impl"]) == set(configs["jax_impl"])
    assert configs["torch_impl"]["recipe"] == configs["jax_impl"]["recipe"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", TRAINERS)
def test_sigterm_saves_and_resume_continues_exactly(backend, data_dir, tmp_path, monkeypatch):
    flags = ("--iterations", "8", "--eval-every", "3")
    train(backend, data_dir, tmp_path / "whole", *flags)

    def terminate_at_step_5(call, outputs):
        if call == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return outputs
    with monkeypatch.context() as patch:
        wrap_steps(backend, patch, terminate_at_step_5)
        with pytest.raises(SystemExit) as stopped:
            train(backend, data_dir, tmp_path / "split", *flags)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")[:5]
    train(backend, data_dir, tmp_path / "split", *flags, "--resume")
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")  # bit for bit, every step
    whole = json.loads((tmp_path / "whole" / "final.json").read_text())
    split = json.loads((tmp_path / "split" / "final.json").read_text())
    for key in ("final_val_error", "final_test_error", "best_val_error", "best_val_step", "best_val_test_error"):
        assert split[key] == whole[key], key


@pytest.mark.slow
@pytest.mark.parametrize("backend", TRAINERS)
def test_time_budget_slices_train_exactly_as_one_run(backend, data_dir, tmp_path, capsys):
    """A run carried forward in slices as under a cluster's wall-time limit: a budget of 0 s stops after the
    first step of each slice; the last slice is resumed from the run directory alone (recipe and data folder
    from its config.json). Every loss and the final errors equal an uninterrupted run's, bit for bit."""
    flags = ("--iterations", "6", "--eval-every", "3")
    train(backend, data_dir, tmp_path / "whole", *flags)
    run = tmp_path / "sliced"
    for stop_step, resume in ((1, ()), (2, ("--resume",))):
        with pytest.raises(SystemExit) as stopped:
            train(backend, data_dir, run, *flags, *resume, "--time-budget", "0")
        assert stopped.value.code == 75  # sysexits EX_TEMPFAIL: resumable
        message = capsys.readouterr().err
        assert f"time budget: stopped at step {stop_step}, resumable" in message
        assert f"python -m {backend}.train --resume --run-dir {run}" in message
        assert losses(run) == losses(tmp_path / "whole")[:stop_step]
    TRAINERS[backend].main(["--resume", "--run-dir", str(run), "--no-progress"])
    assert losses(run) == losses(tmp_path / "whole")
    whole, sliced = (json.loads((tmp_path / r / "final.json").read_text()) for r in ("whole", "sliced"))
    for key in ("final_val_error", "final_test_error", "best_val_error", "best_val_step", "best_val_test_error"):
        assert sliced[key] == whole[key], key
    slices = json.loads((run / "config.json").read_text())["slices"]
    assert [(s["from_step"], s["to_step"], s["stopped"]) for s in slices] == \
        [(0, 1, "time budget"), (1, 2, "time budget"), (2, 6, "finished")]
    assert all(s["wall_time_s"] > 0 and s["hardware"]["cpu_count"] >= 1 and "commit" in s["git"] for s in slices)


@pytest.mark.parametrize("backend", TRAINERS)
def test_a_signal_during_start_up_saves_after_the_first_step(backend, data_dir, tmp_path, monkeypatch, capsys):
    flags = ("--iterations", "4", "--eval-every", "2")
    train(backend, data_dir, tmp_path / "whole", *flags)
    build = cifar_core.pipeline.build

    def build_then_terminate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # while the data load: before the model, compilation, any step
        return build(*args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(cifar_core.pipeline, "build", build_then_terminate)
        with pytest.raises(SystemExit) as stopped:
            train(backend, data_dir, tmp_path / "split", *flags)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert "SIGTERM: saving and stopping after the current step" in capsys.readouterr().err
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")[:1]
    train(backend, data_dir, tmp_path / "split", "--resume")
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")


@pytest.mark.parametrize("backend", TRAINERS)
def test_a_signal_during_the_final_evaluation_lets_the_run_finish(backend, data_dir, tmp_path, monkeypatch):
    evaluate = TRAINERS[backend].evaluate

    def terminate_then_evaluate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return evaluate(*args, **kwargs)
    monkeypatch.setattr(TRAINERS[backend], "evaluate", terminate_then_evaluate)
    final = train(backend, data_dir, tmp_path / "run", "--iterations", "3", "--eval-every", "10")
    assert final["steps_completed"] == 3 and (tmp_path / "run" / "final.json").is_file()
    assert (tmp_path / "run" / "checkpoints" / "final.safetensors").is_file()
    slices = json.loads((tmp_path / "run" / "config.json").read_text())["slices"]
    assert [(s["from_step"], s["to_step"], s["stopped"]) for s in slices] == [(0, 3, "finished")]


@pytest.mark.parametrize("backend", TRAINERS)
def test_resume_refuses_other_flags_and_other_data(backend, data_dir, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(SystemExit):
        train(backend, data_dir, run, "--iterations", "6", "--time-budget", "0")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as stopped:
        train(backend, data_dir, run, "--iterations", "12", "--resume")
    assert stopped.value.code == 2  # the exit status of an error of the user's making, as argparse's
    assert "different recipe" in str(stopped.value) and "iterations" in str(stopped.value)
    other = write_data(tmp_path / "other", seed=1)
    with pytest.raises(SystemExit) as stopped:
        train(backend, other, run, "--resume")
    assert "the data differ from the run's" in str(stopped.value)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("backend", TRAINERS)
def test_resume_of_a_finished_run_says_so_in_one_line(backend, data_dir, tmp_path, capsys):
    """A finished run as results/runs/ keep it (final.safetensors, no resumable checkpoint): --resume says it has
    finished, with its test error and what to do instead, and exits with status 2; without final.json, the
    missing checkpoint is named."""
    run = tmp_path / "run"
    final = train(backend, data_dir, run, "--iterations", "2")
    for path in (run / "checkpoints").glob("last.*"):
        path.unlink()
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        TRAINERS[backend].main(["--resume", "--run-dir", str(run), "--no-progress"])
    assert stopped.value.code == 2
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith(f"error: --resume: {run} has finished (final test error "
                           f"{100 * final['final_test_error']:.2f}%)")
    assert f"python -m {backend}.evaluate --checkpoint {run / 'checkpoints' / 'final.safetensors'}" in line
    (run / "final.json").unlink()
    with pytest.raises(SystemExit) as stopped:
        TRAINERS[backend].main(["--resume", "--run-dir", str(run), "--no-progress"])
    assert stopped.value.code == 2 and "has no resumable checkpoint" in str(stopped.value)


@pytest.mark.parametrize("backend", TRAINERS)
def test_nan_loss_stops_and_keeps_last_good_checkpoint(backend, data_dir, tmp_path, monkeypatch, capsys):
    def poison_step_5(call, outputs):
        if call < 5:
            return outputs
        if backend == "torch_impl":
            loss, right = outputs
            return loss * float("nan"), right
        state, metrics = outputs
        return state, {**metrics, "loss_sum": metrics["loss_sum"] * float("nan")}
    wrap_steps(backend, monkeypatch, poison_step_5)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        train(backend, data_dir, run, "--iterations", "8", "--eval-every", "2")
    message = str(stopped.value)
    assert "nan" in message and "step 4" in message and "checkpoint" in message
    assert not (run / "final.json").exists()
    checkpoint = next((run / "checkpoints").glob("last.*"))
    if backend == "torch_impl":
        assert torch_impl.checkpoint.read(checkpoint)["step"] == 4
    else:
        from flax import serialization
        assert serialization.msgpack_restore(checkpoint.read_bytes())["step"] == 4


@pytest.mark.parametrize("backend", TRAINERS)
def test_existing_run_is_not_overwritten(backend, data_dir, tmp_path):
    run = tmp_path / "run"
    train(backend, data_dir, run, "--iterations", "2")
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit) as stopped:
        train(backend, data_dir, run, "--iterations", "2")
    assert "--resume" in str(stopped.value)
    assert (run / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("backend", TRAINERS)
def test_missing_data_is_a_clear_error(backend, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        TRAINERS[backend].main([*TINY, "--data-dir", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "r")])
    assert "--data-dir" in str(stopped.value)


@pytest.mark.slow
@pytest.mark.parametrize("backend", TRAINERS)
def test_amp_bf16_trains_is_recorded_and_holds_across_resume(backend, data_dir, tmp_path):
    """--amp bf16 trains (the losses move off float32's), is recorded in config.json, is taken from there by
    --resume, and a --resume that contradicts it is refused; the saved weights stay float32."""
    float32 = tmp_path / "float32"
    train(backend, data_dir, float32, "--iterations", "3")
    run = tmp_path / "bf16"
    with pytest.raises(SystemExit) as stopped:
        train(backend, data_dir, run, "--iterations", "3", "--amp", "bf16", "--time-budget", "0")
    assert stopped.value.code == 75
    with pytest.raises(SystemExit) as stopped:
        train(backend, data_dir, run, "--resume", "--amp", "none")
    assert stopped.value.code == 2 and "--amp none is different from the saved run's --amp bf16" in str(stopped.value)
    train(backend, data_dir, run, "--resume")
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["amp"] == "bf16" and [s["options"]["amp"] for s in config["slices"]] == ["bf16"] * 2
    assert all(math.isfinite(loss) for loss in losses(run)) and losses(run) != losses(float32)
    assert json.loads((float32 / "config.json").read_text())["options"]["amp"] == "none"
    tensors, _ = cifar_core.weights.load(run / "checkpoints" / "final.safetensors")
    assert {str(t.dtype) for t in tensors.values()} == {"float32"}


# ------------------------------------------------------------------------------------------ JAX only


def test_jax_indivisible_batch_is_a_clear_error(data_dir, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        train("jax_impl", data_dir, tmp_path / "r", "--batch-size", "18", "--num-devices", "4")
    assert "18" in str(stopped.value) and "4 devices" in str(stopped.value)


@pytest.mark.slow
def test_jax_four_devices_cross_bn_equals_one_device(data_dir, tmp_path):
    """float32 through the CLI (float64 equality to 1e-10: parity_tests/test_multi_device.py)."""
    one = train("jax_impl", data_dir, tmp_path / "one", "--iterations", "4", "--num-devices", "1")
    four = train("jax_impl", data_dir, tmp_path / "four", "--iterations", "4", "--num-devices", "4",
                 "--cross-device-bn")
    np.testing.assert_allclose(losses(tmp_path / "four"), losses(tmp_path / "one"), rtol=1e-5)
    assert four["final_test_error"] == one["final_test_error"]


@pytest.mark.slow
def test_jax_steps_per_call_trains_as_one_step_per_call(data_dir, tmp_path):
    """float32 through the CLI: 7 steps, at most 4 per call, in calls ending at every log (3, 6, 7) and eval
    (5, 7) point, against one step per call (bit-identical weights in float64: parity_tests/test_multi_device.py)."""
    flags = ["--iterations", "7", "--log-every", "3", "--eval-every", "5", "--data-on-device"]
    one = train("jax_impl", data_dir, tmp_path / "one", *flags)
    scanned = train("jax_impl", data_dir, tmp_path / "scan", *flags, "--steps-per-call", "4")
    assert json.loads((tmp_path / "scan" / "config.json").read_text())["options"]["steps_per_call"] == 4
    records = {run: read_metrics(tmp_path / run / "metrics.jsonl") for run in ("one", "scan")}
    steps = {run: [(r["kind"], r["step"]) for r in records[run]] for run in records}
    assert steps["scan"] == steps["one"] == [("train", 3), ("eval", 5), ("train", 6), ("train", 7), ("eval", 7)]
    np.testing.assert_allclose(losses(tmp_path / "scan"), losses(tmp_path / "one"), rtol=1e-5)
    assert scanned["final_test_error"] == one["final_test_error"]


def test_jax_amp_bf16_runs_onednn_convolutions_on_cpu_as_xla_does(data_dir, tmp_path):
    """--amp bf16 takes oneDNN's bfloat16 convolutions by default on CPU (recorded), and trains as with XLA's:
    the same losses to bfloat16 accuracy (the two round a few outputs in 10^4 apart, tests/test_cpu_conv.py)."""
    for conv in ("auto", "xla"):
        train("jax_impl", data_dir, tmp_path / conv, "--iterations", "3", "--amp", "bf16", "--conv", conv)
    kernels = {conv: json.loads((tmp_path / conv / "config.json").read_text())["options"]["conv_kernels"]
               for conv in ("auto", "xla")}
    assert kernels == {"auto": "onednn", "xla": "xla"}
    np.testing.assert_allclose(losses(tmp_path / "auto"), losses(tmp_path / "xla"), rtol=2**-8)


def test_jax_steps_per_call_without_data_on_device_is_a_clear_error(data_dir, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        train("jax_impl", data_dir, tmp_path / "r", "--steps-per-call", "4", "--no-data-on-device")
    assert "--steps-per-call 4 needs --data-on-device" in str(stopped.value)
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit) as stopped:
        train("jax_impl", data_dir, tmp_path / "r", "--steps-per-call", "0", "--data-on-device")
    assert "--steps-per-call must be at least 1, got 0" in str(stopped.value)


# ------------------------------------------------------------------------------------------ PyTorch only


@pytest.mark.slow
def test_torchrun_two_processes_sync_bn_equals_one_process(data_dir, tmp_path):
    """float32 through torchrun and gloo (float64 equality to 1e-10: parity_tests/test_multi_device.py)."""
    flags = [*TINY, "--data-dir", data_dir, "--iterations", "4", "--sync-bn"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "torch_impl.train", *flags, "--run-dir", str(tmp_path / "two")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, f"torchrun exited {two.returncode}:\n{two.stdout[-3000:]}\n{two.stderr[-6000:]}"
    torch_impl.train.main([*flags, "--run-dir", str(tmp_path / "one")])
    assert json.loads((tmp_path / "two" / "config.json").read_text())["options"]["world_size"] == 2
    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("backend", TRAINERS)
def test_data_on_device_trains_exactly_as_host_feeding(backend, data_dir, tmp_path):
    train(backend, data_dir, tmp_path / "host", "--iterations", "3", "--no-data-on-device")
    train(backend, data_dir, tmp_path / "device", "--iterations", "3", "--data-on-device")
    assert losses(tmp_path / "device") == losses(tmp_path / "host")
