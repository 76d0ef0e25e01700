"""Writing a file in one step: every checkpoint, run record, weights file and report goes through `replace_atomically`,
so a reader, or a kill in the middle of a write, finds the old file or the new one, never part of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replace_atomically(path) -> Iterator[Path]:
    """Yields a temporary path beside `path` for the caller to write; when the block ends without an error it
    replaces `path` (os.replace: atomic on one file system). On an error `path` is left as it was, and the
    temporary file is removed either way."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomically(path, text: str) -> None:
    with replace_atomically(path) as tmp:
        tmp.write_text(text)
