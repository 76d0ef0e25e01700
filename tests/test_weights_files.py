"""Every weights file a user hands in — to either evaluate, scripts/convert.py or a trainer's --resume — is read
without running code from it: either backend's checkpoint and the neutral format work in every entry point, and
anything else (empty, random bytes, a pickle that would run code, truncated, NaN weights, another depth) is one
line naming the file, with nothing already written changed."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_core import weights

from torch_impl.model import resnet
from torch_impl import checkpoint as torch_checkpoint
from trainer_runs import EVALUATES, TRAINERS, write_data

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore:.*differ from official CIFAR-10:UserWarning")
CHECKPOINT = {"torch_impl": "last.pt", "jax_impl": "last.msgpack"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished tiny run of each backend on a synthetic CIFAR-10: {backend: run dir}, and the data dir."""
    root = tmp_path_factory.mktemp("runs")
    data_dir = write_data(root / "data")
    for backend, trainer in TRAINERS.items():
        trainer.main(["--depth", "8", "--batch-size", "16", "--iterations", "4", "--no-progress",
                      "--data-dir", data_dir, "--run-dir", str(root / backend)])
    return {b: root / b for b in TRAINERS}, data_dir


@pytest.mark.parametrize("reader", EVALUATES)
@pytest.mark.parametrize("writer", TRAINERS)
def test_evaluate_reads_either_backends_checkpoint(runs, reader, writer, capsys):
    """Cross-framework evaluate gives the test error the writing run recorded, as the same-framework one does."""
    run_dirs, data_dir = runs
    final = json.loads((run_dirs[writer] / "final.json").read_text())
    for name in (CHECKPOINT[writer], "final.safetensors"):
        path = run_dirs[writer] / "checkpoints" / name
        error = EVALUATES[reader].main(["--checkpoint", str(path), "--data-dir", data_dir])
        assert error == final["final_test_error"], (name, reader)
        assert f"{path}: test error" in capsys.readouterr().out


class RunsCode:
    """Unpickling this would delete a file."""

    def __init__(self, victim):
        self.victim = str(victim)

    def __reduce__(self):
        return (os.remove, (self.victim,))


def bad_files(folder: Path, victim: Path) -> dict:
    """name -> (path, words the one-line error must hold)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}

    def add(name, content, *words):
        path = folder / name
        path.write_bytes(content)
        files[name] = (path, words)

    good = torch_checkpoint.to_neutral(resnet(8))
    add("empty.pt", b"", "empty file")
    noise = np.random.default_rng(0).bytes(4096)
    add("random.bin", noise, "not weights this project reads")
    add("corrupt.msgpack", b"\x85" + noise, "JAX checkpoint")
    add("bare.pkl", pickle.dumps(RunsCode(victim)), "pickle", "can run code")
    torch.save({"model": RunsCode(victim)}, folder / "evil.pt")
    files["evil.pt"] = (folder / "evil.pt", ("can be read safely",))
    weights.save(folder / "whole.safetensors", good, 8)
    add("truncated.safetensors", (folder / "whole.safetensors").read_bytes()[:5000], "safetensors")
    nan = {k: (np.full_like(v, np.nan) if k == "fc.weight" else v) for k, v in good.items()}
    weights.save(folder / "nan.safetensors", nan, 8)
    files["nan.safetensors"] = (folder / "nan.safetensors", ("NaN or Inf", "fc.weight"))
    torch.save({"model": {"conv1.weight": torch.zeros(2)}}, folder / "other_model.pt")
    files["other_model.pt"] = (folder / "other_model.pt", ("not ResNet",))
    return files


def assert_one_line_error(error, path: Path, words):
    """`error`: the SystemExit an entry point raised (exit status 2, the user's error), or a process's stderr."""
    if isinstance(error, SystemExit):
        assert error.code == 2, error.code
    message = str(error)
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message, message
    assert str(path) in message, message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("backend", EVALUATES)
def test_evaluate_refuses_bad_files_in_one_line_running_nothing(backend, tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    for name, (path, words) in bad_files(tmp_path / "files", victim).items():
        with pytest.raises(SystemExit) as stopped:
            EVALUATES[backend].main(["--checkpoint", str(path), "--data-dir", str(tmp_path / "unused")])
        assert_one_line_error(stopped.value, path, words)
    assert victim.read_text() == "keep me"


def test_convert_refuses_bad_files_without_a_traceback(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    for name, (path, words) in bad_files(tmp_path / "files", victim).items():
        out = tmp_path / "out.safetensors"
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert.py"), str(path), str(out)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and not out.exists(), (name, result.returncode)
        assert_one_line_error(result.stderr.strip(), path, words)
    assert victim.read_text() == "keep me"

def stopped_run(backend, data_dir, run, depth="8"):
    """A run stopped by its time budget after one step, with its checkpoint."""
    with pytest.raises(SystemExit):
        TRAINERS[backend].main(["--depth", depth, "--batch-size", "16", "--iterations", "6", "--log-every", "1",
                                "--no-progress", "--data-dir", data_dir, "--run-dir", str(run), "--time-budget", "0"])
    return run / "checkpoints" / CHECKPOINT[backend]


@pytest.mark.parametrize("backend", TRAINERS)
def test_resume_from_a_damaged_checkpoint_is_one_line_and_changes_nothing(backend, runs, tmp_path):
    run_dirs, data_dir = runs
    run = tmp_path / "run"
    checkpoint = stopped_run(backend, data_dir, run)
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as stopped:
        TRAINERS[backend].main(["--resume", "--run-dir", str(run), "--no-progress"])
    assert_one_line_error(stopped.value, checkpoint, ())
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before



@pytest.mark.parametrize("backend", TRAINERS)
def test_resume_with_another_networks_checkpoint_is_one_line_and_changes_nothing(backend, runs, tmp_path):
    _, data_dir = runs
    checkpoint = stopped_run(backend, data_dir, tmp_path / "run")
    checkpoint.write_bytes(stopped_run(backend, data_dir, tmp_path / "deeper", depth="14").read_bytes())
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as stopped:
        TRAINERS[backend].main(["--resume", "--run-dir", str(tmp_path / "run"), "--no-progress"])
    assert_one_line_error(stopped.value, checkpoint, ("not a checkpoint of this run's",))
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


@pytest.mark.slow
@pytest.mark.parametrize("backend", TRAINERS)
def test_resume_after_a_kill_mid_record_and_a_damaged_metrics_file(backend, runs, tmp_path):
    """A record cut short by a kill (the last line) is dropped and written again; a damaged line elsewhere is
    a one-line error that changes nothing."""
    _, data_dir = runs
    run = tmp_path / "run"
    stopped_run(backend, data_dir, run)
    metrics = run / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"kind": "train", "step": 2, "lo')
    TRAINERS[backend].main(["--resume", "--run-dir", str(run), "--no-progress"])
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]

    damaged = tmp_path / "damaged"
    stopped_run(backend, data_dir, damaged)
    lines = (damaged / "metrics.jsonl").read_text().splitlines()
    (damaged / "metrics.jsonl").write_text("\n".join(["not json", *lines]) + "\n")
    before = {p: p.read_bytes() for p in damaged.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as stopped:
        TRAINERS[backend].main(["--resume", "--run-dir", str(damaged), "--no-progress"])
    assert_one_line_error(stopped.value, damaged / "metrics.jsonl", ("line 1",))
    assert {p: p.read_bytes() for p in damaged.rglob("*") if p.is_file()} == before
