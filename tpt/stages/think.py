"""Generate the thinking t of every document d: the training sample becomes [d; t].

A plain stage: `setup()` loads the teacher (or opens connections) and reads
OUT/thinking/; `process()` generates only what the store does not hold yet,
stores each result the moment it is finished, and returns the records with
their thinking. So any engine that runs `process` gets resume and
exactly-once results for free: a rerun after a kill generates nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from typing import Any, ClassVar

from tokenizers import Tokenizer

from tpt.assets import resolve_model_path, tokenizer_file
from tpt.config import GenerateConfig
from tpt.generate import postprocess
from tpt.generate.backends import build_backend
from tpt.generate.prompts import PromptBuilder, has_chat_template, load_template
from tpt.generate.store import ThinkingStore, read_entries
from tpt.generate.types import Completion, Request
from tpt.io.output import OutputLayout, read_rejects
from tpt.progress import BEACONS, Progress
from tpt.schema import Record, Reject

STORE = "thinking"  # OUT/thinking/


class Think:
    name: ClassVar[str] = "think"
    adds: ClassVar[tuple[str, ...]] = ("thinking", "thinking_tokens", "finish_reason", "thinking_flags", "sample_tokens")
    own_progress: ClassVar[bool] = True  # counts each generation, and its tokens, as it finishes

    def __init__(self, config: GenerateConfig, tokenizer: str, output_dir: str | None):
        if not output_dir:
            raise ValueError("generate: the think stage keeps its results in OUT/thinking/: set output.dir or pass --output")
        self.config = config
        self.tokenizer = tokenizer  # the teacher's, for thinking_tokens and sample_tokens
        layout = OutputLayout(output_dir)
        self.store_dir = layout.url_of(STORE)
        self.beacons = layout.url_of(BEACONS)
        self.batch_size = config.batch_size
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)  # names this run's store parts
        self._store: ThinkingStore | None = None

    def setup(self) -> None:
        if self._store is not None:
            return
        self._lock = threading.Lock()  # engines may share one stage between threads; the teacher runs one batch at a time
        self._encoder = Tokenizer.from_file(str(tokenizer_file(self.tokenizer)))
        self._encoder.no_truncation()
        self._prompts = PromptBuilder(load_template(self.config.prompt), self._chat())
        self._backend = build_backend(self.config)
        self._backend.setup()
        store = ThinkingStore(self.store_dir, self.run_id, self.config.flush_every_docs, self.config.flush_every_seconds)
        self._stored = store.index()  # where each stored result is; the texts stay in the store
        store.open(backend=self.config.backend, model=self.config.model)
        self._progress = Progress(self.name, beacons=self.beacons)
        self._store = store

    def process(self, batch: list[Record]) -> list[Record | Reject]:
        self.setup()
        with self._lock:
            wanted = [(record, rid) for record in batch for rid in self.request_ids(record)]
            requests = {rid: self._prompts.request(rid, record.text) for record, rid in wanted}
            keys = {rid: self._fingerprint(request) for rid, request in requests.items()}
            resumed = {rid: self._stored[rid, keys[rid]] for _, rid in wanted if (rid, keys[rid]) in self._stored}
            todo = [requests[rid] for _, rid in wanted if rid not in resumed]
            self._progress.update(len(resumed))  # resumed from the store
            entries = dict(zip(resumed, self._store.fetch(list(resumed.values()))))
            failures: dict[str, str] = {}
            if todo:
                self._backend.generate(todo, on_done=lambda completion: self._keep(completion, keys[completion.id], entries, failures))
                self._store.flush()  # a finished batch is durable, on a disk or an object store
            return [self._sample(record, rid, entries.get(rid), failures) for record, rid in wanted]

    def close(self) -> None:
        """Flush the store and release the backend (engines without a teardown hook may skip it: every finished batch is already flushed)."""
        if self._store is not None:
            self._store.close()
            self._backend.close()
            self._store = None

    def request_ids(self, record: Record) -> list[str]:
        """One request per sample: the document id itself, or id#k when several samples are asked for."""
        n = self.config.samples_per_document
        return [record.id] if n == 1 else [f"{record.id}#{k}" for k in range(n)]

    def report(self, layout: OutputLayout) -> dict[str, Any]:
        """This run's generation figures for summary.json, read back from its store parts."""
        return generation_report(self.store_dir, self.run_id, layout, self.config)

    def _chat(self) -> bool:
        if self.config.chat is not None:
            return self.config.chat
        if self.config.backend == "openai":  # the served model is not on this machine: judge by the teacher tokenizer
            return has_chat_template(tokenizer_file(self.tokenizer).parent)
        return has_chat_template(resolve_model_path(self.config.model))

    def _fingerprint(self, request: Request) -> str:
        """What a stored result answered: the prompt, the model and the sampling settings."""
        c = self.config
        asked = [c.model, request.messages, request.prompt, c.temperature, c.top_p, c.max_new_tokens, c.stop, c.seed]
        return hashlib.blake2b(json.dumps(asked).encode(), digest_size=8).hexdigest()

    def _keep(self, completion: Completion, key: str, entries: dict[str, dict[str, Any]], failures: dict[str, str]) -> None:
        """Store a finished completion at once (a kill after this point cannot lose it) and keep it for this batch."""
        entry = self._store_entry(completion, key)
        location = self._store.append(entry)
        self._progress.update(1, entry.get("output_tokens", 0))
        if completion.finish_reason == "error":
            failures[completion.id] = completion.error
        else:
            entries[completion.id] = entry
            self._stored[completion.id, key] = location  # a retried bundle in this worker reuses it

    def _store_entry(self, completion: Completion, key: str) -> dict[str, Any]:
        entry = {"id": completion.id, "key": key, "retries": completion.retries, "t": time.time()}
        if completion.finish_reason == "error":
            return {**entry, "error": completion.error}
        output_tokens = completion.output_tokens or len(self._encoder.encode(completion.text, add_special_tokens=False).ids)
        return {**entry, "raw": completion.text, "finish_reason": completion.finish_reason,
                "prompt_tokens": completion.prompt_tokens, "output_tokens": output_tokens}

    def _sample(self, record: Record, request_id: str, entry: dict[str, Any] | None, failures: dict[str, str]) -> Record | Reject:
        if entry is None:
            return Reject.of(record.replace(id=request_id), self.name, "generation_failed", failures[request_id])
        thinking = postprocess.clean(entry["raw"])
        reason = postprocess.finish_reason(entry["raw"], entry["finish_reason"])
        flags = postprocess.flags(thinking, reason, self.config.repetition_ngram, self.config.repetition_threshold)
        sample = record.replace(id=request_id)
        if flags and self.config.flagged == "reject":
            return Reject.of(sample, self.name, f"thinking_{flags[0]}", f"thinking flagged {', '.join(flags)} ({len(thinking):,} characters)")
        sample_text = record.text + self.config.separator + thinking
        return sample.replace(
            thinking=thinking,
            thinking_tokens=len(self._encoder.encode(thinking, add_special_tokens=False).ids),
            finish_reason=reason,
            thinking_flags=flags if self.config.flagged == "flag" else [],
            sample_tokens=len(self._encoder.encode(sample_text, add_special_tokens=False).ids),
        )


