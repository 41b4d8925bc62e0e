"""Importing bcnmf (and touching its lazy submodules) loads no heavy optional library, and
bcnmf's modules import each other without cycles."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import bcnmf

HEAVY = ("anndata", "scanpy", "matplotlib", "torch", "dask")
SRC = str(Path(bcnmf.__file__).resolve().parents[1])


def _loaded_after(code):
    """Heavy modules in sys.modules after running ``code`` in a fresh interpreter."""
    probe = (f"import sys; sys.path.insert(0, {SRC!r})\n{code}\n"
             "import json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
             f"set({HEAVY!r}))))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import bcnmf",
    "import bcnmf; bcnmf.tl; bcnmf.pl; bcnmf.io; bcnmf.report; bcnmf.load",
    "import bcnmf.cli; bcnmf.cli.build_parser()",
    "import bcnmf; bcnmf.select_model; bcnmf.topic_enrichment; bcnmf.match_topics",
])
def test_import_loads_no_heavy_library(code):
    assert _loaded_after(code) == []


def test_every_exported_name_resolves():
    """Every name of ``bcnmf.__all__`` is an attribute (lazy names load from their module),
    and the lazy functions are the ones of their module."""
    import importlib

    for name in bcnmf.__all__:
        assert getattr(bcnmf, name) is not None, name
    for name, module in bcnmf._LAZY_NAMES.items():
        assert name in bcnmf.__all__, name
        assert getattr(bcnmf, name) is getattr(importlib.import_module(f"bcnmf.{module}"), name)
    assert bcnmf.topic_usage is bcnmf.topics.topic_usage


def test_the_probe_sees_heavy_imports():
    # the check above can fail: a heavy import is reported
    pytest.importorskip("matplotlib")
    assert _loaded_after("import bcnmf, matplotlib") == ["matplotlib"]


# ---------------------------------------------------------------------------------------------
# no import cycles between bcnmf's modules, imports inside functions included
# ---------------------------------------------------------------------------------------------

PACKAGE = Path(bcnmf.__file__).resolve().parent


def _module_names(root):
    """``{module name: path}`` of the ``.py`` files under the package folder ``root`` (a
    package is named by its ``__init__.py``) and the set of package names."""
    modules, packages = {}, set()
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
            packages.add(".".join(parts))
        modules[".".join(parts)] = path
    return modules, packages


def _imported(name, tree, modules, packages):
    """The modules of ``modules`` that the module ``name`` (parsed as ``tree``) imports, at
    module level or inside functions: relative imports resolved, ``from pkg import x`` read as
    an import of the submodule ``pkg.x`` when there is one, else of ``pkg``."""
    here = name if name in packages else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph(root=PACKAGE):
    """``{module: set of the package's modules it imports}`` for the package at ``root``."""
    modules, packages = _module_names(root)
    return {name: _imported(name, ast.parse(path.read_text(encoding="utf-8"), str(path)),
                            modules, packages)
            for name, path in modules.items()}


def find_cycle(graph):
    """A cycle of ``graph`` (``{node: successors}``) as ``[a, b, ..., a]``, or None."""
    state = {}   # node -> 1 while on the depth-first path, 2 when done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_graph_sees_imports_inside_functions_and_submodule_imports():
    graph = import_graph()
    assert "bcnmf.dask_engine" in graph["bcnmf.estimator"]   # inside a method
    assert "bcnmf._demo" in graph["bcnmf.cli"]               # relative, inside a function
    assert "bcnmf.core.masked" in graph["bcnmf.core.updates"]   # from . import masked
    assert "bcnmf.core" not in graph["bcnmf.core.updates"]


def test_the_cycle_finder_finds_cycles():
    # the check below can fail: a cycle, even one reached from elsewhere, is reported
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    cycle = find_cycle({"d": {"a"}, "a": {"b"}, "b": {"c"}, "c": {"a", "e"}})
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
