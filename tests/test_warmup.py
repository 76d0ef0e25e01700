"""The lr warm-up of the paper's ResNet-110 (He et al. §4.2; cifar_core.loop.WarmUp): when it ends, its defaults and
flags, its place in the recipe and on --resume, and both trainers through it. Both backends taking the same steps
across its end, from the same weights: parity_tests/test_warmup.py."""

from __future__ import annotations

import json
import os
import signal

import pytest

from cifar_core import cli
from cifar_core.loop import WarmUp
from cifar_core.recipe import Recipe
from cifar_core.run import RunDir, RunDirError, read_metrics

from trainer_runs import TRAINERS, losses, train, wrap_steps

RESNET110 = Recipe(depth=110, warmup_lr=0.01)


def parse(*argv) -> Recipe:
    return cli.recipe_from_args(cli.build_parser("torch_impl").parse_args([str(a) for a in argv]))


def saved_run(path, recipe_dict: dict):
    """A run directory holding only a config.json with `recipe_dict`, for --resume."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"backend": "torch_impl", "recipe": recipe_dict}))
    return path


# ----------------------------------------------------------------------------------------------- when it ends


def test_the_warmup_lasts_until_a_record_below_the_threshold_then_ends_for_good():
    warmup = WarmUp(RESNET110)
    assert warmup.on(0) and [warmup.lr_at(s) for s in (0, 399)] == [0.01, 0.01]
    assert not warmup.record(50, 0.95) and not warmup.record(100, 0.8)  # "below 80%": 80% is not below
    assert warmup.record(150, 0.79) and warmup.ended_at == 150
    assert (warmup.lr_at(149), warmup.lr_at(150), warmup.lr_at(40_000)) == (0.01, 0.1, RESNET110.lr_at(40_000))
    assert not warmup.record(200, 0.9) and not warmup.on(200) and warmup.ended_at == 150  # off for good
    resumed = WarmUp(RESNET110, ended_at=150)  # as a checkpoint after the end brings it back
    assert [resumed.lr_at(s) for s in (149, 150)] == [0.01, 0.1] and not resumed.record(200, 0.5)


def test_without_a_warmup_the_schedule_is_untouched():
    warmup = WarmUp(Recipe())
    assert not warmup.on(0) and not warmup.record(50, 0.1) and warmup.ended_at is None
    assert [warmup.lr_at(s) for s in (0, 32_000, 48_000)] == [Recipe().lr_at(s) for s in (0, 32_000, 48_000)]


# ----------------------------------------------------------------------------------------------- defaults and flags


def test_the_paper_preset_warms_up_resnet110_only():
    resnet110 = parse("--depth", 110)
    assert (resnet110.warmup_lr, resnet110.warmup_until_train_error) == (0.01, 0.8)
    assert resnet110 == parse("--preset", "paper", "--depth", 110) == RESNET110
    assert resnet110.departures() == {}  # the paper's own recipe at that depth
    for recipe in (parse(), parse("--depth", 32), parse("--depth", 56), parse("--preset", "smoke", "--depth", 110)):
        assert recipe.warmup_lr is None
    assert parse("--depth", 32).departures() == {}


def test_flags_override_the_default():
    assert parse("--depth", 110, "--no-warmup").warmup_lr is None
    assert parse("--depth", 110, "--no-warmup").departures() == {"warmup_lr": None}  # the paper warmed it up
    assert parse("--depth", 110, "--warmup-lr", 0.02).warmup_lr == 0.02
    assert parse("--depth", 110, "--warmup-until", 0.7).warmup_until_train_error == 0.7
    resnet32 = parse("--depth", 32, "--warmup-lr", 0.01, "--warmup-until", 0.5)
    assert (resnet32.warmup_lr, resnet32.warmup_until_train_error) == (0.01, 0.5)
    assert resnet32.departures() == {"warmup_lr": 0.01, "warmup_until_train_error": 0.5}


@pytest.mark.parametrize("argv, message", [
    (("--warmup-lr", 0), "--warmup-lr must be positive"), (("--depth", 110, "--warmup-until", 0), "--warmup-until 0"),
    (("--depth", 110, "--warmup-until", 1.5), "a fraction in"), (("--warmup-until", 0.5), "without a warm-up")])
def test_a_bad_warmup_is_a_one_line_error_naming_its_flag(argv, message):
    with pytest.raises(ValueError, match=message) as error:
        parse(*argv)
    assert "\n" not in str(error.value)


def test_no_warmup_and_a_warmup_lr_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse("--no-warmup", "--warmup-lr", 0.01)
    assert stopped.value.code == 2 and "not allowed with" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- recorded runs


def test_a_run_recorded_before_the_warmup_existed_reads_and_resumes_as_it_ran(tmp_path):
    for depth in (32, 110):
        recorded = {k: v for k, v in Recipe(depth=depth).to_dict().items() if not k.startswith("warmup")}
        run = saved_run(tmp_path / f"resnet{depth}", recorded)
        resumed = parse("--resume", "--run-dir", run)
        assert resumed.warmup_lr is None and resumed == Recipe(depth=depth)
        RunDir(run, "torch_impl", resumed, resume=True)  # no "different recipe"
    assert Recipe.from_dict(recorded).departures() == {"warmup_lr": None}  # a ResNet-110 trained without it


@pytest.mark.parametrize("flags", [("--no-warmup",), ("--warmup-lr", 0.02), ("--warmup-until", 0.5)])
def test_resume_refuses_flags_that_contradict_the_saved_warmup(tmp_path, flags):
    run = saved_run(tmp_path / "run", RESNET110.to_dict())
    assert parse("--resume", "--run-dir", run) == RESNET110
    RunDir(run, "torch_impl", parse("--resume", "--run-dir", run, "--warmup-lr", 0.01), resume=True)  # agrees
    with pytest.raises(RunDirError, match="different recipe.*warmup"):
        RunDir(run, "torch_impl", parse("--resume", "--run-dir", run, *flags), resume=True)
    old = saved_run(tmp_path / "old", Recipe().to_dict())
    with pytest.raises(RunDirError, match="different recipe.*warmup_lr"):
        RunDir(old, "torch_impl", parse("--resume", "--run-dir", old, "--warmup-lr", 0.01), resume=True)


# ----------------------------------------------------------------------------------------------- both trainers


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*differ from official CIFAR-10:UserWarning")
@pytest.mark.parametrize("backend", TRAINERS)
def test_the_trainers_warm_up_and_resume_after_its_end_exactly(backend, data_dir, tmp_path, monkeypatch):
    """A record every step (TINY): the warm-up ends at the first one below the threshold, and a run stopped
    after that resumes at the schedule's lr (its end is in the checkpoint), loss for loss as the whole run."""
    flags = ("--iterations", "8", "--eval-every", "4", "--warmup-lr", "0.01", "--warmup-until", "0.8")
    final = train(backend, data_dir, tmp_path / "whole", *flags)
    records = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    trained = [r for r in records if r["kind"] == "train"]
    ended = next(r["step"] for r in trained if r["train_error"] < 0.8)
    assert final["warmup_ended_at"] == ended < 8
    schedule = Recipe(iterations=8).lr_at  # 0.1, 0.01 from step 4, 0.001 from step 6
    assert [r["lr"] for r in trained] == [0.01 if r["step"] <= ended else schedule(r["step"] - 1) for r in trained]
    assert [(r["step"], r["lr"]) for r in records if r["kind"] == "warmup_end"] == [(ended, schedule(ended))]
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["recipe"]["warmup_lr"] == 0.01

    def terminate_after_the_end(call, outputs):
        if call == ended + 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return outputs
    with monkeypatch.context() as patch:
        wrap_steps(backend, patch, terminate_after_the_end)
        with pytest.raises(SystemExit):
            train(backend, data_dir, tmp_path / "split", *flags)
    TRAINERS[backend].main(["--resume", "--run-dir", str(tmp_path / "split"), "--no-progress"])
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    split = read_metrics(tmp_path / "split" / "metrics.jsonl")
    assert [r for r in split if r["kind"] == "warmup_end"][0]["step"] == ended
    assert json.loads((tmp_path / "split" / "final.json").read_text())["warmup_ended_at"] == ended