def generation_report(store_dir: str, run_id: str, layout: OutputLayout, config: GenerateConfig) -> dict[str, Any]:
    """Tokens, throughput, retries and failures of one run, and the device-hours the whole corpus would take at its rate."""
    starts, ends, generated, failed = [], [], [], 0
    input_tokens = output_tokens = retried = 0
    writers = set()
    for writer, entry in read_entries(store_dir, run_id):
        if "started" in entry:
            starts.append(entry["started"])
            continue
        writers.add(writer)
        ends.append(entry["t"])
        retried += entry["retries"]
        if "error" in entry:
            failed += 1
        else:
            generated.append(entry["output_tokens"])
            input_tokens += entry["prompt_tokens"]
            output_tokens += entry["output_tokens"]
    seconds = max(ends) - min(starts) if ends else 0.0
    rate = output_tokens / seconds if seconds > 0 else None
    samples = _samples(layout)
    report: dict[str, Any] = {
        "backend": config.backend,
        "model": config.model,
        "requests_generated": len(generated),
        "requests_resumed": max(samples - len(generated) - failed, 0),
        "requests_retried": retried,
        "requests_failed": failed,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "generation_seconds": round(seconds, 3),
        "output_tokens_per_second": round(rate, 2) if rate else None,
    }
    if rate and generated:
        # every sample of the corpus at this run's mean thinking length and throughput
        hours = samples * (output_tokens / len(generated)) / rate / 3600
        devices = len(config.base_urls) if config.backend == "openai" else len(writers)
        report["estimated_hours_whole_corpus"] = round(hours, 4)
        report["estimated_gpu_hours_whole_corpus"] = round(hours * devices, 4)
        report["devices_assumed"] = devices
    return report


def _samples(layout: OutputLayout) -> int:
    """Samples with thinking in the shards plus those the think stage set aside."""
    written = 0
    if layout.exists(layout.manifest):
        column = layout.read_parquet(layout.manifest, columns=["finish_reason"]).column("finish_reason")
        written = len(column) - column.null_count
    return written + sum(1 for r in read_rejects(layout) if r["stage"] == Think.name)
