"""In-process `vllm.LLM` offline batch generation; vllm is imported only when this backend is chosen.

vLLM pins its own torch, so it lives in its own environment (`pip install tpt[vllm]` there).
"""

from __future__ import annotations

from typing import Any

from tpt.assets import resolve_model_path
from tpt.config import GenerateConfig
from tpt.generate.types import Completion, OnDone, Request, failed, request_seed


def sampling_options(config: GenerateConfig, request_id: str) -> dict[str, Any]:
    """`vllm.SamplingParams` keyword arguments: every generate option, one to one."""
    return {
        "n": 1,  # samples per document are separate requests, each with its own id and seed
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_tokens": config.max_new_tokens,
        "stop": list(config.stop),
        "seed": request_seed(config.seed, request_id),
    }


class VLLMBackend:
    def __init__(self, config: GenerateConfig):
        self.config = config
        self._llm = None

    def setup(self) -> None:
        if self._llm is None:
            import vllm

            self._vllm = vllm
            self._llm = vllm.LLM(model=str(resolve_model_path(self.config.model)), seed=self.config.seed)

    def generate(self, requests: list[Request], on_done: OnDone | None = None) -> list[Completion]:
        """One offline batch: vLLM schedules it whole, so every request is in flight until it returns."""
        self.setup()
        try:
            completions = self._generate(requests)
        except ValueError:  # one bad request (e.g. over the context) fails the batch: isolate it
            if len(requests) == 1:
                raise
            completions = [c for r in requests for c in self._generate_one(r)]
        for completion in completions:
            if on_done:
                on_done(completion)
        return completions

    def close(self) -> None:
        self._llm = None

    def _generate_one(self, request: Request) -> list[Completion]:
        try:
            return self._generate([request])
        except ValueError as error:
            return [failed(request, f"vllm: {error}")]

    def _generate(self, requests: list[Request]) -> list[Completion]:
        params = [self._vllm.SamplingParams(**sampling_options(self.config, r.id)) for r in requests]
        if requests[0].messages is not None:
            outputs = self._llm.chat([list(r.messages) for r in requests], params, use_tqdm=False)
        else:
            outputs = self._llm.generate([r.prompt for r in requests], params, use_tqdm=False)
        return [completion(r.id, o) for r, o in zip(requests, outputs)]


def completion(request_id: str, output: Any) -> Completion:
    """A `Completion` from a `vllm.RequestOutput`."""
    sample = output.outputs[0]
    reason = sample.finish_reason if sample.finish_reason in ("stop", "length") else "error"
    return Completion(
        request_id,
        sample.text,
        reason,
        prompt_tokens=len(output.prompt_token_ids or ()),
        output_tokens=len(sample.token_ids),
        error=None if reason != "error" else f"vllm finished with {sample.finish_reason!r}",
    )
