"""In-process HF `generate`: batched with left padding, prompts sorted by length; CPU or GPU.

The backend for the embedded teacher and small runs; GPU-scale generation
belongs to vLLM / SGLang servers (the openai backend). A generation thread
takes every request waiting, sorts them by prompt length and generates them in
micro-batches, so the stage keeps preparing documents while the model runs.
"""

from __future__ import annotations

from tpt.assets import resolve_model_path
from tpt.config import GenerateConfig
from tpt.generate.backends.threaded import ThreadedBackend
from tpt.generate.types import Completion, OnDone, Request, failed, request_seed


class TransformersBackend(ThreadedBackend):
    def __init__(self, config: GenerateConfig):
        self.config = config
        self._model = None

    def setup(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(self.config.model)
        device = self.config.transformers.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(self.config.transformers.cpu_threads)
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self._model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self._pad = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else self._tokenizer.eos_token_id
        self._context = getattr(self._model.config, "max_position_embeddings", None)
        eos = self._model.generation_config.eos_token_id
        # a sequence ends at its first end-of-sequence or padding token (finished rows are padded)
        self._ends = {self._pad, self._tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}
        self._start("tpt-transformers")

    def _run(self) -> None:
        while (waiting := self._take(wait=True)) is not None:
            self._generate_all(waiting)

    def _release(self) -> None:
        self._model = None

    def _generate_all(self, waiting: list[tuple[Request, OnDone]]) -> None:
        """Every waiting request: those over the context fail at once, the rest go longest first in micro-batches."""
        fitting = []
        for request, on_done in waiting:
            try:
                ids = self._prompt_ids(request)
            except Exception as error:  # a conversation the chat template refuses
                on_done(failed(request, f"transformers: {type(error).__name__}: {error}"))
                continue
            if self._context and len(ids) >= self._context:
                on_done(failed(request, f"prompt of {len(ids):,} tokens does not fit the model's context of {self._context:,} tokens"))
            else:
                fitting.append((ids, request, on_done))
        fitting.sort(key=lambda item: len(item[0]), reverse=True)  # similar lengths share a batch: less padding
        size = self.config.transformers.micro_batch_size
        for start in range(0, len(fitting), size):
            chunk = fitting[start:start + size]
            try:
                completions = self._generate_batch([request for _, request, _ in chunk], [ids for ids, _, _ in chunk])
            except Exception as error:  # e.g. out of memory: these requests fail with the reason; the thread goes on
                completions = [failed(request, f"transformers: {type(error).__name__}: {error}") for _, request, _ in chunk]
            for (_, _, on_done), completion in zip(chunk, completions):
                on_done(completion)

    def _prompt_ids(self, request: Request) -> list[int]:
        if request.messages is not None:
            return self._tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=True, return_dict=False)
        return self._tokenizer(request.prompt)["input_ids"]

    def _generate_batch(self, requests: list[Request], prompts: list[list[int]]) -> list[Completion]:
        import torch

        width = max(len(ids) for ids in prompts)
        input_ids = torch.tensor([[self._pad] * (width - len(ids)) + ids for ids in prompts], device=self._model.device)
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=self._model.device)
        budget = max(r.budget(self.config.max_new_tokens) for r in requests)  # each row is cut to its own below
        if self._context:
            budget = min(budget, self._context - width)
        sampling = self.config.temperature > 0
        torch.manual_seed(request_seed(self.config.seed, requests[0].id))
        with torch.inference_mode():
            output = self._model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                do_sample=sampling,
                temperature=self.config.temperature if sampling else None,
                top_p=self.config.top_p if sampling else None,
                top_k=None,
                max_new_tokens=budget,
                stop_strings=list(self.config.stop) or None,
                tokenizer=self._tokenizer,
                pad_token_id=self._pad,
            )
        completions = []
        for request, ids, row in zip(requests, prompts, output[:, width:].tolist()):
            row = row[:request.budget(self.config.max_new_tokens)]
            ended = next((k for k, token in enumerate(row) if token in self._ends), None)
            tokens = row if ended is None else row[:ended]
            text = self._tokenizer.decode(tokens, skip_special_tokens=True)
            stopped = ended is not None or any(s in text for s in self.config.stop)
            completions.append(Completion(request.id, text, "stop" if stopped else "length",
                                          prompt_tokens=len(ids), output_tokens=len(tokens)))
        return completions
