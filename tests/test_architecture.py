"""The package's shape: layers point one way, no import cycles, no private names across modules, one error root."""
import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import lrp_faces
from lrp_faces.errors import LRPFacesError

PACKAGE = Path(lrp_faces.__file__).parent
LOWER_LAYERS = ("lrp_faces.nn", "lrp_faces.models", "lrp_faces.canonizers", "lrp_faces.rules", "lrp_faces.methods")
"""DESIGN.md: these know nothing about cubes, files of results or the command line."""
UPPER = ("lrp_faces.cube", "lrp_faces.masking", "lrp_faces.analysis", "lrp_faces.plots", "lrp_faces.report",
         "lrp_faces.cli", "lrp_faces.compute")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement reads from."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package(importer) else importer.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str):
    """``(imported module, imported name or None, the ast node)`` for every import in module ``name``."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node
        elif isinstance(node, ast.ImportFrom):
            source = resolve(name, node)
            for alias in node.names:
                yield source, alias.name, node


def targets(name: str) -> set[str]:
    """The lrp_faces modules that module ``name`` imports (a name that is a submodule counts as that module)."""
    found = set()
    for source, imported, _ in imports(name):
        if not source.startswith("lrp_faces"):
            continue
        candidate = f"{source}.{imported}" if imported else source
        found.add(candidate if candidate in MODULES else source)
    return {target for target in found if target in MODULES and target != name}


def package_of(name: str) -> str:
    return name if is_package(name) else name.rpartition(".")[0]


def private_module_elsewhere(importer: str, source: str) -> bool:
    """Whether ``source`` is a private module (``pkg/_x.py``) of a package other than ``importer``'s own."""
    return source.rpartition(".")[2].startswith("_") and source.rpartition(".")[0] != package_of(importer)


def test_no_module_imports_a_private_name_of_another_module():
    """Private modules may export public names to their own package; nothing else crosses a module's privacy."""
    offences = []
    for name in MODULES:
        for source, imported, node in imports(name):
            if not source.startswith("lrp_faces"):
                continue
            if private_module_elsewhere(name, source if imported is None else f"{source}.{imported}"
                                        if f"{source}.{imported}" in MODULES else source):
                offences.append(f"{name}:{node.lineno} imports from {source}, a private module of another package")
                continue
            if imported is None or not imported.startswith("_") or imported.startswith("__"):
                continue
            if not (f"{source}.{imported}" in MODULES and source == package_of(name)):
                offences.append(f"{name}:{node.lineno} imports {imported} from {source}")
    assert not offences, "\n".join(offences)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_modules_import_each_other_without_cycles():
    """Every import counts, also those inside functions: a function-level import must not hide a cycle.

    A package's ``__init__`` re-exports its modules, so edges from a module to its own enclosing packages are left
    out (importing ``lrp_faces.zoo.specs`` runs ``lrp_faces/zoo/__init__`` first by Python's own rules).
    """
    graph = {}
    for name in MODULES:
        graph[name] = {target for target in targets(name)
                       if not (is_package(target) and name.startswith(target + "."))}
    assert not _cycles(graph)


@pytest.mark.parametrize("layer", LOWER_LAYERS)
def test_lower_layers_import_nothing_above_them(layer):
    for name in MODULES:
        if name == layer or name.startswith(layer + "."):
            upward = sorted(target for target in targets(name) if target.startswith(UPPER))
            assert not upward, f"{name} imports {upward}"


@pytest.mark.slow  # about 20 s: every module imported first in one child process
def test_every_module_imports_first():
    """A cycle dodged at import time shows up when a module is imported first.

    One child process imports torch and the other libraries once, then for every module forgets every lrp_faces
    module and imports that one first, as a fresh interpreter would.
    """
    script = ("import importlib, sys, warnings\n"
              "import torch, numpy, xarray, zennit, scipy, matplotlib\n"
              "warnings.simplefilter('ignore')\n"
              "failed = []\n"
              "for name in sys.argv[1:]:\n"
              "    for loaded in [key for key in sys.modules if key == 'lrp_faces' or key.startswith('lrp_faces.')]:\n"
              "        del sys.modules[loaded]\n"
              "    try:\n"
              "        importlib.import_module(name)\n"
              "    except Exception as error:\n"
              "        failed.append(f'{name}: {type(error).__name__}: {error}')\n"
              "print('\\n'.join(failed))\n")
    names = [name for name in MODULES if not name.endswith("__main__")]
    result = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", result.stdout


def package_errors() -> list[type]:
    found = {}
    for info in pkgutil.walk_packages(lrp_faces.__path__, "lrp_faces."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, Exception) and value.__module__.startswith("lrp_faces"):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return sorted(found.values(), key=lambda kind: kind.__qualname__)


def test_every_package_error_derives_from_the_root_and_keeps_a_builtin_parent():
    errors = package_errors()
    assert len(errors) >= 20
    for error in errors:
        if issubclass(error, Warning) or error is LRPFacesError:
            continue
        assert issubclass(error, LRPFacesError), error
        assert issubclass(error, (ValueError, TypeError)), error


def test_no_assert_is_used_as_control_flow_in_the_package():
    offences = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assert):
                offences.append(f"{name}:{node.lineno} assert")
            if isinstance(node, ast.Raise) and isinstance(node.exc, (ast.Call, ast.Name)):
                called = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(called, ast.Name) and called.id == "AssertionError":
                    offences.append(f"{name}:{node.lineno} raise AssertionError")
    assert not offences, "\n".join(offences)
