"""The simulated continuous-batching server the fleet benchmark measures clients against, over real HTTP."""

from __future__ import annotations

import asyncio
import statistics

import aiohttp
import pytest

from tests.simulator import CHARS_PER_TOKEN, SimulatedServer, output_length


def chat(content: str, seed: int = 0, max_tokens: int = 8192) -> dict:
    return {"model": "teacher", "messages": [{"role": "user", "content": content}], "seed": seed, "max_tokens": max_tokens}


async def post_all(url: str, path: str, bodies: list[dict]) -> list[dict]:
    """Every body posted at once; the answers, in order."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def one(body: dict) -> dict:
            async with session.post(url + path, json=body) as response:
                assert response.status == 200, await response.text()
                return await response.json()

        return await asyncio.gather(*(one(body) for body in bodies))


def test_requests_beyond_the_slots_queue_and_the_slots_stay_busy():
    # every draw is capped (mean far above max_tokens), so each request decodes exactly 200 tokens: 0.4 s at 500 tokens/s
    with SimulatedServer(slots=2, rate=500, mean_tokens=1e9) as server:
        answers = asyncio.run(post_all(server.url, "/chat/completions", [chat(f"document {i}", max_tokens=200) for i in range(4)]))
        stats = server.stats()
    assert [a["usage"]["completion_tokens"] for a in answers] == [200] * 4
    assert {a["choices"][0]["finish_reason"] for a in answers} == {"length"}
    assert stats["requests"] == 4 and stats["output_tokens"] == 800 and stats["max_queue"] == 2
    assert 1.6 <= stats["slot_seconds"] < 1.7  # four requests of 0.4 s, in two rounds of two
    assert 0.8 <= stats["busy_period"] < 0.95
    assert 1.8 < stats["mean_busy_slots"] <= 2.0


def test_answers_are_openai_completions_of_the_drawn_length():
    with SimulatedServer(instant=True, mean_tokens=300, model="teacher") as server:
        body = chat("a document about tides", seed=7)
        first, again = asyncio.run(post_all(server.url, "/chat/completions", [body, body]))
        plain = {"model": "teacher", "prompt": "a document about tides", "seed": 7, "max_tokens": 8192}
        completion, = asyncio.run(post_all(server.url, "/completions", [plain]))
        models = asyncio.run(get_json(server.url + "/models"))
        assert server.stats()["requests"] == 3
        server.reset()
        assert server.stats()["requests"] == 0
    tokens, reason = output_length(body, 300, 1.0)
    assert first == again  # the same prompt and seed: the same length and text, for every client
    assert first["usage"]["completion_tokens"] == tokens and first["usage"]["prompt_tokens"] > 0
    choice = first["choices"][0]
    assert choice["finish_reason"] == reason == "stop"
    assert choice["message"]["content"].endswith("</think>") and len(choice["message"]["content"]) == tokens * CHARS_PER_TOKEN
    assert completion["choices"][0]["text"] and completion["object"] == "text_completion"
    assert [m["id"] for m in models["data"]] == ["teacher"]


async def get_json(url: str) -> dict:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


def test_lengths_are_lognormal_of_the_mean_capped_at_max_tokens():
    draws = [output_length(chat(f"document {i}"), 1500, 1.0)[0] for i in range(20_000)]
    assert abs(statistics.fmean(draws) - 1500) < 60  # the cap at 8192 trims ~1% of the mean
    assert output_length(chat("x", seed=1), 1500, 1.0) != output_length(chat("x", seed=2), 1500, 1.0)
    assert output_length(chat("x", max_tokens=5), 1e9, 1.0) == (5, "length")


def test_the_server_process_ends_with_the_block_even_on_error():
    with pytest.raises(RuntimeError, match="boom"), SimulatedServer(instant=True) as server:
        raise RuntimeError("boom")
    assert server.process.poll() is not None
