"""cifar_core.files: a file is replaced in one step or not at all, and no temporary file is left either way."""

import pytest

from cifar_core.files import replace_atomically, write_text_atomically


def test_a_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "final.json"
    path.write_text("old")
    write_text_atomically(path, "new")
    assert path.read_text() == "new" and list(tmp_path.iterdir()) == [path]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "last.pt"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), replace_atomically(path) as tmp:
        tmp.write_text("half of the new")
        raise KeyboardInterrupt  # a stop in the middle of a write
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]


def test_a_new_file_appears_only_complete(tmp_path):
    path = tmp_path / "weights.safetensors"
    with replace_atomically(path) as tmp:
        tmp.write_text("complete")
        assert not path.exists() and tmp.parent == tmp_path
    assert path.read_text() == "complete" and list(tmp_path.iterdir()) == [path]
