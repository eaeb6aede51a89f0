"""The classify stage in the demo pipeline (Beam, 2 worker processes): labels in every shard sample and the manifest."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.test_pipeline_beam import read_streams
from tpt.classify.model import load_model, model_path
from tpt.classify.normalize import normalize
from tpt.classify.taxonomy import AXES, load_taxonomy
from tpt.io.output import OutputLayout
from tpt.stages import build_stages


def test_demo_config_classifies_after_truncate(demo_config):
    names = [stage.name for stage in build_stages(demo_config)]
    assert names.index("classify") == names.index("truncate") + 1


def test_every_sample_and_manifest_row_has_the_three_labels(demo_run):
    config, summary = demo_run
    taxonomy = load_taxonomy(config.classify.taxonomy)
    _, samples = read_streams(config.output.dir)
    manifest = OutputLayout(config.output.dir).read_parquet(OutputLayout.manifest).to_pylist()
    assert len(samples) == len(manifest) == summary["totals"]["written"] > 0
    for rows in (samples, manifest):
        for row in rows:
            for axis in AXES:
                assert row[axis] in taxonomy[axis].labels, (row["id"], axis, row[axis])
                assert 0 < row[f"{axis}_score"] <= 1
    # each shard's labels are what the models predict for its text, read back on their own; so are the manifest's
    # and the summary's counts
    by_id = {row["id"]: row for row in manifest}
    texts = [normalize(s["text"]) for s in samples]
    counted = summary["stages"]["classify"]["labels"]
    for axis in AXES:
        model = load_model(str(model_path(getattr(config.classify.models, axis), axis)), axis, config.classify.taxonomy)
        labels, scores = zip(*model.predict(texts))
        assert [s[axis] for s in samples] == [by_id[s["id"]][axis] for s in samples] == list(labels), axis
        assert [s[f"{axis}_score"] for s in samples] == pytest.approx(scores, abs=1e-6), axis
        assert counted[axis] == Counter(labels), axis
    # the demo's maths reference pages are labelled mathematics by the starter model
    mpmath = [row["domain"] for row in manifest if row["id"].startswith("mpmath")]
    assert mpmath and mpmath.count("mathematics") / len(mpmath) > 0.8
