"""The openai backend against a real OpenAI-compatible server (`transformers serve` with the embedded teacher),
and against a fault-injection server for 500 / 429 / timeout / disconnect behaviour."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time

import pytest
from aiohttp import web

from tpt.config import GenerateConfig
from tpt.generate.backends import build_backend
from tpt.generate.prompts import PromptBuilder, load_template
from tpt.generate.types import Request
from tpt.io.output import OutputLayout
from tpt.schema import Record, Reject
from tpt.stages.think import Think

SERVED = "served-model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate(config: GenerateConfig, requests: list[Request]):
    """(completions, backend): one batch through a fresh openai backend, closed afterwards."""
    backend = build_backend(config)
    try:
        return backend.generate(requests), backend
    finally:
        backend.close()


def served_config(url: str, **changes) -> GenerateConfig:
    # transformers serve (4.57) kills its generation thread when given stop strings: none are sent; </think> is cut locally
    return GenerateConfig(backend="openai", base_urls=[url], model="embedded", max_new_tokens=8, stop=[], chat=True, **changes)


def test_chat_completions_from_a_real_server(transformers_server):
    builder = PromptBuilder(load_template("default"), chat=True)
    requests = [builder.request(f"doc{i}", t) for i, t in enumerate(["Ice floats on water.", "Rust is iron oxide."])]
    completions, _ = generate(served_config(transformers_server), requests)
    assert [c.id for c in completions] == ["doc0", "doc1"]
    # (transformers serve answers 500 when two first requests race to load the model: the retry covers it)
    assert all(c.finish_reason == "stop" and c.text.strip() and c.error is None for c in completions)


def test_think_stage_over_a_real_server(transformers_server, tmp_path):
    stage = Think(served_config(transformers_server), "embedded", str(tmp_path))
    out = stage.process([Record("a", "web", "Photosynthesis turns light into chemical energy.")])
    stage.close()
    assert not isinstance(out[0], Reject) and out[0].thinking and out[0].thinking_tokens > 0
    assert out[0].sample_tokens > out[0].thinking_tokens


class FaultInjectionServer:
    """A fake OpenAI-compatible server, only to inject faults: each request takes the next action of `script`.

    A "slow" request is answered only once SLOW_AFTER others have been, whatever the machine's load.
    """

    SLOW_AFTER = 10

    def __init__(self, script: list[str], delay: float = 0.0, default: str = "ok", models_status: int = 200):
        self.script, self.delay, self.default = list(script), delay, default
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = self.answered = 0
        self._others_answered = asyncio.Event()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/v1/models", lambda request: web.json_response({"data": [{"id": SERVED}]}, status=models_status))
        app.router.add_post("/v1/chat/completions", self._answer)
        app.router.add_post("/v1/completions", self._answer)
        self._runner = web.AppRunner(app)
        self._closing = asyncio.Event()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._closing.set)
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        action = self.script.pop(0) if self.script else self.default
        self.requests[-1]["at"] = time.monotonic()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if action == "slow":
                await self._others_answered.wait()
            if action == "timeout":  # answer only when the server closes, long after the client's timeout
                await self._closing.wait()
            if action == "disconnect":
                request.transport.close()
                return web.Response()
            if action in ("500", "429", "404"):
                return web.json_response({"error": {"message": f"injected {action}"}}, status=int(action))
            if action == "429-retry-after":
                return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "1"})
            if action.startswith("no-reason"):  # no finish_reason; with "-full", as many tokens as the budget allowed
                used = body["max_tokens"] if action == "no-reason-full" else 1
                return web.json_response({"choices": [{"message": {"content": "half a thought"}}],
                                          "usage": {"prompt_tokens": 3, "completion_tokens": used}})
            if action == "sse":  # streamed although not asked to, ending with a usage-only chunk (stream_options)
                return await self._stream(request, [{"delta": {"role": "assistant"}}, {"delta": {"content": "thinking "}},
                                                    {"delta": {"content": "in parts"}}, {"delta": {}, "finish_reason": "length"}])
            if action.startswith("reasoning"):  # a reasoning parser's split; "-cut": the budget ran out inside the thinking
                cut = action == "reasoning-cut"
                message = {"reasoning_content": "the thinking", "content": None if cut else "\n\nthe answer"}
                return web.json_response({"choices": [{"message": message, "finish_reason": "length" if cut else "stop"}]})
            if action == "cut-body":  # a 200 whose body stops short of its Content-Length: the connection drops
                response = web.StreamResponse(headers={"Content-Type": "application/json"})
                response.content_length = 1000
                await response.prepare(request)
                await response.write(b'{"choices": [{"message": {"content": "half of')
                request.transport.close()
                return response
            if action.startswith("200:"):  # a 200 with this body as it is
                return web.Response(text=action[4:], content_type="application/json")
            text = f"<think>thinking for {body.get('prompt') or body['messages'][0]['content']}</think>"
            if "prompt" in body:
                return web.json_response({"choices": [{"text": text, "finish_reason": "stop"}],
                                          "usage": {"prompt_tokens": 3, "completion_tokens": 5}})
            return web.json_response({"choices": [{"message": {"content": text}, "finish_reason": "length"}]})
        finally:
            self.in_flight -= 1
            self.answered += action != "slow"
            if self.answered >= self.SLOW_AFTER:
                self._others_answered.set()

    async def _stream(self, request: web.Request, choices: list[dict]) -> web.StreamResponse:
        """A server-sent-events answer: one `data:` event per chunk, written apart, then usage and `[DONE]`."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for choice in choices:
            await response.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
        usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
        await response.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        return response


