"""The engines a run plan can run on, found by name.

An engine is one module of tpt.engines with `run(plan, **options) -> summary | None`
(None once jobs are submitted to a scheduler). Each names the `tpt run`
options it takes; the module is imported only when the engine is chosen.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

LOCAL_WORKERS = min(os.cpu_count() or 1, 8)  # local worker processes unless --workers says otherwise
COUNTS = ("workers", "tasks")  # options that count processes or tasks; 0 means the engine's default


@dataclass(frozen=True)
class Engine:
    name: str
    module: str  # the module with `run(plan, **options)`
    options: tuple[str, ...]  # the `tpt run` options it takes, besides --workers
    package: str  # what the engine runs on, installed by the extra `tpt[<name>]`

    def load(self) -> ModuleType:
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError as error:
            if error.name != self.package:
                raise
            raise ValueError(f"--engine {self.name} runs on {self.package}, which is not installed: "
                             f"pip install 'tpt[{self.name}]'") from None

    def options_of(self, given: dict[str, Any]) -> dict[str, Any]:
        """The options meant for this engine; one that belongs to another engine is refused, naming its engine,
        and so is a negative count (0, like none given, means the default)."""
        for name in COUNTS:
            if (given.get(name) or 0) < 0:
                raise ValueError(f"--{name} {given[name]}: expected 0 (the default) or more")
        for name, value in given.items():
            if value and name != "workers" and name not in self.options:
                owners = [e.name for e in ENGINES.values() if name in e.options]
                raise ValueError(f"--{name.replace('_', '-')} is an option of --engine {' or '.join(owners)}, not {self.name}")
        return {name: value for name, value in given.items() if name == "workers" or name in self.options}


ENGINES = {engine.name: engine for engine in (
    Engine("beam", "tpt.engines.beam.pipeline", ("runner", "beam_args"), package="apache_beam"),
    Engine("datatrove", "tpt.engines.datatrove.pipeline", ("executor", "tasks", "dry_run", "address"), package="datatrove"),
)}


def engine(name: str) -> Engine:
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
    return ENGINES[name]
