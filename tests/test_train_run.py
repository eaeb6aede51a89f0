"""The tiny YAML through Composer's Trainer on the CPU: it learns, and a killed run resumes with the same data order."""

from __future__ import annotations

import gc
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from composer.loggers import InMemoryLogger
from streaming import StreamingDataset

from tpt import cli
from tpt.io.output import OutputLayout
from tpt.train.config import load_train_config
from tpt.train.data import build_streams
from tpt.train.sample_log import read_sample_log
from tpt.train.streams import read_streams
from tpt.train.trainer import build_trainer, train

from .conftest import ROOT

TINY = ROOT / "composer_yamls" / "tiny-cpu.yaml"
BATCHES = 16
SAVE_EVERY = 3  # not a multiple of the 2 loader workers: a resume starts at the worker whose turn it was


def run_overrides(demo_run, folder) -> list[str]:
    """The tiny YAML shortened for CI, on the session's demo shards, writing under `folder`, with 2 loader workers.

    epoch_size 96 makes an epoch 12 batches of the demo's 129-token samples, so the run also crosses an epoch boundary.
    """
    config, _ = demo_run
    return [f"train_loader.dataset.streams={config.output.dir}/streams.yaml", "train_loader.dataset.epoch_size=96",
            "train_loader.num_workers=2",
            f"max_duration={BATCHES}ba", f"save_interval={SAVE_EVERY}ba", f"save_folder={folder}/checkpoints",
            f"callbacks.sample_log.path={folder}/samples.jsonl", "loggers.inmemory={}", "python_log_level=warning"]


def losses(trainer) -> list[float]:
    memory = next(d for d in trainer.logger.destinations if isinstance(d, InMemoryLogger))
    return [float(value) for _, value in memory.data["loss/train/total"]]


