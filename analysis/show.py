"""How `tpt show` prints a sample: as text for a person, with the document and the thinking between rulers, or as
one JSON line. Control characters of the text (a terminal's escape sequences) are shown escaped, never sent."""

from __future__ import annotations

import json
import re
from typing import Any

from tpt.classify.taxonomy import AXES

WIDTH = 100
# C0 controls but tab and newline, DEL and the C1 controls: a terminal would act on them
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
TEXT_FIELDS = ("text", "document", "thinking")
SHOWN_FIRST = ("id", "source")


def format_sample(sample: dict[str, Any], number: int, form: str) -> str:
    """One sample, ready to print: `form` is "text" or "jsonl"."""
    if form == "jsonl":
        fields = {key: value for key, value in sample.items() if key != "text"}  # text = document + separator + thinking
        return CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(fields, ensure_ascii=False)) + "\n"
    lines = [_ruler(f"sample {number} · {sample.get('source')} · {sample.get('id')}", "═")]
    labels = [f"{axis}: {_label(sample, axis)}" for axis in AXES if sample.get(axis) is not None]
    if labels:
        lines.append("   ".join(labels))
    scalars = [f"{key}: {_value(value)}" for key, value in sample.items()
               if key not in (*TEXT_FIELDS, *SHOWN_FIRST, *AXES, *(f"{a}_score" for a in AXES))]
    if scalars:
        lines.append("   ".join(scalars))
    lines += [_ruler("document", "─"), _visible(sample["document"])]
    if sample.get("thinking") is not None:
        lines += [_ruler("thinking", "─"), _visible(sample["thinking"])]
    return "\n".join(lines) + "\n\n"


def _ruler(title: str, line: str) -> str:
    head = f"{line * 3} {_visible(title)} "
    return head + line * max(3, WIDTH - len(head))


def _label(sample: dict[str, Any], axis: str) -> str:
    score = sample.get(f"{axis}_score")
    return _visible(str(sample[axis])) + ("" if score is None else f" ({score:.2f})")


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(value) or "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return _visible(str(value))


def _visible(text: str) -> str:
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
