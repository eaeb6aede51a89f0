"""Credentials in a URL never reach a file or a log: what tpt shows or stores of a URL is redacted.

A server URL may carry credentials, `http://user:password@host/v1` (basic
auth), or a key in its query (`?api_key=...`). Requests use the URL as given;
summary.json, OUT/thinking/, rejects, errors and logs get `http://***@host/v1`
and `?api_key=***`.
"""

from __future__ import annotations

import re

# scheme://userinfo@ up to the host's last `@` (a password with an unescaped `@` is still hidden whole)
# A URL ends at a quote (a URL escapes its own), so a URL inside JSON text is redacted and the JSON stays whole.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#\"]*@")
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[?&][^=&#\s\"]*(?:key|token|secret|passw|pwd|auth|sig|credential)[^=&#\s\"]*=)[^&#\s\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` (a URL, or a message that names URLs) with the credentials of every URL in it replaced by ***."""
    return _SECRET_PARAMETER.sub(r"\g<name>***", _USERINFO.sub(r"\g<scheme>***@", text))
