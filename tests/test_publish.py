"""A run's outputs replace the previous run's only when it has finished, whole, and a publish cut short is completed."""

from __future__ import annotations

import os

import pytest

from tpt.io import publish as publishing
from tpt.io.output import OutputLayout
from tpt.io.publish import OUTPUTS, publish, recover, staged


def write_run(layout: OutputLayout, tag: str) -> None:
    """Every output of a run whose files all say `tag`."""
    layout.write_text(f"{OutputLayout.mds}/web/index.json", tag)
    layout.write_text(f"{OutputLayout.mds}/web/part-00000/shard.00000.mds", tag)
    layout.write_text(f"{OutputLayout.rejects}/web/part-00000.jsonl", tag)
    for name in (OutputLayout.manifest, OutputLayout.streams, OutputLayout.summary):
        layout.write_text(name, tag)


def contents(layout: OutputLayout) -> dict[str, str]:
    return {name: layout.read_text(name) for name in layout.glob("**") if not name.startswith(".") and layout.fs.isfile(layout.path(name))}


@pytest.fixture(params=["local", "memory"])
def layout(request, tmp_path):
    """A run folder on a local disk, and on an fsspec filesystem without renames (memory://)."""
    return OutputLayout(tmp_path / "out" if request.param == "local" else f"memory://publish-{tmp_path.name}")


def test_a_finished_staged_run_replaces_the_previous_one_whole(layout):
    write_run(layout, "old")
    write_run(staged(layout), "new")
    publish(layout)
    found = contents(layout)
    assert set(found.values()) == {"new"} and len(found) == 6
    assert not layout.exists(publishing.STAGING) and not layout.exists(publishing.PUBLISHING)


def test_an_unfinished_staged_run_is_never_published(layout):
    write_run(layout, "old")
    write_run(staged(layout), "new")
    staged(layout).remove(OutputLayout.summary)
    with pytest.raises(RuntimeError, match="nothing finished to publish"):
        publish(layout)
    assert set(contents(layout).values()) == {"old"}


@pytest.mark.parametrize("cut_after", range(1, 2 * len(OUTPUTS)))
def test_a_publish_cut_short_at_any_step_is_completed_by_recover(layout, monkeypatch, cut_after):
    """Cut after each rename or copy of the swap; between the cut and `recover`, no file of the old run sits
    beside one of the new; after it, the new run is whole."""
    write_run(layout, "old")
    write_run(staged(layout), "new")
    steps = []

    def counted(move):
        def step(*args, **kwargs):
            if len(steps) == cut_after:
                raise KeyboardInterrupt("cut")
            steps.append(args)
            return move(*args, **kwargs)
        return step

    if layout.is_local:
        monkeypatch.setattr(publishing.os, "replace", counted(os.replace))
    else:
        monkeypatch.setattr(layout.fs, "copy", counted(layout.fs.copy))
        monkeypatch.setattr(layout, "remove", counted(layout.remove))
    with pytest.raises(KeyboardInterrupt):
        publish(layout)
    monkeypatch.undo()
    assert len(set(contents(layout).values())) <= 1  # never a mix
    recover(layout)
    found = contents(layout)
    assert set(found.values()) == {"new"} and len(found) == 6
