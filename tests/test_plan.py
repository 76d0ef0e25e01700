"""The augmentation plan and augment(), the recipe, the shared CLI and the run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifar_core import cli, plan
from cifar_core.recipe import PRESETS, Recipe
from cifar_core.run import RunDir, RunDirError, read_metrics

N = 1000


def fresh_plan(seed: int, epoch: int, n: int = N) -> plan.EpochPlan:
    """Bypass the lru_cache so that equal plans are recomputed, not the same object returned twice."""
    return plan.epoch_plan.__wrapped__(seed, epoch, n)


# ----------------------------------------------------------------------------------------------- epoch plan


def test_same_seed_and_epoch_same_plan():
    a, b = fresh_plan(3, 7), fresh_plan(3, 7)
    assert a is not b
    np.testing.assert_array_equal(a.order, b.order)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.flips, b.flips)
    assert plan.plan_hash(3, 7, N) == plan.plan_hash(3, 7, N)


@pytest.mark.parametrize("other", [(3, 8), (4, 7), (0, 0)])
def test_other_epoch_or_seed_differs(other):
    a, b = fresh_plan(3, 7), fresh_plan(*other)
    assert not np.array_equal(a.order, b.order)
    assert not np.array_equal(a.offsets, b.offsets)
    assert not np.array_equal(a.flips, b.flips)
    assert plan.plan_hash(3, 7, N) != plan.plan_hash(*other, N)


def test_plan_contents():
    p = fresh_plan(0, 0)
    assert p.order.shape == (N,) and p.offsets.shape == (N, 2) and p.flips.shape == (N,)
    np.testing.assert_array_equal(np.sort(p.order), np.arange(N))  # a permutation
    assert not np.array_equal(p.order, np.arange(N))
    assert p.offsets.min() == 0 and p.offsets.max() == 2 * plan.PAD == 8  # all of [0, 8], nothing outside
    assert set(np.unique(p.offsets).tolist()) == set(range(9))
    assert p.flips.dtype == np.bool_
    assert 0 < p.flips.sum() < N


def test_plan_hash_is_a_digest_of_the_plan():
    import hashlib
    p = fresh_plan(5, 2)
    digest = hashlib.sha256()
    digest.update(p.order.astype("<i8").tobytes())
    digest.update(p.offsets.astype("<i8").tobytes())
    digest.update(p.flips.astype("u1").tobytes())
    assert plan.plan_hash(5, 2, N) == digest.hexdigest()


# ----------------------------------------------------------------------------------------------- batch plan


def test_steps_per_epoch():
    assert plan.steps_per_epoch(45_000, 128) == 351  # 72 images dropped
    assert plan.steps_per_epoch(100, 32) == 3
    assert plan.steps_per_epoch(96, 32) == 3
    assert plan.steps_per_epoch(32, 32) == 1
    with pytest.raises(ValueError, match="batch size"):
        plan.steps_per_epoch(31, 32)


def test_batch_plan_maps_steps_to_epochs():
    n, bs, seed = 100, 32, 9  # 3 steps per epoch, 4 images dropped each epoch
    for step, (epoch, position) in {0: (0, 0), 1: (0, 1), 2: (0, 2), 3: (1, 0), 5: (1, 2), 7: (2, 1)}.items():
        bp = plan.batch_plan(seed, step, n, bs)
        ep = fresh_plan(seed, epoch, n)
        window = slice(position * bs, (position + 1) * bs)
        np.testing.assert_array_equal(bp.rows, ep.order[window])
        np.testing.assert_array_equal(bp.offsets, ep.offsets[window])
        np.testing.assert_array_equal(bp.flips, ep.flips[window])
        assert len(bp.rows) == bs
    # one epoch's steps visit bs * steps distinct images, and leave out exactly the tail of the permutation
    seen = np.concatenate([plan.batch_plan(seed, s, n, bs).rows for s in range(3)])
    assert len(np.unique(seen)) == 96
    np.testing.assert_array_equal(np.sort(np.setdiff1d(np.arange(n), seen)), np.sort(fresh_plan(seed, 0, n).order[96:]))


def test_shard_splits_contiguously():
    bp = plan.batch_plan(1, 4, N, 64)
    shards = [bp.shard(i, 4) for i in range(4)]
    for i, s in enumerate(shards):
        assert len(s.rows) == 16
        np.testing.assert_array_equal(s.rows, bp.rows[i * 16:(i + 1) * 16])
        np.testing.assert_array_equal(s.offsets, bp.offsets[i * 16:(i + 1) * 16])
        np.testing.assert_array_equal(s.flips, bp.flips[i * 16:(i + 1) * 16])
    np.testing.assert_array_equal(np.concatenate([s.rows for s in shards]), bp.rows)
    np.testing.assert_array_equal(np.concatenate([s.offsets for s in shards]), bp.offsets)
    np.testing.assert_array_equal(np.concatenate([s.flips for s in shards]), bp.flips)
    whole = bp.shard(0, 1)
    np.testing.assert_array_equal(whole.rows, bp.rows)


# ----------------------------------------------------------------------------------------------- augment


def coded_image() -> np.ndarray:
    """Pixel (r, c, ch) holds 1 + 1000 r + 10 c + ch: nonzero everywhere, so padding shows as 0."""
    r, c, ch = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    return (1 + 1000 * r + 10 * c + ch).astype(np.float32)


def reference_augment(image: np.ndarray, dy: int, dx: int, flip: bool) -> np.ndarray:
    """Pad by 4 with zeros, cut the 32x32 window at (dy, dx), mirror it left-right: one pixel at a time."""
    out = np.empty((32, 32, 3), image.dtype)
    for i in range(32):
        for j in range(32):
            jj = 31 - j if flip else j
            r, c = dy + i - 4, dx + jj - 4  # source pixel of padded pixel (dy + i, dx + jj)
            for ch in range(3):
                out[i, j, ch] = image[r, c, ch] if 0 <= r < 32 and 0 <= c < 32 else 0.0
    return out


CASES = [(dy, dx, flip) for dy, dx in [(0, 0), (8, 8), (4, 4), (0, 8), (8, 0), (3, 6), (7, 1)]
         for flip in (False, True)]


def test_augment_pixel_by_pixel():
    image = coded_image()
    images = np.stack([image] * len(CASES))
    offsets = np.array([(dy, dx) for dy, dx, _ in CASES])
    flips = np.array([f for _, _, f in CASES])
    out = plan.augment(images, offsets, flips)  # one batch: each image gets its own offset and flip
    assert out.shape == (len(CASES), 32, 32, 3) and out.dtype == np.float32
    for k, (dy, dx, flip) in enumerate(CASES):
        np.testing.assert_array_equal(out[k], reference_augment(image, dy, dx, flip), err_msg=str(CASES[k]))


def test_augment_padding_and_flip_by_hand():
    image = coded_image()

    def one(dy, dx, flip):
        return plan.augment(image[None], np.array([[dy, dx]]), np.array([flip]))[0]

    np.testing.assert_array_equal(one(4, 4, False), image)  # the centre window is the image
    np.testing.assert_array_equal(one(4, 4, True), image[:, ::-1])
    top_left = one(0, 0, False)  # 4 zero rows on top, 4 zero columns on the left
    assert np.all(top_left[:4] == 0) and np.all(top_left[:, :4] == 0)
    np.testing.assert_array_equal(top_left[4:, 4:], image[:28, :28])
    assert np.all(top_left[4:, 4:] > 0)
    bottom_right = one(8, 8, False)  # 4 zero rows at the bottom, 4 zero columns on the right
    assert np.all(bottom_right[28:] == 0) and np.all(bottom_right[:, 28:] == 0)
    np.testing.assert_array_equal(bottom_right[:28, :28], image[4:, 4:])
    assert np.all(bottom_right[:28, :28] > 0)
    # the flip mirrors the cropped window (padding included), not the image before cropping
    for dy, dx in [(0, 0), (8, 8), (2, 7)]:
        np.testing.assert_array_equal(one(dy, dx, True), one(dy, dx, False)[:, ::-1])
    flipped = one(0, 0, True)
    assert np.all(flipped[:4] == 0) and np.all(flipped[:, 28:] == 0) and np.all(flipped[4:, :28] > 0)
    np.testing.assert_array_equal(flipped[4:, 0], image[:28, 27])  # column 27 of the image ends up first
    assert flipped[4, 0, 1] == 1 + 1000 * 0 + 10 * 27 + 1


def test_augment_distinct_images_keep_their_own_plans():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((8, 32, 32, 3)).astype(np.float32)
    offsets = rng.integers(0, 9, size=(8, 2))
    flips = rng.integers(0, 2, size=8).astype(bool)
    out = plan.augment(images, offsets, flips)
    for k in range(8):
        np.testing.assert_array_equal(out[k], reference_augment(images[k], *offsets[k], flips[k]))


# ----------------------------------------------------------------------------------------------- streams


@pytest.fixture(scope="module")
def stream():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((100, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, size=100)
    return plan.TrainStream(images, labels, seed=2, batch_size=32)


@pytest.mark.parametrize("step", [0, 2, 3, 10])
@pytest.mark.parametrize("num_shards", [2, 4])
def test_sharded_batches_concatenate_to_the_batch(stream, step, num_shards):
    x, y = stream.batch(step)
    parts = [stream.batch(step, i, num_shards) for i in range(num_shards)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)


def test_train_stream_batch_is_the_planned_batch(stream):
    assert stream.steps_per_epoch == 3
    x, y = stream.batch(4)
    bp = plan.batch_plan(2, 4, 100, 32)
    assert x.shape == (32, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(y, stream.labels[bp.rows])
    for k in range(32):
        np.testing.assert_array_equal(x[k], reference_augment(stream.images[bp.rows[k]], *bp.offsets[k],
                                                              bp.flips[k]))
    assert stream.epoch_of(3) == 1.0 and stream.epoch_of(4) == pytest.approx(4 / 3)
    assert not np.array_equal(stream.batch(4)[0], stream.batch(5)[0])


def test_eval_batches_in_order_with_short_last_batch():
    images = np.arange(25 * 2).reshape(25, 2).astype(np.float32)
    labels = np.arange(25) % 10
    batches = list(plan.eval_batches(images, labels, 10))
    assert [len(x) for x, _ in batches] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), images)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), labels)
    assert all(y.dtype == np.int32 for _, y in batches)
    assert [len(x) for x, _ in plan.eval_batches(images, labels, 25)] == [25]


# ----------------------------------------------------------------------------------------------- recipe


def test_paper_recipe_milestones_and_lr():
    r = Recipe()
    assert r.iterations == 64_000 and r.milestones == (32_000, 48_000)
    assert r.lr_at(0) == 0.1 and r.lr_at(31_999) == 0.1
    assert r.lr_at(32_000) == pytest.approx(0.1 * 0.1, rel=1e-15) and r.lr_at(47_999) == r.lr_at(32_000)
    assert r.lr_at(48_000) == pytest.approx(0.1 * 0.01, rel=1e-12) and r.lr_at(63_999) == r.lr_at(48_000)
    assert r.lr_values() == (0.1, 0.1 * 0.1, 0.1 * 0.1 ** 2)
    assert r.blocks_per_stage == 5


def test_milestones_scale_with_iterations():
    assert Recipe(iterations=2000).milestones == (1000, 1500)
    assert Recipe(iterations=60).milestones == (30, 45)
    r = Recipe(iterations=2000, lr=0.2, lr_decay=0.5)
    assert [r.lr_at(s) for s in (999, 1000, 1499, 1500)] == [0.2, 0.1, 0.1, 0.05]


@pytest.mark.parametrize("depth", [0, 2, 7, 9, 21, 33, 111])
def test_invalid_depth(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        Recipe(depth=depth)


@pytest.mark.parametrize("depth,n", [(8, 1), (20, 3), (56, 9), (110, 18)])
def test_valid_depths(depth, n):
    assert Recipe(depth=depth).blocks_per_stage == n


@pytest.mark.parametrize("field", ["batch_size", "iterations", "eval_every", "log_every", "eval_batch_size"])
def test_non_positive_counts_rejected(field):
    with pytest.raises(ValueError, match=field.replace("_", "-")):
        Recipe(**{field: 0})


def test_recipe_dict_round_trip():
    r = Recipe(depth=20, iterations=1000, seed=4, milestone_fractions=(0.25, 0.5, 0.75))
    d = json.loads(json.dumps(r.to_dict()))
    assert d["milestones"] == [250, 500, 750]
    assert Recipe.from_dict(d) == r


# ----------------------------------------------------------------------------------------------- cli


def parse(*argv):
    return cli.recipe_from_args(cli.build_parser("torch_impl").parse_args(list(argv)))


def test_cli_default_is_the_paper():
    assert parse() == PRESETS["paper"] == Recipe()


def test_cli_smoke_preset():
    r = parse("--preset", "smoke")
    assert (r.depth, r.iterations, r.eval_every, r.log_every) == (8, 60, 30, 10)
    assert r.milestones == (30, 45)


def test_cli_overrides():
    r = parse("--preset", "smoke", "--depth", "20", "--batch-size", "64", "--lr", "0.05", "--seed", "3",
              "--split-seed", "7", "--log-every", "5", "--full-train")
    assert (r.depth, r.batch_size, r.lr, r.seed, r.split_seed, r.log_every, r.full_train) == \
        (20, 64, 0.05, 3, 7, 5, True)
    assert (r.iterations, r.eval_every) == (60, 30)  # untouched preset values
    assert parse().full_train is False


def test_cli_iterations_rescale_eval_every():
    assert parse("--iterations", "2000").eval_every == 100
    assert parse("--preset", "smoke", "--iterations", "200").eval_every == 10
    assert parse("--iterations", "10").eval_every == 1
    r = parse("--iterations", "2000", "--eval-every", "250")
    assert (r.iterations, r.eval_every, r.milestones) == (2000, 250, (1000, 1500))
    assert parse("--eval-every", "7").eval_every == 7 and parse("--eval-every", "7").iterations == 64_000


def test_cli_resume_takes_the_recipe_from_the_run(tmp_path):
    path = tmp_path / "run"
    saved = Recipe(depth=20, iterations=2000, eval_every=250, full_train=True)
    make_run(path, saved)
    assert parse("--resume", "--run-dir", str(path)) == saved
    assert parse("--resume", "--run-dir", str(path), "--iterations", "2000", "--full-train") == saved
    given = parse("--resume", "--run-dir", str(path), "--iterations", "4000")  # RunDir then refuses it
    assert given.iterations == 4000 and given.eval_every == 250
    with pytest.raises(RunDirError, match="different recipe"):
        RunDir(path, "torch_impl", given, resume=True)
    with pytest.raises(RunDirError, match="needs --run-dir"):
        parse("--resume")
    with pytest.raises(RunDirError, match="no config.json"):
        parse("--resume", "--run-dir", str(tmp_path / "nowhere"))


def test_cli_resume_reads_the_data_from_where_the_run_read_it(tmp_path):
    args = lambda *argv: cli.build_parser("torch_impl").parse_args(list(argv))  # noqa: E731
    archive_dir = tmp_path / "cifar"
    archive_dir.mkdir()
    archive = {"data": {"source": str(archive_dir / "cifar-10-python.tar.gz")}}
    tfds_root = tmp_path / "tfds"
    (tfds_root / "cifar10" / "3.0.2").mkdir(parents=True)
    tfds = {"data": {"source": f"tfds:{tfds_root / 'cifar10' / '3.0.2'}"}}
    assert cli.data_location(args(), None) == (None, "auto", None)  # a new run: the usual search
    assert cli.data_location(args("--data-dir", "x", "--data-source", "archive"), None) == ("x", "archive", None)
    assert cli.data_location(args("--resume"), archive) == (str(archive_dir), "auto", None)
    assert cli.data_location(args("--resume", "--data-dir", "x"), archive) == ("x", "auto", None)  # flags win
    assert cli.data_location(args("--resume"), tfds) == (None, "tfds", str(tfds_root))
    assert cli.data_location(args("--resume", "--tfds-data-dir", "t"), tfds) == (None, "tfds", "t")
    assert cli.data_location(args("--resume", "--data-source", "archive"), tfds) == (None, "archive", None)
    archive_dir.rmdir()
    for folder in (tfds_root / "cifar10" / "3.0.2", tfds_root / "cifar10", tfds_root):
        folder.rmdir()
    # where the run's copy has gone, the usual search (which says what it could not find)
    assert cli.data_location(args("--resume"), archive) == (None, "auto", None)
    assert cli.data_location(args("--resume"), tfds) == (None, "tfds", None)


@pytest.mark.parametrize("text, seconds", [("5400", 5400), ("5400s", 5400), ("90m", 5400), ("2h20m", 8400),
                                           ("1h30m15s", 5415), ("0.5h", 1800), ("2:20:00", 8400), ("20:00", 1200)])
def test_cli_time_budget_durations(text, seconds):
    assert cli.build_parser("jax_impl").parse_args(["--time-budget", text]).time_budget == seconds


@pytest.mark.parametrize("text", ["", "soon", "2x", "h", "1:2:3:4", "-5"])
def test_cli_time_budget_rejects_what_is_not_a_duration(text, capsys):
    with pytest.raises(SystemExit):
        cli.build_parser("jax_impl").parse_args(["--time-budget", text])
    assert "is not a duration" in capsys.readouterr().err


def test_cli_rejects_bad_values():
    with pytest.raises(SystemExit):
        cli.build_parser("jax_impl").parse_args(["--preset", "nope"])
    with pytest.raises(ValueError):
        parse("--depth", "33")


# ----------------------------------------------------------------------------------------------- run dir


def make_run(path, recipe=Recipe(depth=8, iterations=60), **kwargs):
    run = RunDir(path, "torch_impl", recipe, **kwargs)
    run.write_config({"note": "test"}, {"numpy": np.__version__}, ["cpu"], {"n_train": 90})
    return run


def test_run_dir_refuses_an_existing_run(tmp_path):
    path = tmp_path / "run"
    run = make_run(path)
    run.log({"kind": "train", "step": 10, "loss": 2.0})
    before = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    assert set(before) == {"config.json", "metrics.jsonl"}
    with pytest.raises(RunDirError, match="--resume") as error:
        RunDir(path, "torch_impl", Recipe(depth=8, iterations=60))
    assert "nothing was overwritten" in str(error.value)
    assert {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()} == before
    # metrics alone are enough to count as a run
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(RunDirError):
        RunDir(other, "torch_impl", Recipe())
    assert (other / "metrics.jsonl").read_text() == '{"step": 1}\n'


def test_run_dir_resume(tmp_path):
    path = tmp_path / "run"
    recipe = Recipe(depth=8, iterations=60)
    make_run(path, recipe)
    config = json.loads((path / "config.json").read_text())
    assert config["recipe"] == recipe.to_dict() and config["backend"] == "torch_impl"
    resumed = make_run(path, recipe, resume=True)  # same recipe: accepted
    config = json.loads((path / "config.json").read_text())
    assert [sl["from_step"] for sl in config["slices"]] == [0, 0] and config["options"] == {"note": "test"}
    assert resumed.path == path
    with pytest.raises(RunDirError, match="different recipe") as error:
        RunDir(path, "torch_impl", Recipe(depth=8, iterations=120), resume=True)
    assert "iterations" in str(error.value)
    with pytest.raises(RunDirError, match="jax_impl|torch_impl"):
        RunDir(path, "jax_impl", recipe, resume=True)
    with pytest.raises(RunDirError, match="no config.json"):
        RunDir(tmp_path / "empty", "torch_impl", recipe, resume=True)


def test_truncate_metrics(tmp_path):
    run = make_run(tmp_path / "run")
    for step in (10, 20, 30, 40):
        run.log({"kind": "train", "step": step, "loss": 1.0 / step})
    run.log({"kind": "eval", "step": 30, "val_error": 0.5})
    run.truncate_metrics(25)
    assert [(r["kind"], r["step"]) for r in read_metrics(run.metrics_path)] == [("train", 10), ("train", 20)]
    run.truncate_metrics(20)  # the boundary step is kept
    assert [r["step"] for r in read_metrics(run.metrics_path)] == [10, 20]
    run.log({"kind": "train", "step": 30, "loss": 0.1})
    assert [r["step"] for r in read_metrics(run.metrics_path)] == [10, 20, 30]
    assert not list(run.path.glob("*.tmp"))


def test_non_writer_rank_writes_nothing(tmp_path):
    path = tmp_path / "run"
    run = RunDir(path, "torch_impl", Recipe(depth=8), write=False)
    run.write_config({}, {}, [], {})
    run.log({"step": 1})
    run.write_final({"x": 1})
    assert not path.exists()