@pytest.fixture
def fault_server():
    servers = []

    def start(script=(), delay=0.0, default="ok", models_status=200):
        servers.append(FaultInjectionServer(list(script), delay, default, models_status))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def fault_config(*urls: str, **changes) -> GenerateConfig:
    return GenerateConfig(backend="openai", base_urls=list(urls), **{"model": SERVED, "timeout": 2.0, "retries": 4, **changes})


def test_retries_500_429_timeout_and_disconnect_then_succeeds(fault_server):
    server = fault_server(["500", "429", "timeout", "disconnect"])
    (completion,), backend = generate(fault_config(server.url), [Request("a", messages=({"role": "user", "content": "doc"},))])
    assert completion.finish_reason == "length" and completion.retries == 4 and completion.text == "<think>thinking for doc</think>"
    assert len(server.requests) == 5 and backend.retried == 4


def test_gives_up_after_the_configured_retries_with_the_reason(fault_server):
    server = fault_server(["500"] * 10)
    (completion,), _ = generate(fault_config(server.url, retries=2), [Request("a", prompt="doc")])
    assert completion.finish_reason == "error" and completion.retries == 2 and len(server.requests) == 3
    assert "gave up after 2 retries: HTTP 500" in completion.error


def test_permanent_errors_are_not_retried(fault_server):
    server = fault_server(["404"])
    (completion,), _ = generate(fault_config(server.url), [Request("a", prompt="doc")])
    assert completion.finish_reason == "error" and completion.retries == 0 and "HTTP 404" in completion.error and len(server.requests) == 1


def test_completions_endpoint_sampling_options_and_api_key(fault_server, monkeypatch, caplog):
    monkeypatch.setenv("TPT_TEST_KEY", "sk-secret-123")
    server = fault_server()
    config = fault_config(server.url, api_key_env="TPT_TEST_KEY", temperature=0.6, top_p=0.9, max_new_tokens=77)
    with caplog.at_level(logging.DEBUG):
        (completion,), _ = generate(config, [Request("a", prompt="doc")])
    sent = server.requests[0]
    assert sent["path"] == "/v1/completions" and sent["headers"]["Authorization"] == "Bearer sk-secret-123"
    assert {k: sent["body"][k] for k in ("model", "prompt", "max_tokens", "temperature", "top_p", "stop")} == {
        "model": SERVED, "prompt": "doc", "max_tokens": 77, "temperature": 0.6, "top_p": 0.9, "stop": ["</think>"]}
    assert (completion.finish_reason, completion.prompt_tokens, completion.output_tokens) == ("stop", 3, 5)
    assert "sk-secret-123" not in caplog.text


