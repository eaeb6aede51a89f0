"""The in-process vLLM backend feeds vLLM's engine continuously: a short request never waits for a long one.

vLLM needs a GPU and its own torch, so the real engine runs only where vLLM is
installed (a GPU machine) and the test says so when it skips. The feeding logic
runs everywhere against `SimulatedEngine`, a stand-in for vLLM's engine that
simulates its stepping (one token per running request per step).
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType, SimpleNamespace

import pytest

from tpt.config import GenerateConfig
from tpt.generate.backends.vllm import VLLMBackend
from tpt.generate.types import Request
from tpt.generate.window import Window


class SimulatedEngine:
    """Stands in for `vllm.LLM(...).llm_engine`: each step adds a token to every running request, which finishes
    at its `max_tokens`. It records the requests running at each step."""

    def __init__(self):
        self.running: dict[str, list] = {}
        self.steps: list[set[str]] = []
        self.step_gate = threading.Semaphore(0)  # the test lets the engine step, one step per release

    def add_request(self, request_id, prompt, params):
        if "too long" in prompt:
            raise ValueError("prompt is longer than the model's context")
        self.running[request_id] = [prompt, params.max_tokens, 0]

    def step(self):
        self.step_gate.acquire()
        self.steps.append({prompt for prompt, _, _ in self.running.values()})
        outputs = []
        for request_id, state in list(self.running.items()):
            state[2] += 1
            finished = state[2] >= state[1]
            outputs.append(SimpleNamespace(request_id=request_id, finished=finished, prompt_token_ids=[1],
                                           outputs=[SimpleNamespace(text="t" * state[2], token_ids=[0] * state[2],
                                                                    finish_reason="length")]))
            if finished:
                del self.running[request_id]
        return outputs


@pytest.fixture
def simulated_vllm(monkeypatch):
    engine = SimulatedEngine()
    module = ModuleType("vllm")
    module.LLM = lambda model, seed: SimpleNamespace(llm_engine=engine, get_tokenizer=lambda: None)
    module.SamplingParams = lambda **options: SimpleNamespace(**options)
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr("tpt.generate.backends.vllm.resolve_model_path", lambda model: model)
    return engine


def test_a_request_joins_the_running_batch_and_short_ones_leave_before_a_long_one(simulated_vllm):
    backend = VLLMBackend(GenerateConfig(backend="vllm", model="teacher", max_new_tokens=50))
    window = Window(backend, 8)
    try:
        window.submit([("long", Request("long", prompt="long", max_new_tokens=50)),
                       ("short", Request("short", prompt="short", max_new_tokens=2)),
                       ("refused", Request("refused", prompt="too long"))])
        assert window.finished(wait=True)[0][1].finish_reason == "error"  # refused alone, at once, without a step
        for _ in range(2):
            simulated_vllm.step_gate.release()
        (context, completion), = window.finished(wait=True)
        assert context == "short" and completion.output_tokens == 2  # out after 2 steps; the 50-token one still runs
        window.submit([("late", Request("late", prompt="late", max_new_tokens=1))])
        for _ in range(48):
            simulated_vllm.step_gate.release()
        finished = [context for context, _ in window.drain()]
        assert finished == ["late", "long"]
        assert any({"late", "long"} <= running for running in simulated_vllm.steps)  # it joined the running batch
    finally:
        for _ in range(100):
            simulated_vllm.step_gate.release()
        backend.close()


def test_the_real_engine_where_vllm_is_installed():
    pytest.importorskip("vllm", reason="vLLM is not installed here (it needs a GPU machine and its own torch): "
                                       "the real in-process engine is tested only there")
    from tpt.assets import resolve_model_path

    backend = VLLMBackend(GenerateConfig(backend="vllm", model=str(resolve_model_path("embedded")), temperature=0.0))
    window = Window(backend, 4)
    try:
        window.submit([("long", Request("long", prompt="Count from one to a hundred:", max_new_tokens=256)),
                       ("short", Request("short", prompt="Say hi.", max_new_tokens=2))])
        first, _ = [context for context, _ in window.drain()]
        assert first == "short"
    finally:
        backend.close()
