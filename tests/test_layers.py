"""The project's layers point one way: cifar_core (NumPy only) <- jax_impl, torch_impl <- interop <- entry points.

Every import is read from the source (ast), those inside functions included, so a lazy import counts as much
as one at the top of a file.
"""

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cifar_core", "jax_impl", "torch_impl", "interop")
FRAMEWORKS = ("jax", "jaxlib", "flax", "optax", "chex", "torch", "torchvision",
              "tensorflow")  # tfds reads data: allowed


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Every module `path` imports, absolute, wherever in the file the import stands."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from . import data` imports the module cifar_core.data, `from .data import X` the module itself.
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    return found


def project_graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")] + [ROOT / "hubconf.py"]
    modules = {module_name(p): p for p in files}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_the_core_imports_no_backend_and_no_framework():
    for path in (ROOT / "cifar_core").rglob("*.py"):
        bad = {m for m in imports_of(path) if m.split(".")[0] in PACKAGES[1:] + FRAMEWORKS}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_neither_backend_imports_the_other_or_interop():
    for package, other in itertools.permutations(("jax_impl", "torch_impl")):
        for path in (ROOT / package).rglob("*.py"):
            if path.name in ("evaluate.py",):  # an entry point: it reads any weights file through interop
                continue
            bad = {m for m in imports_of(path) if m.split(".")[0] in (other, "interop")}
            assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_no_import_cycles():
    graph = project_graph()
    state = {}

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycle = trail[trail.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_checks_see_a_lazy_import(tmp_path):
    """The checks above can fail: an import inside a function is found, relative imports resolve."""
    package = tmp_path / "cifar_core"
    package.mkdir()
    (package / "sneaky.py").write_text("def f():\n    from torch_impl.checkpoint import read_neutral\n"
                                       "    from . import data\n"
                                       "    from ..jax_impl import model\n")
    assert imports_of(package / "sneaky.py", tmp_path) >= {"torch_impl.checkpoint", "cifar_core.data",
                                                           "jax_impl.model"}
