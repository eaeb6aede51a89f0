"""A run of the pipeline: planned once from its config (tpt.run.plan), carried out by an engine (tpt.run.registry).

    core (schema, config, io, stages) -> run -> engines (tpt.engines.*) -> commands

Importing this package is cheap: the plan and the engines load when used.
"""

from __future__ import annotations

from typing import Any


def execute(config, engine: str = "beam", check: bool = True, **options: Any) -> dict[str, Any] | None:
    """Plan a run of `config` and carry it out on an engine; returns the run summary (None once jobs are submitted).

    The options are checked first, then the plan (`check`: its stages too, see RunPlan.build).
    """
    from tpt.run.plan import RunPlan
    from tpt.run.registry import engine as find

    chosen = find(engine)
    options = chosen.options_of(options)
    return chosen.load().run(RunPlan.build(config, check=check), **options)
