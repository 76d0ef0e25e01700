"""The trainers' departures from the paper, for the ablations (results/ablations.md, scripts/ablations.py): each
reaches the run's recipe, its weights file and both evaluates; none is on by default; a run recorded before they
existed still resumes; a departure resumes exactly (Adam's state included) and may not change on --resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from cifar_core import data, evaluation, pipeline, plan
from cifar_core.recipe import DEPARTURES, Recipe
from cifar_core.run import RunDir, RunDirError

from interop.weights import read_any
from torch_impl.checkpoint import model_from_neutral
from torch_impl.model import build, count_parameters, resnet
from torch_impl.train import evaluate as torch_evaluate
from trainer_runs import EVALUATES, TRAINERS, losses, train

# Every departure of the model, optimiser and data at once (the ReLU on the logits apart: see below).
DEPARTING = ["--optimizer", "adam", "--lr", "0.001", "--bn-eps", "1e-3", "--bn-momentum", "0.01",
             "--downsample", "maxpool", "--no-augment", "--no-mean-subtraction"]
pytestmark = pytest.mark.filterwarnings("ignore:.*differ from official CIFAR-10:UserWarning")


def test_the_defaults_are_the_papers():
    assert Recipe().departures() == {}
    assert Recipe().model_options() == {"logit_relu": False, "bn_eps": 1e-5, "bn_momentum": 0.1, "downsample": "stride"}
    assert Recipe(optimizer="adam", bn_eps=0.1).departures() == {"optimizer": "adam", "bn_eps": 0.1}
    # the default network is the paper's, parameter for parameter and value for value
    paper, default = build(Recipe(depth=20)), resnet(20, seed=0)
    assert count_parameters(paper) == 269_722
    assert all(torch.equal(a, b) for a, b in zip(paper.state_dict().values(), default.state_dict().values()))


@pytest.mark.parametrize("field, value, flag", [
    ("optimizer", "rmsprop", "--optimizer"), ("downsample", "avgpool", "--downsample"),
    ("architecture", "vgg16", "--architecture"), ("bn_eps", 0.0, "--bn-eps"),
    ("bn_momentum", 0.99 + 1, "--bn-momentum"),
    ("bn_momentum", 0.0, "--bn-momentum"), ("augment", "crop", "--augment"), ("lr_decay", 0.0, "--lr-decay"),
    ("test_subtract_mean", "no", "--test-mean-subtraction"), ("imagenet_head", 1000, "--imagenet-head")])
def test_a_bad_departure_is_a_one_line_error_naming_its_flag(field, value, flag):
    with pytest.raises(ValueError, match=flag) as error:
        Recipe(**{field: value})
    assert "\n" not in str(error.value)


def test_a_run_recorded_before_the_departures_existed_resumes_as_the_papers(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    saved = {k: v for k, v in Recipe().to_dict().items() if k not in DEPARTURES}
    (run / "config.json").write_text(json.dumps({"backend": "torch_impl", "recipe": saved}))
    RunDir(run, "torch_impl", Recipe(), resume=True)  # no "different recipe"
    with pytest.raises(RunDirError, match="bn_eps"):
        RunDir(run, "torch_impl", Recipe(bn_eps=0.1), resume=True)


def streams(augment: str):
    """(images, a stream with `augment`, the paper's crop-and-flip stream), same seed and images."""
    images = np.random.default_rng(0).normal(size=(64, 32, 32, 3)).astype(np.float32)
    labels = np.arange(64) % 10
    return (images, plan.TrainStream(images, labels, seed=3, batch_size=16, augment=augment),
            plan.TrainStream(images, labels, seed=3, batch_size=16))


def test_no_augment_feeds_the_planned_images_as_they_are():
    images, plain, augmented = streams("none")
    for step in range(6):
        batch, _ = plain.batch(step)
        np.testing.assert_array_equal(batch, images[plain.plan(step).rows])
        np.testing.assert_array_equal(plain.plan(step).rows, augmented.plan(step).rows)  # the same order
        assert not np.array_equal(augmented.batch(step)[0], batch)


def test_flip_only_flips_the_planned_images_without_cropping_them():
    images, flipping, augmented = streams("flip")
    for step in range(6):
        batch, _ = flipping.batch(step)
        planned, full = flipping.plan(step), augmented.plan(step)
        np.testing.assert_array_equal(planned.rows, full.rows)
        np.testing.assert_array_equal(planned.flips, full.flips)  # the same flips as the paper's augmentation
        expected = np.where(full.flips[:, None, None, None], images[full.rows][:, :, ::-1], images[full.rows])
        np.testing.assert_array_equal(batch, expected)
        assert 0 < planned.flips.sum() < 16


def test_augment_reads_the_booleans_of_older_runs_and_resumes_them(tmp_path):
    assert Recipe(augment=True) == Recipe() and Recipe(augment=False).augment == "none"
    assert Recipe.from_dict({"augment": False}).departures() == {"augment": "none"}
    run = tmp_path / "run"
    run.mkdir()
    saved = {**Recipe().to_dict(), "augment": False}
    (run / "config.json").write_text(json.dumps({"backend": "torch_impl", "recipe": saved}))
    RunDir(run, "torch_impl", Recipe(augment="none"), resume=True)  # the same recipe
    with pytest.raises(RunDirError, match="augment"):
        RunDir(run, "torch_impl", Recipe(augment="flip"), resume=True)


def test_the_test_time_mean_choice_is_a_departure_only_where_it_differs_from_training():
    assert Recipe(test_subtract_mean=True).departures() == {}  # as in training: nothing departs
    assert Recipe(subtract_mean=False, test_subtract_mean=False) == Recipe(subtract_mean=False)
    assert Recipe(test_subtract_mean=False).departures() == {"test_subtract_mean": False}
    assert not Recipe(test_subtract_mean=False).eval_subtract_mean
    assert Recipe(subtract_mean=False, test_subtract_mean=True).eval_subtract_mean


def test_the_test_time_mean_choice_reaches_val_test_and_evaluation_only(data_dir):
    dataset = data.load(data_dir)
    splits = data.make_splits(dataset)
    raw_test = np.asarray(dataset.test_images, np.float32) / np.float32(255)
    raw_train = np.asarray(dataset.train_images, np.float32)[splits.train_indices] / np.float32(255)
    raw_val = np.asarray(dataset.train_images, np.float32)[splits.val_indices] / np.float32(255)
    untested = pipeline.build(Recipe(batch_size=16, test_subtract_mean=False), dataset=dataset)
    np.testing.assert_array_equal(untested.train.images, raw_train - splits.mean_image)
    np.testing.assert_array_equal(untested.test_images, raw_test)
    np.testing.assert_array_equal(untested.val_images, raw_val)
    tested = pipeline.build(Recipe(batch_size=16, subtract_mean=False, test_subtract_mean=True), dataset=dataset)
    np.testing.assert_array_equal(tested.train.images, raw_train)
    np.testing.assert_array_equal(tested.test_images, raw_test - splits.mean_image)
    np.testing.assert_array_equal(evaluation.test_set(Recipe(test_subtract_mean=False), data_dir)[0], raw_test)
    np.testing.assert_array_equal(evaluation.test_set(Recipe(subtract_mean=False, test_subtract_mean=True),
                                                      data_dir)[0], tested.test_images)


@pytest.mark.slow
@pytest.mark.parametrize("backend", TRAINERS)
def test_flip_only_and_the_test_time_mean_choice_reach_the_run_and_both_evaluates(backend, data_dir, tmp_path):
    run = tmp_path / "run"
    final = train(backend, data_dir, run, "--iterations", "2", "--augment", "flip", "--test-mean-subtraction", "no",
                  "--lr-decay", "1")
    recipe = Recipe.from_dict(json.loads((run / "config.json").read_text())["recipe"])
    assert recipe.departures() == {"augment": "flip", "test_subtract_mean": False}
    assert recipe.lr_values() == (0.1, 0.1, 0.1)  # --lr-decay 1: a constant lr
    weights = run / "checkpoints" / "final.safetensors"
    for evaluate_command in EVALUATES.values():  # the test images fed as the trainer's evaluation fed them
        assert evaluate_command.main(["--checkpoint", str(weights),
                                      "--data-dir", data_dir]) == final["final_test_error"]


@pytest.mark.parametrize("backend", TRAINERS)
def test_an_imagenet_head_on_the_cifar_network_is_a_one_line_error(backend, data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        train(backend, data_dir, tmp_path / "run", "--iterations", "2", "--imagenet-head", "1000")
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "--imagenet-head 1000" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_no_mean_subtraction_feeds_pixels_in_0_1_to_training_and_evaluation(data_dir):
    dataset = data.load(data_dir)
    raw = np.asarray(dataset.test_images, np.float32) / np.float32(255)
    plain = pipeline.build(Recipe(batch_size=16, subtract_mean=False), dataset=dataset)
    paper = pipeline.build(Recipe(batch_size=16), dataset=dataset)
    np.testing.assert_array_equal(plain.test_images, raw)
    np.testing.assert_array_equal(plain.train.images, np.asarray(dataset.train_images, np.float32)[
        data.make_splits(dataset).train_indices] / np.float32(255))
    assert np.abs(paper.test_images - raw).max() > 0.1
    # evaluate: as the weights' recipe fed the images, unless told to leave the mean in (question 3)
    np.testing.assert_array_equal(evaluation.test_set(Recipe(), data_dir)[0], paper.test_images)
    np.testing.assert_array_equal(evaluation.test_set(Recipe(), data_dir, subtract_mean=False)[0], raw)
    np.testing.assert_array_equal(evaluation.test_set(Recipe(subtract_mean=False), data_dir)[0], raw)


@pytest.mark.parametrize("backend", TRAINERS)
def test_departures_reach_the_run_its_weights_and_both_evaluates(backend, data_dir, tmp_path):
    run = tmp_path / "run"
    final = train(backend, data_dir, run, "--iterations", "4", *DEPARTING)
    recipe = Recipe.from_dict(json.loads((run / "config.json").read_text())["recipe"])
    assert recipe.lr == 0.001 and recipe.departures() == {
        "optimizer": "adam", "bn_eps": 1e-3, "bn_momentum": 0.01, "downsample": "maxpool", "augment": "none",
        "subtract_mean": False}
    weights = run / "checkpoints" / "final.safetensors"
    tensors, _, metadata = read_any(weights)
    model = model_from_neutral(tensors, metadata)
    assert model.layer2[0].pool and model.bn1.eps == 1e-3 and model.bn1.momentum == 0.01
    for evaluate in EVALUATES.values():  # each builds the run's network and feeds the images as it was fed
        assert evaluate.main(["--checkpoint", str(weights), "--data-dir", data_dir]) == final["final_test_error"]


def test_a_relu_on_the_logits_reaches_the_network_and_its_weights(data_dir, tmp_path):
    train("torch_impl", data_dir, tmp_path / "run", "--iterations", "2", "--logit-relu")
    tensors, _, metadata = read_any(tmp_path / "run" / "checkpoints" / "final.safetensors")
    model = model_from_neutral(tensors, metadata)
    assert model.logit_relu
    assert (model(torch.randn(8, 3, 32, 32)) >= 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("backend", TRAINERS)
def test_an_adam_run_resumes_exactly_and_keeps_its_departures(backend, data_dir, tmp_path):
    flags = ("--iterations", "6", "--eval-every", "3", "--optimizer", "adam", "--lr", "0.001", "--no-augment")
    train(backend, data_dir, tmp_path / "whole", *flags)
    sliced = tmp_path / "sliced"
    with pytest.raises(SystemExit) as stopped:
        train(backend, data_dir, sliced, *flags, "--time-budget", "0")
    assert stopped.value.code == 75
    with pytest.raises(SystemExit) as refused:
        train(backend, data_dir, sliced, "--resume", "--optimizer", "sgd")
    assert refused.value.code == 2 and "optimizer" in str(refused.value)
    TRAINERS[backend].main(["--resume", "--run-dir", str(sliced), "--no-progress"])
    assert losses(sliced) == losses(tmp_path / "whole")  # Adam's moments and step count came back bit for bit


def test_the_imagenet_resnet18_is_torchvisions_and_trains_in_torch_only(data_dir, tmp_path, capsys):
    model = build(Recipe(architecture="imagenet-resnet18"))
    assert isinstance(model, torchvision.models.ResNet) and model.fc.out_features == 10
    assert count_parameters(model) == 11_181_642  # torchvision.models.resnet18(num_classes=10)
    # the layout (and so the state_dict names) the ablation's checkpoints were written with
    assert [name for name, _ in model.named_children()] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2",
                                                            "layer3", "layer4", "avgpool", "fc"]
    assert model.layer2[0].downsample is not None and model.layer1[0].downsample is None
    again = build(Recipe(architecture="imagenet-resnet18"))  # seeded: the same weights every time
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    final = train("torch_impl", data_dir, tmp_path / "run", "--iterations", "2", "--architecture", "imagenet-resnet18")
    assert final["parameters"] == 11_181_642 and final["steps_completed"] == 2
    assert not (tmp_path / "run" / "checkpoints" / "final.safetensors").exists()  # not the neutral format's network
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()  # its weights: the resumable checkpoint
    with pytest.raises(SystemExit) as refused:
        train("jax_impl", data_dir, tmp_path / "jax", "--iterations", "2", "--architecture", "imagenet-resnet18")
    assert refused.value.code == 2 and "torch_impl only" in capsys.readouterr().err
    assert not (tmp_path / "jax").exists()


def test_a_1000_way_head_trains_on_labels_0_9_and_is_scored_by_its_argmax_over_1000(data_dir, tmp_path):
    model = build(Recipe(architecture="imagenet-resnet18", imagenet_head=1000))
    assert model.fc.out_features == 1000 and count_parameters(model) == 11_689_512  # resnet18() as it comes
    run = tmp_path / "run"
    flags = ("--iterations", "4", "--eval-every", "2", "--architecture", "imagenet-resnet18", "--imagenet-head", "1000")
    final = train("torch_impl", data_dir, run, *flags)
    assert final["parameters"] == 11_689_512
    assert Recipe.from_dict(json.loads((run / "config.json").read_text())["recipe"]).departures() == {
        "architecture": "imagenet-resnet18", "imagenet_head": 1000}
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["model"]["fc.weight"].shape == (1000, 512)

    class Beyond(torch.nn.Module):  # every image's largest logit is an output no label has
        def forward(self, x):
            logits = torch.zeros(len(x), 1000)
            logits[:, 500] = 1
            return logits
    images = np.zeros((8, 32, 32, 3), np.float32)
    assert torch_evaluate(Beyond(), images, np.arange(8) % 10, 4, torch.device("cpu")) == 1.0
