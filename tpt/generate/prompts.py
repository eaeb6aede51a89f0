"""The paper's thinking prompts as template files, rendered into backend requests.

A template holds `{document}` and, for the random-focus variant (Appendix A.3),
`{focus}`: one of the focus points, chosen by a hash of the request id so a
rerun asks the same question. Chat models get the conversation (the teacher's
chat template is applied by the backend or server); base models get the text.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tpt.generate.types import Request

PROMPTS = Path(__file__).parent / "prompts"
FOCUS_POINTS = PROMPTS / "focus_points.txt"


def packaged_templates() -> list[str]:
    """The names of the templates tpt ships."""
    return sorted(p.stem for p in PROMPTS.glob("*.txt") if p != FOCUS_POINTS)


def load_template(name: str) -> str:
    """A packaged template by name ("default", "random_focus") or a template file path."""
    packaged = PROMPTS / f"{name}.txt"
    path = packaged if packaged.is_file() and "/" not in name else Path(name).expanduser()
    if not path.is_file():
        names = packaged_templates()
        raise FileNotFoundError(f"generate.prompt: no template {name!r}; packaged: {', '.join(names)}, or a path to a .txt file")
    template = path.read_text(encoding="utf-8")
    if "{document}" not in template:
        raise ValueError(f"generate.prompt: template {path} has no {{document}} placeholder")
    return template


def has_chat_template(model_dir: Path) -> bool:
    """Whether an HF model directory ships a chat template (an instruction-tuned teacher)."""
    if (model_dir / "chat_template.jinja").is_file():
        return True
    config = model_dir / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))


class PromptBuilder:
    """Turns (request id, document) into a `Request` for a chat or a base model."""

    def __init__(self, template: str, chat: bool):
        self.template = template
        self.chat = chat
        self.focus_points = FOCUS_POINTS.read_text(encoding="utf-8").splitlines() if "{focus}" in template else []

    def render(self, request_id: str, document: str) -> str:
        # str.replace, not str.format: documents are full of braces.
        text = self.template.replace("{focus}", self.focus(request_id)) if self.focus_points else self.template
        return text.replace("{document}", document).strip() + "\n"

    def focus(self, request_id: str) -> str:
        """The focus point of a request: the same one for the same id, on any machine."""
        index = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big")
        return self.focus_points[index % len(self.focus_points)]

    def request(self, request_id: str, document: str) -> Request:
        text = self.render(request_id, document)
        if self.chat:
            return Request(request_id, messages=({"role": "user", "content": text},))
        return Request(request_id, prompt=text)
