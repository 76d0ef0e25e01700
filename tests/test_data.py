"""cifar_core.data on tiny archives written by conftest: decoding, cache, search order, errors, split, mean."""

from __future__ import annotations

import hashlib
import os
import pickle
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest

from cifar_core import data, pipeline
from cifar_core.recipe import Recipe

# The tiny archives are not official CIFAR-10, so every first decode warns; the warning has its own test.
pytestmark = pytest.mark.filterwarnings("ignore:.*SHA-256.*:UserWarning")


def assert_matches_tiny(dataset: data.Cifar10, tiny) -> None:
    np.testing.assert_array_equal(dataset.train_images, tiny.to_nhwc(tiny.train_rows))
    np.testing.assert_array_equal(dataset.test_images, tiny.to_nhwc(tiny.test_rows))
    np.testing.assert_array_equal(dataset.train_labels, tiny.train_labels)
    np.testing.assert_array_equal(dataset.test_labels, tiny.test_labels)
    assert dataset.train_images.shape == (100, 32, 32, 3) and dataset.train_images.dtype == np.uint8
    assert dataset.test_images.shape == (20, 32, 32, 3) and dataset.test_images.dtype == np.uint8
    assert dataset.train_labels.dtype == np.int64 and dataset.test_labels.dtype == np.int64
    assert dataset.content_sha256 == {"train": hashlib.sha256(tiny.train_rows.tobytes()).hexdigest(),
                                      "test": hashlib.sha256(tiny.test_rows.tobytes()).hexdigest()}


# ----------------------------------------------------------------------------------------------- decoding


def test_nhwc_conversion_of_a_known_row():
    row = np.zeros((1, 3072), np.uint8)
    row[0, 0 * 1024 + 5 * 32 + 7] = 11  # red at (y=5, x=7)
    row[0, 1 * 1024 + 0 * 32 + 31] = 22  # green at (0, 31)
    row[0, 2 * 1024 + 31 * 32 + 0] = 33  # blue at (31, 0)
    image = data._rows_to_nhwc(row)[0]
    assert image.shape == (32, 32, 3)
    assert image[5, 7, 0] == 11 and image[0, 31, 1] == 22 and image[31, 0, 2] == 33
    assert int(image.sum()) == 66


def test_decode_every_layout_and_key_convention(tiny, tiny_any):
    dataset = data.load(tiny_any, download=False)
    assert_matches_tiny(dataset, tiny)


@pytest.mark.parametrize("layout", ["tar", "dir"])
def test_source_is_found_from_parent_or_itself(tiny, tmp_path, layout):
    root = tiny.write(tmp_path / "d", layout)
    expected = root / (data.ARCHIVE_NAME if layout == "tar" else data.BATCHES_DIR)
    assert data.locate(root, download=False) == expected
    assert_matches_tiny(data.load(root, download=False), tiny)


def test_data_dir_may_be_the_batches_folder_itself(tiny, tmp_path):
    folder = tiny.write(tmp_path / "d", "dir", "bytes") / data.BATCHES_DIR
    assert data.locate(folder, download=False) == folder
    assert_matches_tiny(data.load(folder, download=False), tiny)


def test_decode_directly_matches(tiny, tiny_tar):
    assert_matches_tiny(data.decode(tiny_tar / data.ARCHIVE_NAME), tiny)


# ----------------------------------------------------------------------------------------------- cache


def test_second_load_uses_the_cache(tiny, tiny_tar, cache_dir, monkeypatch):
    first = data.load(tiny_tar, download=False)
    cached = list((cache_dir / "decoded").iterdir())
    assert len(cached) == 1 and (cached[0] / "meta.json").is_file()

    def no_decode(source):
        raise AssertionError(f"decoded {source} again instead of reading the cache")

    monkeypatch.setattr(data, "decode", no_decode)
    second = data.load(tiny_tar, download=False)
    assert_matches_tiny(second, tiny)
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name))
        assert getattr(second, name).dtype == getattr(first, name).dtype
    assert second.content_sha256 == first.content_sha256
    assert second.source == first.source == str(tiny_tar / data.ARCHIVE_NAME)