def test_requests_spread_over_servers_within_the_in_flight_bound(fault_server):
    first, second = fault_server(delay=0.2), fault_server(delay=0.2)
    completions, _ = generate(fault_config(first.url, second.url, max_in_flight=4), [Request(f"r{i}", prompt=str(i)) for i in range(16)])
    assert [c.text for c in completions] == [f"<think>thinking for {i}</think>" for i in range(16)]
    assert len(first.requests) + len(second.requests) == 16 and min(len(first.requests), len(second.requests)) >= 4
    assert first.max_in_flight + second.max_in_flight <= 4 + 1 and max(first.max_in_flight, second.max_in_flight) >= 2


def test_the_faster_server_receives_more_of_the_requests(fault_server):
    """Least-outstanding routing: the slow server still holds its requests when the fast one has answered."""
    slow, fast = fault_server(delay=0.4), fault_server(delay=0.02)
    completions, backend = generate(fault_config(slow.url, fast.url, max_in_flight=4), [Request(f"r{i}", prompt=str(i)) for i in range(40)])
    assert all(c.finish_reason == "stop" for c in completions)
    assert len(fast.requests) > 3 * len(slow.requests) > 0
    assert {c.server for c in completions} == {slow.url.rstrip("/"), fast.url.rstrip("/")}


def test_a_failing_server_is_set_aside_and_the_run_finishes_on_the_other(fault_server, tmp_path):
    broken, working = fault_server(default="500"), fault_server(delay=0.05)
    config = fault_config(broken.url, working.url, max_in_flight=4, retries=4, chat=True)
    stage = Think(config, "embedded", str(tmp_path))
    out = stage.process([Record(f"d{i}", "web", f"Document {i}.") for i in range(12)])
    report = stage.report(OutputLayout(tmp_path))
    stage.close()
    assert all(not isinstance(r, Reject) for r in out) and report["requests_generated"] == 12
    servers = report["servers"]
    assert servers[working.url]["requests"] == 12 and servers[broken.url]["requests"] == 0
    assert servers[broken.url]["failed_attempts"] == len(broken.requests) >= 3
    assert len(broken.requests) <= 4 + 3  # set aside after 3 failures in a row: only requests already sent there fail


def test_429_retry_after_is_honoured(fault_server):
    server = fault_server(["429-retry-after"])
    (completion,), _ = generate(fault_config(server.url), [Request("a", prompt="doc")])
    assert completion.finish_reason == "stop" and completion.retries == 1
    assert server.requests[1]["at"] - server.requests[0]["at"] >= 0.95  # the backoff alone waits at most 0.5 s


def test_a_missing_finish_reason_is_never_taken_for_stop(fault_server, tmp_path):
    server = fault_server(["no-reason-full", "no-reason"])
    stage = Think(fault_config(server.url, chat=True, max_new_tokens=16, max_in_flight=1), "embedded", str(tmp_path))
    out_of_budget, stopped_early = stage.process([Record("a", "web", "A document."), Record("b", "web", "Another.")])
    stage.close()
    assert out_of_budget.finish_reason == "length" and "truncated" in out_of_budget.thinking_flags
    assert stopped_early.finish_reason == "unknown" and stopped_early.thinking_flags == []


def test_unreachable_server_and_unknown_model_fail_at_setup(fault_server):
    with pytest.raises(ConnectionError, match=r"no OpenAI-compatible server answers at http://127.0.0.1:\d+/v1"):
        build_backend(fault_config(f"http://127.0.0.1:{free_port()}/v1")).setup()
    server = fault_server()
    with pytest.raises(ValueError, match=r"does not serve 'other-model'; it serves \['served-model'\]"):
        build_backend(fault_config(server.url, model="other-model")).setup()


def test_failed_generation_becomes_a_reject_and_is_retried_on_rerun(fault_server, tmp_path):
    server = fault_server(["500"] * 3)
    config = fault_config(server.url, retries=2, chat=True)
    first, second = Think(config, "embedded", str(tmp_path)), Think(config, "embedded", str(tmp_path))
    out = first.process([Record("a", "web", "A document.")])
    first.close()
    assert isinstance(out[0], Reject) and out[0].reason == "generation_failed" and "HTTP 500" in out[0].detail
    rerun = second.process([Record("a", "web", "A document.")])
    second.close()
    assert rerun[0].thinking.startswith("thinking for A document.") and rerun[0].finish_reason == "stop"  # </think> was seen


