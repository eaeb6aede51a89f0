"""A run's outputs appear whole, and replace the previous run's only once the new run has finished.

A run writes its shards, rejects, manifest, streams.yaml and summary.json under
OUT/.staging/; `publish` then moves them into OUT, over the previous run's. A
failed, killed or refused run never touches the previous outputs: they are
replaced only by a finished run. On a local disk each output is a rename: the
previous run's move to OUT/.previous/ first, then the new ones into place,
summary.json last, and the previous ones are deleted. A publish cut short is
completed by `recover`, which the next run (or the retried finalize task)
calls first: a publish starts only once the staged run is whole, so recovery
always rolls forward. On object stores, which cannot rename, each output is
copied into place and then removed from staging. A reader that opens the
folder during the swap itself (milliseconds on a disk) may find an output
missing, never one of another run's files in a finished run's place.

`tpt.io.lock.RunLock` keeps two runs from writing into one folder at once.
"""

from __future__ import annotations

import os

from tpt.io.output import OutputLayout

STAGING = ".staging"
PREVIOUS = ".previous"
PUBLISHING = ".publishing"  # a publish is under way
UNPUBLISHED = ".unpublished"  # in OUT/.staging/: a run whose outputs are not published yet (datatrove's finalize task)
OUTPUTS = (OutputLayout.mds, OutputLayout.rejects, OutputLayout.manifest, OutputLayout.streams, OutputLayout.summary)  # summary last


def staged(layout: OutputLayout) -> OutputLayout:
    """Where a run writes its outputs until it publishes them."""
    return OutputLayout(layout.url_of(STAGING))


def publish(layout: OutputLayout) -> None:
    """Replace the previous run's outputs with the staged ones, which must be finished (summary.json last)."""
    if not staged(layout).exists(OutputLayout.summary):
        raise RuntimeError(f"{staged(layout).url}: nothing finished to publish (no {OutputLayout.summary})")
    layout.write_text(PUBLISHING, "")  # from here on, `recover` completes what is cut short
    _swap(layout)


def recover(layout: OutputLayout) -> None:
    """Complete a publish that was cut short (its staged run is whole: it rolls forward)."""
    if layout.exists(PUBLISHING):
        _swap(layout)


def _swap(layout: OutputLayout) -> None:
    """The previous outputs out of the way, then each staged one into place, summary.json last; safe to repeat."""
    staging = staged(layout)
    names = [name for name in OUTPUTS if staging.exists(name)]
    for name in names:
        if not layout.exists(name):
            continue
        if layout.is_local:  # a rename now; deleting a large mds/ can wait until the new run is in place
            layout.remove(f"{PREVIOUS}/{name}")
            os.makedirs(layout.path(PREVIOUS), exist_ok=True)
            os.replace(layout.path(name), layout.path(f"{PREVIOUS}/{name}"))
        else:
            layout.remove(name)
    for name in names:
        if layout.is_local:
            os.replace(staging.path(name), layout.path(name))
        else:
            staging.copy(name, layout.path(name))
            staging.remove(name)
    layout.remove(PREVIOUS, STAGING, PUBLISHING)
