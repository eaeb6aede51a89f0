"""In-process HF `generate`: batched with left padding, prompts sorted by length; CPU or GPU.

The backend for the embedded teacher and small runs; GPU-scale generation
belongs to vLLM / SGLang servers (the openai backend).
"""

from __future__ import annotations

from tpt.assets import resolve_model_path
from tpt.config import GenerateConfig
from tpt.generate.types import Completion, OnDone, Request, failed, request_seed


class TransformersBackend:
    def __init__(self, config: GenerateConfig):
        self.config = config
        self._model = None

    def setup(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(self.config.model)
        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(self.config.cpu_threads)
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self._model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self._pad = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else self._tokenizer.eos_token_id
        self._context = getattr(self._model.config, "max_position_embeddings", None)
        eos = self._model.generation_config.eos_token_id
        # a sequence ends at its first end-of-sequence or padding token (finished rows are padded)
        self._ends = {self._pad, self._tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}

    def generate(self, requests: list[Request], on_done: OnDone | None = None) -> list[Completion]:
        self.setup()
        on_done = on_done or (lambda completion: None)
        prompts = [self._prompt_ids(r) for r in requests]
        completions: list[Completion | None] = [None] * len(requests)
        fitting = []
        for i, ids in enumerate(prompts):
            if self._context and len(ids) >= self._context:
                completions[i] = failed(requests[i], f"prompt of {len(ids):,} tokens does not fit the model's context of {self._context:,} tokens")
                on_done(completions[i])
            else:
                fitting.append(i)
        fitting.sort(key=lambda i: len(prompts[i]), reverse=True)  # similar lengths share a batch: less padding
        size = self.config.micro_batch_size
        for start in range(0, len(fitting), size):
            chunk = fitting[start:start + size]
            for i, completion in zip(chunk, self._generate_batch([requests[i] for i in chunk], [prompts[i] for i in chunk])):
                completions[i] = completion
                on_done(completion)
        return completions

    def close(self) -> None:
        self._model = None

    def _prompt_ids(self, request: Request) -> list[int]:
        if request.messages is not None:
            return self._tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=True, return_dict=False)
        return self._tokenizer(request.prompt)["input_ids"]

    def _generate_batch(self, requests: list[Request], prompts: list[list[int]]) -> list[Completion]:
        import torch

        width = max(len(ids) for ids in prompts)
        input_ids = torch.tensor([[self._pad] * (width - len(ids)) + ids for ids in prompts], device=self._model.device)
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=self._model.device)
        budget = self.config.max_new_tokens if not self._context else min(self.config.max_new_tokens, self._context - width)
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
            ended = next((k for k, token in enumerate(row) if token in self._ends), None)
            tokens = row if ended is None else row[:ended]
            text = self._tokenizer.decode(tokens, skip_special_tokens=True)
            stopped = ended is not None or any(s in text for s in self.config.stop)
            completions.append(Completion(request.id, text, "stop" if stopped else "length", prompt_tokens=len(ids), output_tokens=len(tokens)))
        return completions
