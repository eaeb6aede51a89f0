"""Downstream tasks scored offline, as lm-eval-harness scores them: GSM8K.

The task definition is lm-eval-harness's `gsm8k` (lm_eval/tasks/gsm8k/gsm8k.yaml,
v0.4): the prompt is "Question: {question}\\nAnswer:", the target " {answer}"
(the worked solution ending "#### N"), few-shot examples joined by a blank line
and drawn for each question as lm-eval's default sampler draws them (one
`random.Random(1234)` for the task, `sample(pool, n)` per question in order).
Two scores:
- `AnswerLogLikelihood`: the summed log-probability of the target's tokens given
  the prompt, the number lm-eval's `loglikelihood` request returns (its tokens
  split the same way: the prompt and prompt+target encoded with the tokenizer's
  defaults, the target being the tail), averaged over problems; a model that
  learned the task's reasoning puts more probability on the worked answer long
  before it can produce one. One difference: a problem longer than max_seq_len
  keeps max_seq_len tokens here, one fewer prompt token than lm-eval keeps;
- `ExactMatchStrict` / `ExactMatchFlexible`: greedy answers cut at the task's
  stop strings, the number taken by lm-eval's "strict-match" (`#### N`) or
  "flexible-extract" (the last number) filter, compared with the reference after
  its normalisation (commas, `$`, a trailing `.` dropped).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import torch
from composer.core import DataSpec
from composer.utils import dist
from torch.utils.data import DataLoader
from torchmetrics import Metric

from tpt.train.config import EvalTaskConfig

STOP = ("Question:", "</s>", "<|im_end|>")  # lm-eval's `until` for gsm8k
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
IGNORED = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))


def read_problems(path: str | Path, limit: int | None = None) -> list[dict[str, str]]:
    """GSM8K's JSONL: one {question, answer} per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"eval_tasks: no task file at {path}")
    problems = []
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            row = json.loads(line)
            if not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
                raise ValueError(f"{path}:{number}: expected a JSON object with string `question` and `answer`")
            problems.append(row)
            if limit and len(problems) == limit:
                break
    return problems


def fewshot_draws(count: int, pool: list[dict[str, str]], n: int, seed: int) -> list[list[dict[str, str]]]:
    """The few-shot examples of each of `count` questions, in order: lm-eval's ContextSampler (api/samplers.py) draws
    `n` of the whole pool for every question from one generator seeded once per task (its default seed is 1234)."""
    draw = random.Random(seed)
    return [draw.sample(pool, n) if n else [] for _ in range(count)]


def prompt_of(question: str, fewshot: list[dict[str, str]]) -> str:
    shots = "".join(f"Question: {p['question']}\nAnswer: {p['answer']}\n\n" for p in fewshot)
    return f"{shots}Question: {question}\nAnswer:"


def normalize(answer: str) -> str:
    for pattern in IGNORED:
        answer = pattern.sub("", answer)
    return answer.strip().lower()


def extract(generation: str, flexible: bool) -> str:
    """lm-eval's filters: strict takes the `#### N` number, flexible the last number; none found is "[invalid]"."""
    for stop in STOP:
        generation = generation.split(stop)[0]
    if not flexible:
        found = STRICT.search(generation)
        return found.group(1) if found else "[invalid]"
    found = FLEXIBLE.findall(generation)
    return next((group for group in found[-1] if group), "[invalid]") if found else "[invalid]"


class AnswerLogLikelihood(Metric):
    """Summed log-probability of the target tokens (labels other than -100), averaged over problems."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits = logits if isinstance(logits, torch.Tensor) else logits["logits"]
        scored = labels != -100
        logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        self.total += (logprobs * scored).sum().double()
        self.count += int(scored.any(dim=1).sum())

    def compute(self) -> torch.Tensor:
        return self.total / self.count


class ExactMatchStrict(Metric):
    """Share of greedy answers whose extracted number equals the reference's."""

    full_state_update = False
    needs_batch = True  # Composer passes the batch and the decoded generations
    flexible = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, batch: dict[str, Any], outputs: list[str], labels: list[str]) -> None:
        for generation, reference in zip(outputs, labels):
            self.correct += int(normalize(extract(generation, self.flexible)) == normalize(reference))
            self.count += 1

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.count


