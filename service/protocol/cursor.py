"""``Stream-Cursor``: time-bucketed values that keep CDN-collapsed long-polls from looping.

Per the protocol: the cursor is the number of 20 s intervals since 2024-10-09T00:00:00Z. When
a client echoes a cursor that is not behind the current interval, the answer jumps ahead by a
random 1-3600 s worth of intervals, so a response cursor is always strictly greater than the
echoed one and a cached empty response can't be served to the same key forever.
"""

from __future__ import annotations

import math
import random
import time

__all__ = ["next_cursor"]

_EPOCH_S = 1728432000  # 2024-10-09T00:00:00Z
_INTERVAL_S = 20


def next_cursor(client_cursor: str | None, now: float | None = None) -> str:
    """The cursor to send, given the one the client echoed (if any)."""
    current = int(((time.time() if now is None else now) - _EPOCH_S) // _INTERVAL_S)
    echoed: int | None = None
    if client_cursor is not None and client_cursor.isascii() and client_cursor.isdigit():
        echoed = int(client_cursor[:20])
    if echoed is None or echoed < current:
        return str(current)
    jitter_s = random.randint(1, 3600)  # noqa: S311 - cache-busting, not security
    return str(echoed + max(1, math.ceil(jitter_s / _INTERVAL_S)))