def test_cache_is_keyed_by_the_source(tiny, tmp_path, cache_dir):
    a = tiny.write(tmp_path / "a", "tar")
    b = tiny.write(tmp_path / "b", "dir")
    data.load(a, download=False)
    data.load(b, download=False)
    assert len(list((cache_dir / "decoded").iterdir())) == 2


def test_damaged_cache_is_rebuilt(tiny, tiny_tar, cache_dir):
    data.load(tiny_tar, download=False)
    (cached,) = (cache_dir / "decoded").iterdir()
    (cached / "train_images.npy").write_bytes(b"not an npy file")
    assert_matches_tiny(data.load(tiny_tar, download=False), tiny)


# ----------------------------------------------------------------------------------------------- search order


def test_search_order(tiny, tmp_path, cache_dir, monkeypatch):
    flag_dir = tiny.write(tmp_path / "flag", "tar")
    env_dir = tiny.write(tmp_path / "env", "dir")
    tiny.write(cache_dir, "tar")  # the cache root itself may hold the archive
    monkeypatch.setenv("CIFAR10_DIR", str(env_dir))

    def fail_download(*args, **kwargs):
        raise AssertionError("must not download when the data is present")

    monkeypatch.setattr(data, "download_archive", fail_download)
    assert data.locate(flag_dir) == flag_dir / data.ARCHIVE_NAME  # --data-dir beats $CIFAR10_DIR
    assert data.locate(None) == env_dir / data.BATCHES_DIR  # $CIFAR10_DIR beats the cache
    monkeypatch.delenv("CIFAR10_DIR")
    assert data.locate(None) == cache_dir / data.ARCHIVE_NAME  # then the cache
    assert data.load(None).source == str(cache_dir / data.ARCHIVE_NAME)


def test_cache_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_CIFAR_CACHE", str(tmp_path / "explicit"))
    assert data.cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("RESNET_CIFAR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_root() == tmp_path / "xdg" / "resnet-cifar"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.cache_root() == Path(os.path.expanduser("~")) / ".cache" / "resnet-cifar"


def test_missing_data_dir_is_an_error(tmp_path):
    with pytest.raises(data.DataError, match="does not exist") as error:
        data.load(tmp_path / "nowhere")
    assert "--data-dir" in str(error.value) and "nowhere" in str(error.value)


def test_empty_data_dir_without_fallback_names_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DataError) as error:
        data.locate(empty, download=True)
    assert str(empty) in str(error.value) and data.ARCHIVE_NAME in str(error.value)


def test_offline_failure_names_the_remedies(cache_dir, monkeypatch):
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(data.time, "sleep", lambda seconds: None)
    with pytest.raises(data.DataError) as error:
        data.load(None)
    message = str(error.value)
    assert "--data-dir" in message and "CIFAR10_DIR" in message
    assert "download failed" in message and "no network in tests" in message
    assert calls == [data.URL] * 3
    assert not list(cache_dir.glob("*.part")) and not (cache_dir / data.ARCHIVE_NAME).exists()


def test_no_download_allowed_names_the_remedies(monkeypatch):
    monkeypatch.setattr(data, "download_archive", lambda *a, **k: pytest.fail("download attempted"))
    with pytest.raises(data.DataError) as error:
        data.load(None, download=False)
    assert "--data-dir" in str(error.value) and "CIFAR10_DIR" in str(error.value)


# ----------------------------------------------------------------------------------------------- content check


def test_user_archive_with_other_content_warns(tiny_tar):
    with pytest.warns(UserWarning, match="SHA-256") as record:
        data.load(tiny_tar, download=False)
    message = str(record[0].message)
    assert "train and test" in message and str(tiny_tar / data.ARCHIVE_NAME) in message


