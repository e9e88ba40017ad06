"""The dependency rules of DESIGN §10, checked on the source and by importing.

* Every module of labctl/, drivers/, protocols/ and gui/ imports on its own, in a
  fresh process (a module that only works after another one was imported hides
  a missing import, or an import cycle that happens to resolve in one order).
* The import graph (every ``import`` statement in the source, lazy ones in
  functions included) has no cycle between modules.
* Layers: nothing in labctl/ outside the application layer imports drivers/ or
  protocols/ (or the application layer); drivers/ never imports protocols/ or
  the application layer; nothing imports gui/.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("labctl", "drivers", "protocols", "gui")
#: labctl's application layer: the only part of labctl that looks drivers and protocols up.
APPLICATION = frozenset(
    f"labctl.{name}"
    for name in (
        *("registry", "runner", "config", "instruments", "cli", "analyze", "progress", "alerts_cli"),
        "guardian",  # builds the run's drivers in its own process
        "calibration",  # reads and writes the calibration file next to the lab file
        # reports and exports get their results by replaying the run's protocol (labctl.analyze)
        "export",
        *(
            f"report{name}"
            for name in (
                *("", ".atomic", ".circuit", ".command", ".figures", ".plotting", ".runview", ".summary"),
                *(".tabulate", ".writers"),
            )
        ),
        "gui_cli",  # ``labctl gui``: opens the window (its one lazy import of gui is allowed below)
        # the queue's modules that run (or dry-run) jobs the way ``labctl run`` does
        *(
            f"queue.{name}"
            for name in ("cli", "job", "batch", "validate", "remaining", "estimate", "estimate_cli", "hooks", "worker")
        ),
    )
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = all_modules()


def imported_names(path: Path, module: str) -> Iterable[str]:
    """Every module name an import statement of ``path`` refers to (resolved to known modules)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in MODULES else base


def owning_module(name: str) -> str | None:
    """The known module ``name`` is, or is inside (``drivers.kit.scpi.number`` -> ``drivers.kit.scpi``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {owning_module(name) for name in imported_names(path, module)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


GRAPH = import_graph()


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module (the import cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:
        nonlocal counter
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def layer(module: str) -> str:
    top = module.split(".")[0]
    if top == "labctl":
        return "app" if module in APPLICATION else "core"
    return top


#: The only edges into gui/ from outside it: the ``labctl gui`` command, importing inside the command.
GUI_ENTRY_POINTS = frozenset({("labctl.gui_cli", "gui.app")})


def violations(allowed: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{source} -> {target}"
        for source, targets in GRAPH.items()
        for target in targets
        if layer(target) != layer(source)
        and layer(target) not in allowed[layer(source)]
        and (source, target) not in GUI_ENTRY_POINTS
    )


def test_the_graph_is_read_from_the_source() -> None:
    """The walker sees the edges it must (so an empty result means something)."""
    assert "labctl.steps" in GRAPH["labctl.engine"]
    assert "drivers.kit.options" in GRAPH["drivers.keithley.options"]
    assert "drivers.kit.scpi" in GRAPH["drivers.sim.wire.keithley_smu"]  # from drivers.kit import scpi
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert strongly_connected(GRAPH) == []


def test_layers_depend_one_way() -> None:
    allowed = {
        "core": set(),  # the core knows no driver, protocol, lookup or GUI
        "drivers": {"core"},
        "protocols": {"core"},
        "app": {"core", "drivers", "protocols"},
        "gui": {"core", "app", "drivers", "protocols"},
    }
    assert violations(allowed) == []


ISOLATED_IMPORT = """
import importlib, json, os, sys
# Third-party libraries are loaded once, before forking (the rules are about the
# project's own modules; this only saves each child loading numpy, h5py, pyvisa ...).
for lib in json.loads(sys.argv[2]):
    try:
        importlib.import_module(lib)
    except ImportError:
        pass
assert not any(m.split(".")[0] in ("labctl", "drivers", "protocols", "gui") for m in sys.modules)
results = {}
for name in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:  # a child with nothing of the project imported yet
        code = 0
        try:
            importlib.import_module(name)
        except BaseException as exc:
            sys.stderr.write(f"{name}: {type(exc).__name__}: {exc}\\n")
            code = 1
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    results[name] = os.waitstatus_to_exitcode(status)
print(json.dumps(results))
"""


THIRD_PARTY = ["numpy", "scipy.optimize", "h5py", "click", "rich.console", "pyvisa", "pymeasure.instruments", "serial"]


@pytest.mark.timeout(600)
def test_every_module_imports_on_its_own() -> None:
    """Each module imported first, in a forked child of an interpreter that has imported
    nothing of the project (a fresh interpreter per module, at a fork's cost)."""
    names = sorted(MODULES)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", ISOLATED_IMPORT, json.dumps(names), json.dumps(THIRD_PARTY)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    failed = sorted(name for name, code in results.items() if code != 0)
    assert set(results) == set(names)
    assert failed == [], done.stderr
