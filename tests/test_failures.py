"""An engine's report of a worker's failure: an expected error becomes the worker's own; a bug stays the engine's."""

from __future__ import annotations

import pytest

from tpt.run.failures import expected_failure, worker_failures

BEAM_REPORT = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    raise OSError(...)\n"
               "RuntimeError: OSError: [Errno 28] writing gs://b/run/.staging/mds/web/part-00003: No space left on device "
               "[while running 'Write/Write']\n")


def test_an_expected_error_inside_an_engine_report_is_raised_as_itself():
    with (pytest.raises(OSError, match=r"^\[Errno 28\] writing gs://b/run/.staging/mds/web/part-00003: No space left on device$"),
          worker_failures()):
        raise RuntimeError(BEAM_REPORT)


@pytest.mark.parametrize("report", [
    "Traceback (most recent call last):\nRuntimeError: KeyError: 'domain' [while running 'Classify/Process']",
    "Traceback (most recent call last):\nRuntimeError: NameError: name 'x' is not defined",
    "",
])
def test_a_bug_stays_the_engine_report_with_its_traceback(report):
    error = RuntimeError(report)
    assert expected_failure(error) is error