def test_user_folder_with_other_content_warns(tiny_dir):
    with pytest.warns(UserWarning, match="SHA-256"):
        data.load(tiny_dir, download=False)


def test_official_md5_is_accepted_without_warning(tiny, tiny_tar, monkeypatch):
    monkeypatch.setattr(data, "ARCHIVE_MD5", data.md5_of(tiny_tar / data.ARCHIVE_NAME))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_matches_tiny(data.load(tiny_tar, download=False), tiny)


def test_matching_content_hashes_are_accepted_without_warning(tiny, tiny_dir, monkeypatch):
    monkeypatch.setattr(data, "CONTENT_SHA256", {"train": hashlib.sha256(tiny.train_rows.tobytes()).hexdigest(),
                                                 "test": hashlib.sha256(tiny.test_rows.tobytes()).hexdigest()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load(tiny_dir, download=False)


def test_only_differing_part_is_named(tiny, tiny_dir, monkeypatch):
    monkeypatch.setattr(data, "CONTENT_SHA256", {"train": hashlib.sha256(tiny.train_rows.tobytes()).hexdigest(),
                                                 "test": "0" * 64})
    with pytest.warns(UserWarning, match="SHA-256") as record:
        data.load(tiny_dir, download=False)
    message = str(record[0].message)
    assert "the test images differ" in message and "train" not in message.replace(str(tiny_dir), "")


# ----------------------------------------------------------------------------------------------- damaged input


@pytest.mark.parametrize("layout", ["tar", "dir"])
def test_missing_batch_file(tiny, tmp_path, layout):
    root = tiny.write(tmp_path / "d", layout, drop=("data_batch_3",))
    with pytest.raises(data.DataError, match="missing data_batch_3") as error:
        data.load(root, download=False)
    assert "incomplete" in str(error.value)
    assert str(root / (data.ARCHIVE_NAME if layout == "tar" else data.BATCHES_DIR)) in str(error.value)


@pytest.mark.parametrize("layout", ["tar", "dir"])
def test_truncated_pickle(tiny, tmp_path, layout):
    whole = tiny.file_bytes()["data_batch_2"]
    root = tiny.write(tmp_path / "d", layout, replace={"data_batch_2": whole[:len(whole) // 2]})
    with pytest.raises(data.DataError, match="cannot unpickle") as error:
        data.load(root, download=False)
    assert "data_batch_2" in str(error.value) and "damaged" in str(error.value)


class _RunsCode:
    """Unpickling this calls os.remove on a file: what a crafted batch could do with any other call."""

    def __init__(self, victim):
        self.victim = str(victim)

    def __reduce__(self):
        import os
        return (os.remove, (self.victim,))


@pytest.mark.parametrize("layout", ["tar", "dir"])
def test_a_batch_that_would_run_code_is_refused_unrun(tiny, tmp_path, layout):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    crafted = pickle.dumps({b"data": _RunsCode(victim), b"labels": [0]}, protocol=2)
    root = tiny.write(tmp_path / "d", layout, replace={"data_batch_3": crafted})
    with pytest.raises(data.DataError, match="cannot unpickle") as error:
        data.load(root, download=False)
    assert "data_batch_3" in str(error.value) and "refusing to load" in str(error.value)
    assert victim.read_text() == "keep me"


def test_not_a_dict(tiny, tmp_path):
    root = tiny.write(tmp_path / "d", "dir", replace={"test_batch": pickle.dumps([1, 2, 3], protocol=2)})
    with pytest.raises(data.DataError, match="expected a dict") as error:
        data.load(root, download=False)
    assert "test_batch" in str(error.value)


@pytest.mark.parametrize("keys", ["str", "bytes"])
def test_wrong_array_shape(tiny, tmp_path, keys):
    bad = np.zeros((20, 3000), np.uint8)
    root = tiny.write(tmp_path / "d", "dir", keys, replace={"data_batch_4": {"data": bad}})
    with pytest.raises(data.DataError, match=r"\(N, 3072\)") as error:
        data.load(root, download=False)
    assert "data_batch_4" in str(error.value) and "(20, 3000)" in str(error.value)


def test_wrong_dtype(tiny, tmp_path):
    root = tiny.write(tmp_path / "d", "dir", replace={"data_batch_1": {"data": tiny.rows["data_batch_1"]
                                                                       .astype(np.float32)}})
    with pytest.raises(data.DataError, match="uint8") as error:
        data.load(root, download=False)
    assert "data_batch_1" in str(error.value) and "float32" in str(error.value)


@pytest.mark.parametrize("bad_label", [10, -1])
@pytest.mark.parametrize("keys", ["str", "bytes"])
def test_labels_out_of_range(tiny, tmp_path, bad_label, keys):
    labels = list(tiny.labels["test_batch"])
    labels[7] = bad_label
    root = tiny.write(tmp_path / "d", "tar", keys, replace={"test_batch": {"labels": labels}})
    with pytest.raises(data.DataError, match="out of range") as error:
        data.load(root, download=False)
    assert "test_batch" in str(error.value) and str(bad_label) in str(error.value)


def test_wrong_label_count(tiny, tmp_path):
    labels = list(tiny.labels["data_batch_5"])[:-3]
    root = tiny.write(tmp_path / "d", "dir", replace={"data_batch_5": {"labels": labels}})
    with pytest.raises(data.DataError, match="17 labels for 20 images") as error:
        data.load(root, download=False)
    assert "data_batch_5" in str(error.value)


def test_missing_key(tiny, tmp_path):
    content = tiny.batch_dict("data_batch_1")
    del content["labels"]
    root = tiny.write(tmp_path / "d", "dir", replace={"data_batch_1": pickle.dumps(content, protocol=2)})
    with pytest.raises(data.DataError, match="no 'labels' entry") as error:
        data.load(root, download=False)
    assert "data_batch_1" in str(error.value)


def test_non_gzip_archive(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / data.ARCHIVE_NAME).write_bytes(b"<html>404 Not Found</html>\n" * 10)
    with pytest.raises(data.DataError, match=r"not a readable \.tar\.gz") as error:
        data.load(root, download=False)
    assert str(root / data.ARCHIVE_NAME) in str(error.value)


def test_truncated_archive(tiny, tmp_path):
    root = tiny.write(tmp_path / "d", "tar")
    archive = root / data.ARCHIVE_NAME
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(data.DataError) as error:
        data.load(root, download=False)
    assert str(archive) in str(error.value)


# ----------------------------------------------------------------------------------------------- download


def test_download_from_file_url(tiny, tmp_path, monkeypatch):
    source = tiny.write(tmp_path / "server", "tar") / data.ARCHIVE_NAME
    monkeypatch.setattr(data, "ARCHIVE_MD5", data.md5_of(source))
    monkeypatch.setattr(data.time, "sleep", lambda s: pytest.fail("retried a good download"))
    dest = tmp_path / "dest"
    real_urlopen = urllib.request.urlopen
    seen_during_transfer = []

    class Watched:  # a response that looks at the destination folder while the bytes are still coming
        def __init__(self, response):
            self.response = response

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.response.close()

        def read(self, size=-1):
            seen_during_transfer.append(sorted(p.name for p in dest.iterdir()))
            return self.response.read(min(size, 1000))

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, **kw: Watched(real_urlopen(url, **kw)))
    target = data.download_archive(dest, url=source.as_uri())
    # while downloading, only a .part file exists; the archive appears in one rename at the end
    assert len(seen_during_transfer) > 2
    for names in seen_during_transfer:
        assert len(names) == 1 and names[0].endswith(".part") and data.ARCHIVE_NAME not in names
    assert target == dest / data.ARCHIVE_NAME
    assert target.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == [data.ARCHIVE_NAME]  # no .part left behind
    assert_matches_tiny(data.load(dest, download=False), tiny)


def test_download_through_load_into_the_cache(tiny, tmp_path, cache_dir, monkeypatch):
    source = tiny.write(tmp_path / "server", "tar") / data.ARCHIVE_NAME
    monkeypatch.setattr(data, "ARCHIVE_MD5", data.md5_of(source))
    monkeypatch.setattr(data, "URL", source.as_uri())
    # download_archive's default url was bound at definition time; route the call through the patched URL.
    real = data.download_archive
    monkeypatch.setattr(data, "download_archive", lambda directory: real(directory, url=data.URL))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the MD5 matches: no content warning
        assert_matches_tiny(data.load(None), tiny)
    assert (cache_dir / data.ARCHIVE_NAME).read_bytes() == source.read_bytes()
    assert not list(cache_dir.glob("*.part"))


def test_download_with_wrong_md5_fails_after_retries(tiny, tmp_path, monkeypatch):
    source = tiny.write(tmp_path / "server", "tar") / data.ARCHIVE_NAME
    monkeypatch.setattr(data, "ARCHIVE_MD5", "0" * 32)
    sleeps = []
    monkeypatch.setattr(data.time, "sleep", sleeps.append)
    opened = []
    real_urlopen = urllib.request.urlopen

    def counting_urlopen(url, *args, **kwargs):
        opened.append(url)
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", counting_urlopen)
    dest = tmp_path / "dest"
    with pytest.raises(data.DataError) as error:
        data.download_archive(dest, url=source.as_uri(), attempts=3)
    assert "MD5" in str(error.value) and "--data-dir" in str(error.value)
    assert len(opened) == 3 and sleeps == [2, 4]
    assert list(dest.iterdir()) == []  # neither the archive nor any .part file


# ----------------------------------------------------------------------------------------------- split


def synthetic_labels(per_class: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(10), per_class))


def test_split_sizes_on_cifar_sized_labels():
    labels = synthetic_labels(5000)
    train, val = data.split_indices(labels, 0.1, seed=0)
    assert len(train) == 45000 and len(val) == 5000
    assert np.bincount(labels[val], minlength=10).tolist() == [500] * 10
    assert np.bincount(labels[train], minlength=10).tolist() == [4500] * 10


@pytest.mark.parametrize("fraction,per_class", [(0.1, 10), (0.2, 10), (0.1, 30)])
def test_split_is_stratified_disjoint_and_complete(fraction, per_class):
    labels = synthetic_labels(per_class)
    train, val = data.split_indices(labels, fraction, seed=3)
    expected = round(per_class * fraction)
    assert np.bincount(labels[val], minlength=10).tolist() == [expected] * 10
    assert np.bincount(labels[train], minlength=10).tolist() == [per_class - expected] * 10
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)  # sorted, no repeats
    assert train.dtype == np.int64 and val.dtype == np.int64


def test_split_depends_on_split_seed_only():
    labels = synthetic_labels(100)
    a_train, a_val = data.split_indices(labels, 0.1, seed=0)
    b_train, b_val = data.split_indices(labels, 0.1, seed=0)
    np.testing.assert_array_equal(a_val, b_val)
    np.testing.assert_array_equal(a_train, b_train)
    _, c_val = data.split_indices(labels, 0.1, seed=1)
    assert not np.array_equal(a_val, c_val)


def test_make_splits_on_tiny(tiny, tiny_tar):
    dataset = data.load(tiny_tar, download=False)
    splits = data.make_splits(dataset, 0.1, split_seed=0)
    assert len(splits.train_indices) == 90 and len(splits.val_indices) == 10
    assert np.bincount(tiny.train_labels[splits.val_indices], minlength=10).tolist() == [1] * 10
    other = data.make_splits(dataset, 0.1, split_seed=1)
    assert not np.array_equal(splits.val_indices, other.val_indices)
    again = data.make_splits(dataset, 0.1, split_seed=0)
    np.testing.assert_array_equal(splits.val_indices, again.val_indices)
    np.testing.assert_array_equal(splits.mean_image, again.mean_image)


def test_split_is_independent_of_training_seed(tiny_tar):
    dataset = data.load(tiny_tar, download=False)
    a = pipeline.build(Recipe(depth=8, batch_size=16, seed=0, split_seed=5), dataset=dataset)
    b = pipeline.build(Recipe(depth=8, batch_size=16, seed=123, split_seed=5), dataset=dataset)
    c = pipeline.build(Recipe(depth=8, batch_size=16, seed=0, split_seed=6), dataset=dataset)
    np.testing.assert_array_equal(a.val_images, b.val_images)
    np.testing.assert_array_equal(a.val_labels, b.val_labels)
    np.testing.assert_array_equal(a.mean_image, b.mean_image)
    assert not np.array_equal(a.val_images, c.val_images)
    assert a.info["n_train"] == 90 and a.info["n_val"] == 10 and a.info["n_test"] == 20
    assert a.info["steps_per_epoch"] == 90 // 16


def test_full_train_has_empty_val(tiny, tiny_tar):
    dataset = data.load(tiny_tar, download=False)
    splits = data.make_splits(dataset, full_train=True)
    np.testing.assert_array_equal(splits.train_indices, np.arange(100))
    assert splits.val_indices.shape == (0,) and splits.val_indices.dtype == np.int64
    expected = (tiny.to_nhwc(tiny.train_rows).astype(np.float64) / 255.0).mean(axis=0).astype(np.float32)
    np.testing.assert_array_equal(splits.mean_image, expected)


# ----------------------------------------------------------------------------------------------- mean, normalise


def test_mean_image_is_float64_mean_of_train_split(tiny, tiny_tar):
    dataset = data.load(tiny_tar, download=False)
    splits = data.make_splits(dataset, 0.1, split_seed=0)
    train = tiny.to_nhwc(tiny.train_rows)[splits.train_indices]
    expected = (train.astype(np.float64) / 255.0).mean(axis=0).astype(np.float32)
    assert splits.mean_image.dtype == np.float32 and splits.mean_image.shape == (32, 32, 3)
    np.testing.assert_array_equal(splits.mean_image, expected)
    # ... and not the mean over all 100 images, val included
    everything = (tiny.to_nhwc(tiny.train_rows).astype(np.float64) / 255.0).mean(axis=0).astype(np.float32)
    assert not np.array_equal(splits.mean_image, everything)


def test_mean_image_accumulates_over_chunks():
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(20_003, 32, 32, 3), dtype=np.uint8)  # three 10k chunks, the last short
    expected = (images.sum(axis=0, dtype=np.float64) / (255.0 * len(images))).astype(np.float32)
    np.testing.assert_array_equal(data.mean_image(images), expected)


def test_normalize_is_bit_exact_float32():
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
    images[0] = 0
    images[1] = 255
    mean = data.mean_image(rng.integers(0, 256, size=(50, 32, 32, 3), dtype=np.uint8))
    out = data.normalize(images, mean)
    assert out.dtype == np.float32 and out.shape == images.shape
    # two correctly rounded float32 operations ...
    expected = images.astype(np.float32) / np.float32(255.0) - mean
    np.testing.assert_array_equal(out.view(np.uint32), expected.view(np.uint32))
    # ... which equal the float64 results rounded to float32 at each step (double rounding is harmless here)
    scaled = (images.astype(np.float64) / 255.0).astype(np.float32)
    via64 = (scaled.astype(np.float64) - mean.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(out.view(np.uint32), via64.view(np.uint32))
    np.testing.assert_allclose(out, images / 255.0 - mean, rtol=0, atol=1e-7)