def test_a_streamed_answer_is_its_chunks_joined_with_the_last_reason(fault_server):
    server = fault_server(["sse"])
    (completion,), _ = generate(fault_config(server.url), [Request("a", messages=({"role": "user", "content": "doc"},))])
    assert (completion.text, completion.finish_reason, completion.error, completion.retries) == ("thinking in parts", "length", None, 0)
    assert (completion.prompt_tokens, completion.output_tokens) == (3, 4)  # from the usage-only chunk after the last choice


def test_a_reasoning_parsers_thinking_is_kept_and_its_answer_cut(fault_server, tmp_path):
    """vLLM/SGLang `--reasoning-parser` return the thinking apart from the answer after `</think>`, which they take
    out: the thinking is recorded, and the answer is cut as it is from a server that returns both in one text."""
    server = fault_server(["reasoning", "reasoning-cut"])
    stage = Think(fault_config(server.url, chat=True, max_in_flight=1), "embedded", str(tmp_path))
    ended, cut = stage.process([Record("a", "web", "A document."), Record("b", "web", "Another.")])
    stage.close()
    assert (ended.thinking, ended.finish_reason, ended.thinking_flags) == ("the thinking", "stop", [])
    assert (cut.thinking, cut.finish_reason, cut.thinking_flags) == ("the thinking", "length", ["truncated"])


def test_a_server_without_a_usable_model_list_is_used(fault_server):
    """`/v1/models` answering 500 (transformers serve does) stops nothing: the server still generates."""
    server = fault_server(models_status=500)
    (completion,), _ = generate(fault_config(server.url), [Request("a", prompt="doc")])
    assert (completion.text, completion.finish_reason, completion.retries) == ("<think>thinking for doc</think>", "stop", 0)


def test_a_connection_dropped_mid_body_is_retried(fault_server):
    server = fault_server(["cut-body"])
    (completion,), backend = generate(fault_config(server.url), [Request("a", messages=({"role": "user", "content": "doc"},))])
    assert (completion.text, completion.finish_reason, completion.error) == ("<think>thinking for doc</think>", "length", None)
    assert (completion.retries, completion.failed_at, backend.retried, len(server.requests)) == (1, [server.url], 1, 2)


NOT_A_COMPLETION = "answered something that is not a completion: AttributeError:"


@pytest.mark.parametrize("chat, body, said", [
    (True, '{"error": "model overloaded"}', 'answered without choices: {"error": "model overloaded"}'),
    (True, '{"choices": []}', 'answered without a choice: {"choices": []}'),
    (True, '{"choices": [{"finish_reason": "stop"}]}', 'answered a choice without a message: {"choices": [{"finish_reason": "stop"}]}'),
    (False, '{"choices": [{"finish_reason": "stop"}]}', 'answered a choice without text: {"choices": [{"finish_reason": "stop"}]}'),
    (True, '["not", "an", "object"]', f"{NOT_A_COMPLETION} 'list' object has no attribute 'get'"),
    (True, '{"choices": [null]}', f"{NOT_A_COMPLETION} 'NoneType' object has no attribute 'get'"),
])
@pytest.mark.timeout(60)  # the way this fails is a request that never finishes
def test_an_answer_that_is_not_a_completion_is_set_aside_with_the_reason(fault_server, tmp_path, chat, body, said):
    """JSON with a 200 but no completion in it: a generation_failed reject naming the URL, not retried (the same
    request would get the same answer), never empty thinking recorded as ended."""
    server = fault_server([f"200:{body}"])
    stage = Think(fault_config(server.url, chat=chat), "embedded", str(tmp_path))
    (out,) = stage.process([Record("a", "web", "A document.")])
    stage.close()
    endpoint = "chat/completions" if chat else "completions"
    assert isinstance(out, Reject) and (out.reason, out.detail) == ("generation_failed", f"{server.url}/{endpoint} {said}")
    assert len(server.requests) == 1