class ExactMatchFlexible(ExactMatchStrict):
    flexible = True


TASK_METRICS = [AnswerLogLikelihood, ExactMatchStrict, ExactMatchFlexible]


def loglikelihood_batch(items: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded prompt+target rows; labels keep only the target tokens."""
    width = max(len(context) + len(target) for context, target in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (context, target) in enumerate(items):
        tokens = torch.tensor(context + target)
        input_ids[row, :len(tokens)] = tokens
        labels[row, len(context):len(tokens)] = tokens[len(context):]
        attention_mask[row, :len(tokens)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def generation_batch(items: list[tuple[list[int], str]], pad_id: int, eos_id: int, max_new_tokens: int) -> dict[str, Any]:
    """Left-padded prompts for greedy generation (Composer's `mode: generate`), the references as labels."""
    width = max(len(prompt) for prompt, _ in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (prompt, _) in enumerate(items):
        input_ids[row, width - len(prompt):] = torch.tensor(prompt)
        attention_mask[row, width - len(prompt):] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": [reference for _, reference in items],
            "mode": "generate", "generation_kwargs": {"max_new_tokens": max_new_tokens, "do_sample": False,
                                                      "pad_token_id": pad_id, "eos_token_id": eos_id}}


def split_batch(batch: dict[str, Any], microbatch_size: int) -> list[dict[str, Any]]:
    """Microbatches of a task batch: tensors and lists are cut, the mode and generation arguments shared."""
    size = len(batch["input_ids"])
    return [{key: value[start:start + microbatch_size] if isinstance(value, (torch.Tensor, list)) else value
             for key, value in batch.items()} for start in range(0, size, microbatch_size)]


def task_dataloaders(task: EvalTaskConfig, tokenizer: Any, max_seq_len: int) -> dict[str, DataSpec]:
    """The task's eval sets by label suffix: "" scores the answers' log-likelihood, "/greedy" the greedy answers."""
    problems = read_problems(task.path, task.limit)
    pool = read_problems(task.fewshot_path) if task.num_fewshot and task.fewshot_path else []
    if len(pool) < task.num_fewshot:
        raise ValueError(f"eval_tasks {task.label}: num_fewshot {task.num_fewshot} needs fewshot_path with that many problems")
    shots = fewshot_draws(len(problems), pool, task.num_fewshot, task.fewshot_seed)

    def encode(text: str) -> list[int]:  # with the tokenizer's own special tokens (a BOS, if it adds one), as lm-eval's hf model
        return tokenizer(text, verbose=False)["input_ids"]

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scored = []
    for problem, fewshot in zip(problems, shots):
        context = prompt_of(problem["question"], fewshot)
        context_ids, whole = encode(context), encode(f"{context} {problem['answer']}")
        target = whole[len(context_ids):]
        keep = max_seq_len - len(target)  # lm-eval keeps the tail: the target whole, the prompt cut from the left
        scored.append((context_ids[-keep:] if keep > 0 else [], target[-max_seq_len:]))  # lm-eval's pair: prompt, then the tail
    loaders = {"": DataSpec(_loader(scored, task.batch_size, lambda items: loglikelihood_batch(items, pad_id)),
                            get_num_samples_in_batch=lambda batch: len(batch["input_ids"]))}
    if task.generate:
        if task.max_new_tokens >= max_seq_len:
            raise ValueError(f"eval_tasks {task.label}: max_new_tokens {task.max_new_tokens} leaves no room for the prompt "
                             f"in max_seq_len {max_seq_len}")
        prompts = [(encode(prompt_of(p["question"], fewshot))[-(max_seq_len - task.max_new_tokens):], p["answer"])
                   for p, fewshot in zip(problems, shots)]
        collate = lambda items: generation_batch(items, pad_id, tokenizer.eos_token_id, task.max_new_tokens)  # noqa: E731
        loaders["/greedy"] = DataSpec(_loader(prompts, task.batch_size, collate), split_batch=split_batch,
                                      get_num_samples_in_batch=lambda batch: len(batch["input_ids"]))
    return loaders


def _loader(items: list[Any], batch_size: int, collate: Any) -> DataLoader:
    return DataLoader(items, batch_size=batch_size, sampler=dist.get_sampler(items, shuffle=False), collate_fn=collate)
