"""Expected failures inside an engine's workers (a full disk, a server gone), kept to the one line the CLI prints.

Engines carry a worker's exception to the driver in their own wrapper, often as
text only (Beam's runners: "RuntimeError: ... OSError: [Errno 28] ...
[while running 'Write/Write']"), so the CLI would print the engine's traceback.
`worker_failures` re-raises such a failure as the error the worker raised.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator
from contextlib import contextmanager

EXPECTED = (ValueError, OSError)  # what the CLI reports in one line (tpt.cli)
_REPORTED = re.compile(r"^(?:[\w.]+\.)?(?P<name>\w+(?:Error|Exception)): (?P<message>.+?)(?: \[while running '[^']*'\])?$")


def expected_failure(error: BaseException) -> BaseException:
    """The expected error a worker failed with, where `error` is an engine's report of one; else `error`."""
    if isinstance(error, EXPECTED):
        return error
    lines = str(error).strip().splitlines()
    reported = lines[-1].strip() if lines else ""
    while match := _REPORTED.match(reported):  # "RuntimeError: OSError: ...": each wrapper peeled in turn
        kind = getattr(builtins, match["name"], None)
        if isinstance(kind, type) and issubclass(kind, EXPECTED):
            return kind(match["message"])
        reported = match["message"]
    return error


@contextmanager
def worker_failures() -> Iterator[None]:
    """Around an engine's run: an expected failure in a worker leaves it as the worker's own error."""
    try:
        yield
    except Exception as error:
        failure = expected_failure(error)
        if failure is error:
            raise
        raise failure from error


@contextmanager
def writing(target: str) -> Iterator[None]:
    """An OSError while writing `target` names it (a worker's "[Errno 28] No space left on device" says not where)."""
    try:
        yield
    except OSError as error:
        if error.errno is None:
            raise OSError(f"writing {target}: {error}") from error
        raise OSError(error.errno, f"writing {target}: {error.strerror}") from error
