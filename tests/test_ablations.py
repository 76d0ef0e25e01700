"""scripts/ablations.py end to end on a tiny archive and schedule: it trains the variants it is given (resuming one
that a time budget stopped), measures what the answers need on the final weights (the baseline without mean
subtraction, the ReLU'd logits, the tensors BN momentum leaves alone), records a diverged run, and writes the report
with a row per variant, an answer per question and a figure per question."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_core import synthetic

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("ablations", ROOT / "scripts" / "ablations.py")
ablations = importlib.util.module_from_spec(spec)
sys.modules["ablations"] = ablations  # dataclasses look their module up while the script's classes are made
spec.loader.exec_module(ablations)

TINY_SCHEDULE = {"depth": 8, "iterations": 4, "batch_size": 16, "eval_every": 2, "log_every": 1}
TINY_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_SCHEDULE.items()]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """Five variants trained by `run`, one of them first stopped by a time budget and continued by `run`."""
    root = tmp_path_factory.mktemp("ablations")
    synthetic.write_archive(root / "data", train_per_batch=40, test_size=40)
    runs = root / "runs"
    stopped = runs / "adam-lr0.001"
    stopped.mkdir(parents=True)
    command = ablations.trainer_command(ablations.BY_NAME["adam-lr0.001"], stopped, TINY_SCHEDULE,
                                        str(root / "data"), 0)
    assert subprocess.run(command, cwd=ROOT, capture_output=True, timeout=600).returncode == 75
    assert ablations.state_of(stopped) == "started"
    done = subprocess.run([sys.executable, "scripts/ablations.py", "run", "--runs", str(runs), "--data-dir",
                           str(root / "data"), "--only",
                           "baseline,baseline-seed1,adam-lr0.001,logit-relu,bn-momentum-0.01,jax-bf16",
                           "--jobs", "1",
                           *TINY_FLAGS], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return root, runs, done.stdout


@pytest.mark.slow
def test_run_trains_the_variants_it_is_given_and_resumes_a_stopped_one(tiny_set):
    _, runs, out = tiny_set
    for name in ("baseline", "baseline-seed1", "adam-lr0.001", "logit-relu", "bn-momentum-0.01", "jax-bf16"):
        assert ablations.state_of(runs / name) == "finished", name
        assert f"{name}: finished" in out
        assert not ablations.resumable_checkpoints(runs / name)  # finished: the resumable state goes
        assert (runs / name / "checkpoints" / "final.safetensors").is_file()
    jax_bf16 = json.loads((runs / "jax-bf16" / "config.json").read_text())
    assert jax_bf16["backend"] == "jax_impl" and jax_bf16["options"]["amp"] == "bf16"
    config = json.loads((runs / "adam-lr0.001" / "config.json").read_text())
    assert config["recipe"]["optimizer"] == "adam" and config["recipe"]["lr"] == 0.001
    assert [s["stopped"] for s in config["slices"]] == ["time budget", "finished"]
    assert json.loads((runs / "baseline-seed1" / "config.json").read_text())["recipe"]["seed"] == 1
    assert not (runs / "imagenet-resnet18").exists()


@pytest.mark.slow  # its fixture trains the variants
def test_run_evaluates_the_baseline_without_mean_subtraction(tiny_set):
    _, runs, _ = tiny_set
    record = json.loads((runs / "baseline" / "evaluations.json").read_text())
    final = json.loads((runs / "baseline" / "final.json").read_text())
    assert record["test_error"] == final["final_test_error"]  # the same weights, images fed as in training
    assert 0 <= record["test_error_without_mean_subtraction"] <= 1 and record["git"]["commit"]
    assert 0.3 < record["mean_image_average"] < 0.7  # the synthetic images' mean pixel, on the 0-1 scale


@pytest.mark.slow  # its fixture trains the variants
def test_run_measures_the_logits_a_relu_leaves_at_0(tiny_set):
    _, runs, _ = tiny_set
    record = json.loads((runs / "logit-relu" / "evaluations.json").read_text())
    final = json.loads((runs / "logit-relu" / "final.json").read_text())
    assert record["test_error"] == final["final_test_error"]  # the same logits the trainer's evaluation saw
    counts, dead = record["predicted_class_counts"], record["classes_with_logit_0_on_every_test_image"]
    assert len(counts) == 10 and sum(counts) == 40
    assert all(counts[c] == 0 for c in dead if c != 0)  # a logit stuck at 0 never beats the others' ReLU'd ones
    assert counts[0] >= round(40 * record["images_with_every_logit_0"])  # argmax of ten zeros is class 0


@pytest.mark.slow  # its fixture trains the variants
def test_bn_momentum_changes_only_the_running_statistics(tiny_set):
    _, runs, _ = tiny_set
    record = json.loads((runs / "bn-momentum-0.01" / "evaluations.json").read_text())
    differ, equal = record["different_from_baseline"], record["equal_to_baseline"]
    assert differ and all(k.endswith(("running_mean", "running_var")) for k in differ)
    assert any(k.endswith("conv1.weight") for k in equal) and len(differ) + len(equal) == record["tensors"]


def test_a_difference_is_claimed_only_beyond_the_noise():
    margin = ablations.noise_margin([0.1644, 0.1647], 10_000)  # seeds agree closely: the test set's standard error
    assert margin == pytest.approx((0.16455 * 0.83545 / 10_000) ** 0.5)
    assert ablations.noise_margin([0.10, 0.20], 10_000) == pytest.approx(0.10)  # seeds far apart: their spread
    assert ablations.noise_margin([None, None], 10_000) is None
    assert ablations.versus(0.1679, 0.1644, margin).startswith("within noise")
    assert ablations.versus(0.2060, 0.1644, margin).startswith("4.16 points worse")


def test_a_nan_loss_is_recorded_as_diverged(tmp_path):
    run = tmp_path / "adam-lr0.1"
    run.mkdir()
    (run / "train.log").write_text("step 1000: ...\nerror: training loss became nan between steps 51 and 100; "
                                   "stopped. no checkpoint had been written yet. Lower --lr or check the data.\n")
    record = ablations.record_divergence(run)
    assert record["loss"] == "nan" and record["between_steps"] == [51, 100]
    assert ablations.state_of(run) == "diverged"
    assert ablations.record_divergence(tmp_path) is None


@pytest.mark.slow  # its fixture trains the variants
def test_report_has_a_row_per_variant_and_an_answer_and_figure_per_question(tiny_set, tmp_path):
    _, runs, _ = tiny_set
    out = tmp_path / "ablations.md"
    done = subprocess.run([sys.executable, "scripts/ablations.py", "report", "--runs", str(runs), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for variant in ablations.VARIANTS:
        assert f"[{variant.name}](" in text, variant.name
    assert text.count("| not run |") == len(ablations.VARIANTS) - 6
    assert "JAX: bf16 " in text and "not every run has finished, so nothing is claimed" in text
    for q in ablations.QUESTIONS:
        assert f"## {q.number}. {q.title}" in text
    assert "SGD with momentum at lr 0.1 reaches" in text and "Adam at lr 0.001" in text
    assert "tested without mean subtraction" in text
    assert "a logit of 0 on every test image" in text and "bit for bit" in text  # the measurements, quoted
    assert "75,290" in text and "269,722" in text  # ResNet-8 as run here; ResNet-20 for the variants not run
    assert "11,181,642" in text  # the ImageNet ResNet-18, counted before it is run
    figures = tmp_path / "ablations-figures"
    assert (figures / "q1-optimizer.png").is_file() and (figures / "q3-test-mean.png").is_file()


def test_report_without_runs_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "scripts/ablations.py", "report", "--runs", str(tmp_path / "none"),
                           "--out", str(tmp_path / "a.md")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "a.md").exists()


def test_the_set_answers_every_question_from_named_variants():
    names = {v.name for v in ablations.VARIANTS}
    assert len(names) == len(ablations.VARIANTS)
    for q in ablations.QUESTIONS:
        assert q.variants[0] == "baseline" and set(q.variants) <= names
    assert {n for q in ablations.QUESTIONS for n in q.variants + q.seed_twins} == names
    for (backend, precision), runs in ablations.PRECISION_RUNS.items():  # question 8's runs are what they say
        for seed, name in enumerate(runs):
            variant = ablations.BY_NAME[name]
            assert (variant.backend, variant.seed, "bf16" in variant.flags) == (backend, seed, precision == "bf16")


def test_bf16_is_claimed_worse_only_beyond_the_float32_runs_noise_and_both_backends_runs_pool():
    assert "within the noise" in ablations.bf16_versus_float32([0.165, 0.166], [0.164, 0.1645], 10_000)
    assert "bf16 worse, beyond the noise" in ablations.bf16_versus_float32([0.175, 0.176], [0.164, 0.1645], 10_000)
    errors = {"baseline": 0.1644, "baseline-seed1": 0.1647, "bf16": 0.1676, "bf16-seed1": 0.1708,
              "jax": 0.1609, "jax-seed1": 0.1639, "jax-bf16": 0.1615, "jax-bf16-seed1": 0.1648}
    results = {name: ablations.Result(ablations.BY_NAME[name], "finished", {"data": {"n_test": 10_000}},
                                      {"final_test_error": errors[name]}, [], None, None) for name in errors}
    text = ablations.answer_bf16(ablations.QUESTIONS[7], results, None, {})
    pytorch, jax, pooled = text.split("PyTorch: ")[1], text.split("JAX: ")[1], text.split("pool: ")[1]
    assert "bf16 worse, beyond the noise" in pytorch.split("JAX: ")[0] and "within the noise" in jax.split(". ")[0]
    assert pooled.startswith("over all four runs of each, the means differ by 0.27 points, within the noise")
