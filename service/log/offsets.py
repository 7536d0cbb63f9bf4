"""Offsets: opaque to clients, but with a structure this package relies on.

An offset is ``NNNNNNNNNNNNNNNN_BBBBBBBBBBBBBBBB``: the number of entries before the position
and the number of payload bytes before it, both zero-padded to 16 decimal digits. Fixed width
makes byte-wise comparison equal numeric comparison, so offsets sort lexicographically; digits
and ``_`` are URL-safe and never collide with the protocol's sentinels ``-1`` and ``now``.

The entry count is the position; the byte count is carried so that an offset says how much
data precedes it (useful to operators and for gap reports) and is checked on input, so a
forged or corrupted offset is rejected instead of silently misread. In the Redis backend the
entry count is also the entry id (``<n>-0``), so an offset maps to ``XRANGE`` without a lookup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ZERO", "Offset", "OffsetError"]

_WIDTH = 16
_MAX = 10**_WIDTH - 1
_PATTERN = re.compile(r"\A([0-9]{16})_([0-9]{16})\Z")


class OffsetError(ValueError):
    """A string is not an offset this server could have issued."""


@dataclass(frozen=True, slots=True)
class Offset:
    """A position in a stream: ``entries`` entries and ``bytes`` payload bytes precede it."""

    entries: int
    bytes: int

    # Ordering by hand: the dataclass-generated methods build two tuples per comparison, and
    # every live reader compares offsets for every notice it takes (hot with many readers).
    def __lt__(self, other: Offset) -> bool:
        if self.entries != other.entries:
            return self.entries < other.entries
        return self.bytes < other.bytes

    def __le__(self, other: Offset) -> bool:
        if self.entries != other.entries:
            return self.entries < other.entries
        return self.bytes <= other.bytes

    def __gt__(self, other: Offset) -> bool:
        if self.entries != other.entries:
            return self.entries > other.entries
        return self.bytes > other.bytes

    def __ge__(self, other: Offset) -> bool:
        if self.entries != other.entries:
            return self.entries > other.entries
        return self.bytes >= other.bytes

    def __post_init__(self) -> None:
        if not (0 <= self.entries <= _MAX and 0 <= self.bytes <= _MAX):
            raise OffsetError("offset out of range")

    def __str__(self) -> str:
        return f"{self.entries:016d}_{self.bytes:016d}"

    def advance(self, size: int, count: int = 1) -> Offset:
        """The offset after ``count`` more entries holding ``size`` bytes in total."""
        return Offset(self.entries + count, self.bytes + size)

    @classmethod
    def parse(cls, text: str) -> Offset:
        """Parse a wire offset; raise :class:`OffsetError` for anything malformed."""
        match = _PATTERN.match(text)
        if match is None:
            raise OffsetError(f"malformed offset {text[:64]!r}")
        return cls(int(match.group(1)), int(match.group(2)))


ZERO = Offset(0, 0)
