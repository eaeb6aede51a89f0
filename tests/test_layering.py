"""The project's shape: one import name (`tpt`), and dependencies that run one way:
core (schema, config, io, stages, generate, classify, train, analysis) -> run -> engines -> commands."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import setuptools

from tests.conftest import ROOT
from tpt.run.registry import ENGINES

# Where each top-level folder installs, and the layer of each package (a module may import its own layer or lower).
INSTALLED_AS = {"tpt": "tpt", "engines": "tpt.engines", "analysis": "tpt.analysis"}
LAYERS = {"tpt.run": 1, "tpt.engines": 2, "tpt.commands": 3, "tpt.analysis.commands": 3, "tpt.cli": 3,
          "tpt.train.__main__": 3}  # `python -m tpt.train`: the command Composer's launcher starts


def layer(module: str) -> int:
    """The layer of the longest package prefix named in LAYERS; everything else under tpt is core (0)."""
    prefixes = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return LAYERS[max(prefixes, key=len)] if prefixes else 0


def modules() -> dict[str, Path]:
    found = {}
    for folder, name in INSTALLED_AS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            found[".".join([name, *(p for p in parts if p != "__init__")])] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_every_module_imports_the_project_as_tpt():
    stray = {f"{module} imports {name}" for module, path in modules().items() for name in imports(path)
             if name.split(".")[0] in ("engines", "analysis")}
    assert not stray


def test_no_dependency_climbs_a_layer():
    upward = {f"{module} (layer {layer(module)}) imports {name} (layer {layer(name)})"
              for module, path in modules().items() for name in imports(path)
              if name.startswith("tpt") and layer(name) > layer(module)}
    assert not upward


def test_the_wheel_installs_only_the_tpt_import_name(monkeypatch):
    """setup.py's package list, as setuptools receives it when it builds the wheel."""
    monkeypatch.chdir(ROOT)
    with mock.patch.object(setuptools, "setup") as setup, mock.patch.object(sys, "argv", ["setup.py"]):
        exec(compile((ROOT / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "__main__"})
    packages = setup.call_args.kwargs["packages"]
    assert {p.split(".")[0] for p in packages} == {"tpt"}
    assert {"tpt.run", "tpt.engines.beam", "tpt.engines.datatrove", "tpt.analysis.commands"} <= set(packages)


def test_only_an_engine_imports_what_it_runs_on():
    """So each engine can be an extra: the core, the run plan and the commands run without any of them."""
    packages = {engine.package for engine in ENGINES.values()}
    leaks = {f"{module} imports {name}" for module, path in modules().items() for name in imports(path)
             if name.split(".")[0] in packages and not module.startswith("tpt.engines")}
    assert not leaks


def test_an_engine_whose_extra_is_missing_is_refused_naming_the_extra(monkeypatch):
    beam = ENGINES["beam"]
    monkeypatch.setitem(sys.modules, beam.package, None)  # fault injection: the engine's package not installed
    monkeypatch.delitem(sys.modules, beam.module, raising=False)
    with pytest.raises(ValueError, match=r"--engine beam runs on apache_beam, which is not installed: pip install 'tpt\[beam\]'"):
        beam.load()


def test_a_run_without_a_teacher_never_imports_torch():
    """Every worker process of a run imports the plan: torch (seconds per process) only where a stage needs it."""
    code = ("import sys; from tests.conftest import DEMO_CONFIG; from tpt.config import load_config; "
            "from tpt.run.plan import RunPlan; import tpt.engines.beam.pipeline, tpt.engines.datatrove.pipeline; "
            "plan = RunPlan.build(load_config(DEMO_CONFIG).model_copy(update={'generate': None}), check=False); "
            "[stage.setup() for stage in plan.stages]; print(sorted({'torch', 'transformers', 'streaming'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
