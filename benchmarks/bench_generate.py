"""Output tokens/s of tpt's think stage against the bare backend on the same prompts and settings.

    python -m benchmarks.bench_generate [--backend transformers|openai] [--documents 32] [--max-new-tokens 32]

transformers: the stage (a `Think` stream: prompts, backend, post-processing,
store appends, token counts) against a bare loop of batched, left-padded
`model.generate` over the same prompts, sorted by length, same micro-batch and
seeds. openai: the stage against raw concurrent aiohttp requests with the same
bodies, both to one server (`--base-url`, or `transformers serve` with the
embedded teacher started here). Prints both rates and their ratio (goal >= 0.95).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from pathlib import Path

from benchmarks.bench_generate_fleet import think_all
from tests.corpora import demo_texts
from tests.teacher_server import start_server
from tpt.assets import resolve_model_path, tokenizer_file
from tpt.config import GenerateConfig
from tpt.generate.prompts import PromptBuilder, load_template
from tpt.generate.store import read_entries
from tpt.generate.types import request_seed
from tpt.schema import Record
from tpt.stages.think import Think


def stage_rate(config: GenerateConfig, records: list[Record]) -> tuple[float, int]:
    """(output tokens/s, output tokens) of the think stage over `records`, model load excluded."""
    with tempfile.TemporaryDirectory() as out:
        stage = Think(config, "embedded", out)
        stage.setup()
        think_all(stage, records[:1])  # warm-up, like the bare side's
        started = time.perf_counter()
        think_all(stage, records[1:])
        seconds = time.perf_counter() - started
        stage.close()
        tokens = sum(e["output_tokens"] for _, e in read_entries(Path(out) / "thinking") if "raw" in e and e["id"] != records[0].id)
    return tokens / seconds, tokens


def bare_transformers_rate(config: GenerateConfig, prompts: list[list[dict]], ids: list[str]) -> tuple[float, int]:
    """(output tokens/s, output tokens) of plain batched `model.generate` over the same chat prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(config.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if device == "cuda" else torch.float32).to(device).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=False) for p in prompts]

    def run(indices: list[int]) -> int:
        tokens = 0
        indices = sorted(indices, key=lambda i: len(encoded[i]), reverse=True)
        for start in range(0, len(indices), config.transformers.micro_batch_size):
            chunk = [encoded[i] for i in indices[start:start + config.transformers.micro_batch_size]]
            width = max(map(len, chunk))
            ids_ = torch.tensor([[pad] * (width - len(c)) + c for c in chunk], device=device)
            mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk], device=device)
            torch.manual_seed(request_seed(config.seed, ids[indices[start]]))
            with torch.inference_mode():
                out = model.generate(input_ids=ids_, attention_mask=mask, do_sample=True,
                                     temperature=config.temperature, top_p=config.top_p, top_k=None, max_new_tokens=config.max_new_tokens,
                                     stop_strings=config.stop, tokenizer=tokenizer, pad_token_id=pad)
            for row in out[:, width:].tolist():
                tokens += next((k for k, t in enumerate(row) if t in (pad, tokenizer.eos_token_id)), len(row))
        return tokens

    run([0])  # warm-up
    started = time.perf_counter()
    tokens = run(list(range(1, len(prompts))))
    return tokens / (time.perf_counter() - started), tokens


def bare_http_rate(config: GenerateConfig, prompts: list[list[dict]]) -> tuple[float, int]:
    """(output tokens/s, output tokens) of raw concurrent chat requests, counted with the teacher tokenizer."""
    import aiohttp
    from tokenizers import Tokenizer

    encoder = Tokenizer.from_file(str(tokenizer_file("embedded")))
    url = config.openai.base_urls[0].rstrip("/") + "/chat/completions"

    async def one(session, slots, messages) -> str:
        body = {"model": config.model, "messages": messages, "max_tokens": config.max_new_tokens, "temperature": config.temperature,
                "top_p": config.top_p, "stream": False, **({"stop": config.stop} if config.stop else {})}
        async with slots, session.post(url, json=body) as response:
            raw = await response.text()
        chunks = [json.loads(line[5:]) for line in raw.splitlines()
                  if line.startswith("data:") and "[DONE]" not in line] or [json.loads(raw)]
        return "".join((c["choices"][0].get("delta") or c["choices"][0].get("message") or {}).get("content") or ""
                       for c in chunks if c["choices"])

    async def run(batch) -> list[str]:
        slots = asyncio.Semaphore(config.max_in_flight)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.openai.timeout)) as session:
            return await asyncio.gather(*(one(session, slots, m) for m in batch))

    asyncio.run(run(prompts[:1]))  # warm-up
    started = time.perf_counter()
    texts = asyncio.run(run(prompts[1:]))
    seconds = time.perf_counter() - started
    tokens = sum(len(encoder.encode(t, add_special_tokens=False).ids) for t in texts)
    return tokens / seconds, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["transformers", "openai"], default="transformers")
    parser.add_argument("--documents", type=int, default=33, help="prompts (the first is the warm-up)")
    parser.add_argument("--doc-chars", type=int, default=1200, help="characters of each demo document")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--micro-batch", type=int, default=8, help="transformers: sequences per generate call")
    parser.add_argument("--base-url", help="openai: an OpenAI-compatible /v1 URL (default: start transformers serve here)")
    parser.add_argument("--model", default="embedded", help="openai: the served model name")
    args = parser.parse_args()

    texts = [t[:args.doc_chars] for t in demo_texts()[:args.documents]]
    records = [Record(f"doc-{i}", "bench", t) for i, t in enumerate(texts)]
    builder = PromptBuilder(load_template("default"), chat=True)
    prompts = [list(builder.request(r.id, r.text).messages) for r in records]
    common = dict(max_new_tokens=args.max_new_tokens, max_in_flight=len(records), chat=True)
    server = None
    if args.backend == "transformers":
        config = GenerateConfig(transformers={"micro_batch_size": args.micro_batch, "cpu_threads": os.cpu_count() or 1}, **common)
        bare, bare_tokens = bare_transformers_rate(config, prompts, [r.id for r in records])
    else:
        url = args.base_url
        if url is None:
            server, url = start_server()
        # transformers serve (4.57) breaks on stop strings; other servers get the paper's </think>
        config = GenerateConfig(backend="openai", openai={"base_urls": [url]}, model=args.model,
                                stop=[] if server else ["</think>"], **common)
        bare, bare_tokens = bare_http_rate(config, prompts)
    try:
        ours, our_tokens = stage_rate(config, records)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGKILL)
    print(f"backend {args.backend}: {len(records) - 1} prompts, max_new_tokens {args.max_new_tokens}")
    print(f"  bare:      {bare:10.1f} output tokens/s ({bare_tokens} tokens)")
    print(f"  tpt think: {ours:10.1f} output tokens/s ({our_tokens} tokens)")
    print(f"  ratio tpt/bare: {ours / bare:.3f}")


if __name__ == "__main__":
    main()