@pytest.fixture(scope="module")
def uninterrupted(demo_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    trainer = train(load_train_config(TINY, run_overrides(demo_run, folder)))
    return folder, losses(trainer), int(trainer.state.timestamp.epoch)


def test_tiny_yaml_learns_on_the_demo_shards(uninterrupted):
    folder, loss, epochs = uninterrupted
    assert len(loss) == BATCHES and all(math.isfinite(x) for x in loss)
    assert sum(loss[-3:]) / 3 < sum(loss[:3]) / 3 - 1.0, loss  # from ~ln(49152) = 10.8 down
    assert epochs >= 1  # the run went past an epoch boundary: the documents repeat
    assert sorted(read_sample_log(folder / "samples.jsonl")) == list(range(BATCHES))
    assert (folder / "checkpoints" / f"ep{epochs}-ba{BATCHES}-rank0.pt").is_file()


def test_killed_run_resumes_with_the_same_data_order(demo_run, uninterrupted, tmp_path):
    overrides = run_overrides(demo_run, tmp_path)
    killed = subprocess.Popen([sys.executable, "-m", "tpt.train", str(TINY), *overrides], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = tmp_path / "checkpoints" / "latest-rank0.pt"  # Composer links it once a checkpoint is complete
    deadline = time.monotonic() + 600
    while not latest.exists():
        assert killed.poll() is None, killed.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    checkpoint = os.readlink(latest)
    assert f"-ba{BATCHES}-" not in checkpoint  # killed mid-way

    resumed = train(load_train_config(TINY, overrides))  # autoresume: true in the YAML
    batches, resumed_loss = int(resumed.state.timestamp.batch), losses(resumed)
    del resumed
    first_resumed = int(checkpoint.split("-ba")[1].split("-")[0])
    assert batches == BATCHES
    assert len(resumed_loss) == BATCHES - first_resumed  # it went on from the checkpoint, not from the start

    folder, uninterrupted_loss, _ = uninterrupted
    assert ids_seen(tmp_path, demo_run) == ids_seen(folder, demo_run)
    assert resumed_loss == pytest.approx(uninterrupted_loss[first_resumed:], rel=1e-4)  # model and optimizer resumed too


def ids_seen(folder, demo_run) -> dict[int, list[list[str]]]:
    """Batch -> the document ids of each row, from the run's sample log."""
    config, _ = demo_run
    gc.collect()  # streaming allows one live dataset per local folder: let the trainers' go
    dataset = StreamingDataset(streams=build_streams(f"{config.output.dir}/streams.yaml", 60), batch_size=1)
    ids = {batch: [[dataset[i]["id"] for i in row] for row in rows] for batch, rows in read_sample_log(folder / "samples.jsonl").items()}
    del dataset
    return ids


def test_a_run_folder_moved_elsewhere_trains_on_the_same_samples(demo_run, uninterrupted, tmp_path, capsys):
    """The demo run's folder, moved to another path (its old one gone), trains with `tpt train` on the same samples,
    and `tpt streams` prints its block with the new absolute paths or a remote."""
    config, _ = demo_run
    original, moved = config.output.dir, tmp_path / "elsewhere" / "demo"
    streams = yaml.safe_load((Path(original) / "streams.yaml").read_text())["streams"]
    assert {s["local"] for s in streams.values()} == {f"mds/{name}" for name in streams}  # relative to the file's folder
    moved.parent.mkdir()
    shutil.move(original, moved)
    try:
        overrides = [o for o in run_overrides(demo_run, tmp_path) if not o.startswith("train_loader.dataset.streams=")]
        assert cli.main(["train", str(TINY), f"train_loader.dataset.streams={moved}/streams.yaml", *overrides, "max_duration=3ba"]) == 0
        capsys.readouterr()
        assert cli.main(["streams", str(moved)]) == 0
        printed = yaml.safe_load(capsys.readouterr().out)["streams"]
        assert cli.main(["streams", str(moved), "--remote", "gs://bucket/runs/demo/"]) == 0
        remote = yaml.safe_load(capsys.readouterr().out)["streams"]
    finally:
        shutil.move(moved, original)
    assert printed == {name: {**s, "local": f"{moved}/mds/{name}"} for name, s in streams.items()}
    assert remote == {name: {"remote": f"gs://bucket/runs/demo/mds/{name}", "proportion": s["proportion"]} for name, s in streams.items()}
    trained, expected = ids_seen(tmp_path, demo_run), ids_seen(uninterrupted[0], demo_run)
    assert sorted(trained) == [0, 1, 2] and trained == {batch: expected[batch] for batch in trained}


def test_streams_of_a_url_output_read_under_its_url_and_a_missing_file_is_one_line(tmp_path, capsys):
    url = f"memory://streams-{uuid.uuid4().hex}/run"
    layout = OutputLayout(url)
    layout.write_text(layout.streams, yaml.safe_dump({"streams": {"web": {"local": "mds/web", "proportion": 1.0}}}))
    assert cli.main(["streams", url]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"streams": {"web": {"remote": f"{url}/mds/web", "proportion": 1.0}}}
    assert cli.main(["streams", str(tmp_path)]) == 2
    assert f"{tmp_path}/streams.yaml: no streams file" in capsys.readouterr().err


def test_a_streams_file_with_absolute_paths_still_trains(demo_run, tmp_path):
    """streams.yaml files written before relative paths name absolute ones: they read as written."""
    config, _ = demo_run
    streams = yaml.safe_load((Path(config.output.dir) / "streams.yaml").read_text())["streams"]
    absolute = {name: {**s, "local": f"{config.output.dir}/{s['local']}"} for name, s in streams.items()}
    (tmp_path / "streams.yaml").write_text(yaml.safe_dump({"streams": absolute}, sort_keys=False))
    assert read_streams(str(tmp_path / "streams.yaml")) == absolute
    # the shards are read from there (compressed, they are decompressed outside the run folder: tpt.train.data)
    assert [s.remote for s in build_streams(str(tmp_path / "streams.yaml"), 60)] == [absolute[n]["local"] for n in absolute]


@pytest.mark.parametrize("override,message", [
    ("train_loader.dataset.streams.reference.local=/nonexistent/mds/reference", "stream 'reference': no MDS shards at /nonexistent"),
    ("model.config.vocab_size=32000", "the tokenizer has 49,152 tokens but the model's vocab_size is 32,000"),
    ("max_seq_len=512", "max_seq_len 512 is over the model's max_position_embeddings 256"),
])
def test_bad_setups_fail_before_training(demo_run, tmp_path, override, message):
    config, _ = demo_run
    streams = [f"train_loader.dataset.streams.{name}.local={config.output.dir}/mds/{name}" for name in ("reference", "books", "web")]
    overrides = [*streams, f"save_folder={tmp_path}", override]
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        build_trainer(load_train_config(TINY, ["train_loader.dataset.streams={}", *overrides]))


def test_cli_reports_a_missing_streams_file(tmp_path, capsys):
    assert cli.main(["train", str(TINY), f"train_loader.dataset.streams={tmp_path}/streams.yaml"]) == 2
    assert "no streams file at" in capsys.readouterr().err
