"""scripts/ladder.py end to end on a tiny archive and schedule: `run` trains the rungs it is given with
scripts/ablations.py's machinery, each with the trainer options its rung names, and `report` writes a row per rung
(numbers for those run and the linked paper runs, 'not yet run' for the rest) and the figure."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_core import synthetic
from cifar_core.recipe import Recipe

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # ladder.py imports ablations.py beside it
spec = importlib.util.spec_from_file_location("ladder", ROOT / "scripts" / "ladder.py")
ladder = importlib.util.module_from_spec(spec)
sys.modules["ladder"] = ladder  # dataclasses look their module up while the script's classes are made
spec.loader.exec_module(ladder)

TINY_FLAGS = ["--depth=8", "--iterations=3", "--batch-size=16", "--eval-every=3", "--log-every=1"]
TRAINED_HERE = ("0a-attempt-test-without-mean", "0b-attempt-test-with-mean", "3-resnet32")


@pytest.fixture(scope="module")
def tiny_ladder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ladder")
    synthetic.write_archive(root / "data", train_per_batch=40, test_size=40)
    runs = root / "ladder"
    done = subprocess.run([sys.executable, "scripts/ladder.py", "run", "--runs", str(runs), "--data-dir",
                           str(root / "data"), "--only", ",".join(TRAINED_HERE), "--jobs", "1", *TINY_FLAGS],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return root, runs


def test_the_rungs_climb_one_change_at_a_time_from_the_attempt_to_the_paper():
    names = [r.name for r in ladder.RUNGS]
    assert len(set(names)) == len(names) and all(r.below in names for r in ladder.RUNGS[1:])
    recipes = {r.name: ladder.ablations.variant_recipe(r, ladder.SCHEDULE) for r in ladder.TRAINED}
    attempt = recipes["0a-attempt-test-without-mean"]
    assert attempt.departures() == {"augment": "flip", "test_subtract_mean": False,
                                    "architecture": "imagenet-resnet18", "imagenet_head": 1000}
    assert attempt.lr_values() == (0.01, 0.01, 0.01) and attempt.full_train and attempt.batch_size == 128
    assert attempt.iterations * 128 >= 20 * 50_000 > (attempt.iterations - 1) * 128  # 20 epochs of 50,000 images
    assert recipes["0c-attempt-adam"].optimizer == "adam"
    assert recipes["4-lr0.1-steps"] == Recipe(depth=32, iterations=7813, eval_every=391, full_train=True)
    for rung in ladder.TRAINED[3:]:  # from the 10-way head on: the rung below with one field changed
        mine, below = recipes[rung.name].to_dict(), recipes[rung.below].to_dict()
        changed = {k for k in mine if mine[k] != below[k]} - {"milestones"}
        assert len(changed - {"lr_decay"}) == 1, (rung.name, changed)  # lr 0.1 comes with its step schedule
    assert all((ROOT / path / "final.json").is_file() for path in ladder.RUNGS[-1].linked)


def test_a_probe_replaces_the_schedules_batch_size_and_length_instead_of_repeating_them():
    probe = ladder.PROBES[-1]
    command = ladder.ablations.variant_flags(probe, ladder.SCHEDULE)
    options = [part for part in command if part.startswith("--")]
    assert len(options) == len(set(options)), command
    assert command[command.index("--batch-size") + 1] == "1024" and command[command.index("--iterations") + 1] == "48"
    assert command[command.index("--eval-every") + 1] == "391"  # what the probe leaves alone stays the schedule's


def test_run_trains_the_rungs_it_is_given_with_their_options(tiny_ladder):
    _, runs = tiny_ladder
    for name in TRAINED_HERE:
        assert ladder.ablations.state_of(runs / name) == "finished", name
    attempt = Recipe.from_dict(json.loads((runs / TRAINED_HERE[0] / "config.json").read_text())["recipe"])
    assert attempt.imagenet_head == 1000 and attempt.augment == "flip" and not attempt.eval_subtract_mean
    final = json.loads((runs / TRAINED_HERE[0] / "final.json").read_text())
    assert final["parameters"] == 11_689_512 and final["n_train_images"] == 200  # the full-train split
    assert (runs / TRAINED_HERE[2] / "checkpoints" / "final.safetensors").is_file()
    assert not (runs / "1-10-way-head").exists()


@pytest.fixture(scope="module")
def tiny_report(tiny_ladder):
    """The tiny ladder's report, written once: (its text, its file)."""
    root, runs = tiny_ladder
    out = root / "report" / "ladder.md"
    done = subprocess.run([sys.executable, "scripts/ladder.py", "report", "--runs", str(runs), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out.read_text(), out


def test_report_has_every_rung_and_says_which_are_not_yet_run(tiny_ladder, tiny_report):
    _, runs = tiny_ladder
    report, out = tiny_report
    text = report.split("## Rung 0 beside")[0]  # the rungs' table
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| Rung")]
    assert [row.split(" | ")[0].strip("| [").split("]")[0] for row in rows] == [r.name for r in ladder.RUNGS]
    rows = dict(zip([r.name for r in ladder.RUNGS], rows))
    assert text.count("| not yet run |") == len(ladder.TRAINED) - len(TRAINED_HERE)
    final = json.loads((runs / TRAINED_HERE[2] / "final.json").read_text())
    resnet8 = rows[TRAINED_HERE[2]]
    assert f"{100 * (1 - final['final_test_error']):.2f}%" in resnet8 and "75,290" in resnet8
    paper = rows["5-paper-64k"]  # the linked runs
    assert "92.58%" in paper and "(seed 1: 92.79%)" in paper and "64,000 (164)" in paper and "+" not in paper
    assert "11,689,512" in rows[TRAINED_HERE[0]]
    assert out.with_suffix(".png").is_file() and "![" in text


def test_report_sets_rung_0_beside_the_notes_and_says_why_each_finished_rung_moved(tiny_ladder, tiny_report):
    _, runs = tiny_ladder
    report, _ = tiny_report
    notes = report.split("## Rung 0 beside the attempt's log")[1].split("## Why")[0]
    epoch_one = ladder.per_epoch(ladder.load_result(ladder.RUNGS[1], runs / TRAINED_HERE[1]))[1]
    assert f"| {TRAINED_HERE[1]} | {ladder.cell(epoch_one[0], 'loss')} | {100 * epoch_one[1]:.2f}% |" in notes
    assert "| the notes, SGD | 3.090 | 25.60% | 29.60% | 0.0016 | 99.96% | 41.72% |" in notes
    assert "running train error" in notes and "the notes' regime" in notes and "ReduceLROnPlateau" in notes
    assert "training records (loss and running accuracy) are equal, bit for bit" in notes  # 0a and 0b: one training
    why = dict(line[4:].split("**: ", 1) for line in report.split("## Why")[1].splitlines()
               if line.startswith("- **"))
    assert list(why) == [r.name for r in ladder.RUNGS]
    assert "without the train mean subtracted" in why[TRAINED_HERE[0]] and "train accuracy" in why[TRAINED_HERE[1]]
    assert why["1-10-way-head"] == "not yet run."


def test_per_epoch_averages_each_epochs_records_and_takes_its_test_accuracy():
    metrics = [{"kind": "train", "step": 2, "loss": 3.0, "train_error": 0.75},
               {"kind": "train", "step": 4, "loss": 1.0, "train_error": 0.25},
               {"kind": "eval", "step": 4, "test_error": 0.5},
               {"kind": "train", "step": 6, "loss": 0.5, "train_error": 0.125}]
    result = ladder.Result(ladder.RUNGS[1], "started", {"recipe": {"eval_every": 4}}, {}, metrics, None, None)
    assert ladder.per_epoch(result) == {1: (2.0, 0.5, 0.5), 2: (0.5, 0.875, None)}


def test_the_test_time_choice_is_the_run_nearer_the_notes_test_accuracies_and_same_training_is_checked():
    def run(rung, test_errors, losses):
        metrics = [m for epoch, (error, loss) in enumerate(zip(test_errors, losses), 1)
                   for m in ({"kind": "train", "step": epoch, "loss": loss, "train_error": 0.1},
                             {"kind": "eval", "step": epoch, "test_error": error})]
        return ladder.Result(rung, "finished", {"recipe": {"eval_every": 1}}, {"final_test_error": test_errors[-1]},
                            metrics, None, None)
    errors = [0.7] * 19 + [0.58]  # the notes: 29.60% test accuracy after epoch 1, 41.72% after epoch 20
    without = run(ladder.RUNGS[0], errors, [1.0] * 20)
    same = run(ladder.RUNGS[1], [0.4] * 20, [1.0] * 20)
    text = ladder.test_time_choice(without, same)
    assert "nearer 0a-attempt-test-without-mean's" in text and "did not subtract" in text and "bit for bit" in text
    assert "up to 12.0 points without the mean, 0.0 with it" in text
    other = run(ladder.RUNGS[1], [0.7] * 19 + [0.59], [1.0] * 19 + [0.75])
    text = ladder.test_time_choice(without, other)
    assert "bit for bit" not in text and "differ by up to 0.25 in loss" in text


def test_the_regime_is_told_a_count_at_a_time():
    def run(train_error, test_error):
        metrics = [{"kind": "train", "step": 1, "loss": 1.0, "train_error": train_error}]
        return ladder.Result(ladder.RUNGS[1], "finished", {}, {"final_test_error": test_error}, metrics, None, None)
    assert "inside the notes' regime (train error at most 2.00% and test error" in ladder.regime_text(run(0.01, 0.4))
    assert "outside the notes' regime (train error" in ladder.regime_text(run(0.05, 0.3))
    assert "on one count (test error at least 35.00%), outside on the other (train error at most 2.00%)" in \
        ladder.regime_text(run(0.05, 0.46))


def test_plateau_replay_cuts_the_lr_as_torch_does_after_patience_epochs_without_a_new_best():
    assert ladder.plateau_first_cut([0.5, 0.4, 0.3, 0.2], lr=0.01) is None
    assert ladder.plateau_first_cut([0.3] + [0.4] * 10, lr=0.01) is None  # 10 bad epochs: the patience, not beyond
    assert ladder.plateau_first_cut([0.3] + [0.4] * 11, lr=0.01) == 12
    assert ladder.plateau_first_cut([0.3] + [0.29999] * 11, lr=0.01) == 12  # within the 1e-4 relative threshold


def test_the_top_rung_is_set_beside_the_papers_error_and_a_schedule_claim_needs_a_gain_beyond_the_noise():
    def run(rung, test_error, train_error):
        return ladder.Result(rung, "finished", {"data": {"n_test": 10_000}}, {"final_test_error": test_error},
                             [{"kind": "train", "step": 1, "loss": 0.1, "train_error": train_error}], None, None)
    rungs = {rung.name: rung for rung in ladder.RUNGS}
    steps = run(rungs["4-lr0.1-steps"], 0.1233, 0.1124)
    assert "is the paper's 7.51% within twice the noise" in ladder.why_paper(run(rungs["5-paper-64k"], 0.0742, 0.0026),
                                                                             steps, {})
    assert "differs from the paper's 7.51%" in ladder.why_paper(run(rungs["5-paper-64k"], 0.0900, 0.0026), steps, {})
    below = run(rungs["3-resnet32"], 0.1868, 0.1394)
    assert "settle in the minimum" in ladder.why_steps(steps, below, {})
    unmoved = ladder.why_steps(run(rungs["4-lr0.1-steps"], 0.1860, 0.1124), below, {})
    assert "leaves the test accuracy where it was" in unmoved and "settle" not in unmoved
