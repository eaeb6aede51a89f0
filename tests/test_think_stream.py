"""The think stage streams: one window of requests stays full across records, and samples leave as they finish."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.test_generate_openai import fault_config, fault_server  # noqa: F401  (the fixture)
from tests.test_think_resume import results
from tpt.generate.samples import SampleRules
from tpt.progress import Progress
from tpt.schema import Record
from tpt.stages.think import Think


def test_the_window_stays_full_and_samples_leave_in_the_order_they_finish(fault_server, tmp_path):  # noqa: F811  (the fixture)
    server = fault_server(["slow"], delay=0.05)  # the first request is answered only after 10 others
    stage = Think(fault_config(server.url, chat=True, max_in_flight=8), "embedded", str(tmp_path))
    stage.setup()
    stream = stage.stream(Progress("think"))
    out = []
    for i in range(40):
        out += stream.push(Record(f"d{i:02d}", "web", f"Document {i}."))
    out += stream.finish()
    stage.close()
    assert sorted(r.id for r in out) == [f"d{i:02d}" for i in range(40)]
    assert server.max_in_flight == 8 and len(server.requests) == 40
    assert out[0].id != "d00" and out.index(next(r for r in out if r.id == "d00")) >= 5  # the slow one left late


@pytest.fixture
def d05_fails_once(monkeypatch) -> list[str]:
    """Fault injection only: making the first sample of `d05` fails its bundle, after its answer was stored and while
    other requests of the bundle are still in flight. Says whether it did."""
    samples, failed = SampleRules.samples, []

    def fail_once(self, pending, entry):
        if pending.request.id == "d05" and not failed:
            failed.append(pending.request.id)
            raise RuntimeError("injected failure")
        return samples(self, pending, entry)

    monkeypatch.setattr(SampleRules, "samples", fail_once)
    return failed


def test_a_beam_bundle_retried_after_a_failure_regenerates_nothing(fault_server, d05_fails_once, tmp_path):  # noqa: F811
    """Beam's bundle-based direct runner retries a failed bundle in the same worker, as Dataflow does: the retry
    reuses what was stored and follows what the failed attempt still has in flight; nothing is sent twice."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    from tpt.engines.beam.transforms import ApplyStage

    server = fault_server(delay=0.05)
    stage = Think(fault_config(server.url, chat=True, max_in_flight=4), "embedded", str(tmp_path))
    ids = [f"d{i:02d}" for i in range(12)]
    with beam.Pipeline(options=PipelineOptions(["--runner=BundleBasedDirectRunner"])) as pipeline:
        out = pipeline | beam.Create([Record(i, "web", f"Document {i}.") for i in ids]) | ApplyStage(stage, None)
        assert_that(out.records | beam.Map(lambda r: r.id), equal_to(ids))
    assert d05_fails_once  # the bundle did fail once
    assert len(server.requests) == len(ids)  # each generated once, counted at the server
    assert results(tmp_path) == Counter(ids)

