"""Text normalisation shared by classifier training and prediction.

fastText splits on whitespace and learns one vector per distinct token, so
both sides must see text cut the same way: NFKC, lowercase, digits folded to
0, words and single punctuation or symbol marks as tokens (control, format
and other invisible characters dropped), on one line (a newline would end the
fastText example).
"""

from __future__ import annotations

import re
import unicodedata

_TOKEN = re.compile(r"\w+|[^\w\s]")
_DIGIT = re.compile(r"\d")


class EmptyTextError(ValueError):
    """A document with nothing left to classify after normalisation."""


def normalize(text: str) -> str:
    """`text` as one line of space-separated tokens; EmptyTextError if there are none."""
    text = _DIGIT.sub("0", unicodedata.normalize("NFKC", text).lower())
    # control, format, private-use and stray combining characters: looked up once per distinct character
    invisible = {ord(c): None for c in set(text) if unicodedata.category(c)[0] in "CM" and not c.isspace()}
    tokens = _TOKEN.findall(text.translate(invisible) if invisible else text)
    if not tokens:
        raise EmptyTextError("no words, punctuation or symbols left after normalisation")
    return " ".join(tokens)
