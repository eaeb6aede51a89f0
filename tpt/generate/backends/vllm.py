"""In-process vLLM, fed continuously: requests join vLLM's running batch the moment they are submitted.

A generation thread adds each submitted request to vLLM's engine and steps it,
handing back each request as soon as it finishes, so the engine's batch never
waits for the slowest request of a batch. vllm is imported only when this
backend is chosen; it pins its own torch, so it lives in its own environment
(`pip install tpt[vllm]` there).
"""

from __future__ import annotations

import itertools
from typing import Any

from tpt.assets import resolve_model_path
from tpt.config import GenerateConfig
from tpt.generate.backends.threaded import ThreadedBackend
from tpt.generate.types import Completion, OnDone, Request, failed, request_seed


def sampling_options(config: GenerateConfig, request: Request) -> dict[str, Any]:
    """`vllm.SamplingParams` keyword arguments: every generate option, one to one."""
    return {
        "n": 1,  # samples per document are separate requests, each with its own id and seed
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_tokens": request.budget(config.max_new_tokens),
        "stop": list(config.stop),
        "seed": request_seed(config.seed, request.id),
    }


class VLLMBackend(ThreadedBackend):
    def __init__(self, config: GenerateConfig):
        self.config = config
        self._llm = None

    def setup(self) -> None:
        if self._llm is not None:
            return
        import vllm

        self._vllm = vllm
        self._llm = vllm.LLM(model=str(resolve_model_path(self.config.model)), seed=self.config.seed)
        self._engine = self._llm.llm_engine
        self._tokenizer = self._llm.get_tokenizer()
        self._ids = itertools.count()
        self._running: dict[str, tuple[Request, OnDone]] = {}
        self._start("tpt-vllm")

    def _run(self) -> None:
        while (waiting := self._take(wait=not self._running)) is not None:
            for request, on_done in waiting:
                self._add(request, on_done)
            if self._running:
                for output in self._engine.step():
                    if output.finished:
                        request, on_done = self._running.pop(output.request_id)
                        on_done(completion(request.id, output))

    def _release(self) -> None:
        self._llm = self._engine = None

    def _add(self, request: Request, on_done: OnDone) -> None:
        """Into the engine's running batch; a request vLLM refuses (over the context) fails alone, at once."""
        prompt = request.prompt
        if request.messages is not None:
            prompt = self._tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)
        engine_id = str(next(self._ids))  # request ids may repeat across callers; the engine's must not
        try:
            self._engine.add_request(engine_id, prompt, self._vllm.SamplingParams(**sampling_options(self.config, request)))
        except ValueError as error:
            on_done(failed(request, f"vllm: {error}"))
            return
        self._running[engine_id] = (request, on_done)


def completion(request_id: str, output: Any) -> Completion:
    """A `Completion` from a finished `vllm.RequestOutput`."""
    sample = output.outputs[0]
    known = sample.finish_reason in ("stop", "length")
    return Completion(
        request_id,
        sample.text,
        sample.finish_reason if known else "error",
        prompt_tokens=len(output.prompt_token_ids or ()),
        output_tokens=len(sample.token_ids),
        error=None if known else f"vllm finished with {sample.finish_reason!r}",
    )
