"""Compact JSON that survives every SSE parser.

The SSE spec ends lines only at CR, LF and CRLF, but many parsers split with ``splitlines``,
which also breaks at U+2028, U+2029, U+0085, VT, FF and the C0 separators. A JSON string may
hold those raw; escaping them (``\\u2028``…) keeps the value identical and every event whole,
whatever parser the reader uses. Non-ASCII text otherwise stays as-is (smaller than escaping).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["dumps"]

_SPLITTERS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def dumps(value: Any) -> str:
    """``value`` as compact JSON with line-separator-like characters escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return _SPLITTERS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
