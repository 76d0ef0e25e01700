"""The line length pyproject.toml sets for formatters ([tool.ruff] line-length) holds in every Python file."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("cifar_core", "jax_impl", "torch_impl", "interop", "scripts", "tests", "parity_tests")


def test_no_python_line_is_longer_than_the_configured_length():
    limit = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["line-length"]
    files = [*ROOT.glob("*.py"), *(path for folder in FOLDERS for path in (ROOT / folder).rglob("*.py"))]
    assert len(files) > 50
    too_long = [f"{path.relative_to(ROOT)}:{number}: {len(line)} characters"
                for path in files for number, line in enumerate(path.read_text().splitlines(), 1) if len(line) > limit]
    assert not too_long, f"lines over {limit} characters (wrap them):\n" + "\n".join(too_long)
