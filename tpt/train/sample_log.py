"""A callback that writes which stream samples each batch trained on: an audit trail of the data order.

One JSON line per batch: {"batch": N, "samples": [[sample indices of row 0 in order], ...]}.
A sample index is the position in the run's streams (`StreamingDataset[index]`),
so the ids follow from the shards. A resumed run appends the batches it
redoes again; the last line of a batch is the one that counted.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist


class SampleLog(Callback):
    def __init__(self, path: str):
        self.path = Path(path.format(rank=dist.get_global_rank()))

    def fit_start(self, state: State, logger: Logger) -> None:
        """Cut a line torn by a killed run, so the lines a resumed run appends stay whole."""
        if self.path.is_file():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                self.path.write_bytes(data[:data.rfind(b"\n") + 1])

    def batch_start(self, state: State, logger: Logger) -> None:
        rows = [torch.unique_consecutive(row).tolist() for row in state.batch["sample_index"]]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps({"batch": int(state.timestamp.batch), "samples": rows}) + "\n")


def read_sample_log(path: str | Path) -> dict[int, list[list[int]]]:
    """Batch -> sample indices per row, the last write of each batch winning (a resumed run redoes some)."""
    batches = {}
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            row = json.loads(line)
            batches[row["batch"]] = row["samples"]
    return batches
