"""Durable Streams header names and strict parsers for every value a client can send.

Parsers raise :class:`BadRequest` with a message naming the header; nothing reaches the log
until the whole request has parsed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from service.log import ZERO, ForkFrom, Offset, OffsetError, Producer

__all__ = [
    "CLOSED",
    "CURSOR",
    "EXPIRES_AT",
    "FORKED_FROM",
    "FORK_OFFSET",
    "FORK_SUB_OFFSET",
    "NEXT_OFFSET",
    "PRODUCER_EPOCH",
    "PRODUCER_EXPECTED_SEQ",
    "PRODUCER_ID",
    "PRODUCER_RECEIVED_SEQ",
    "PRODUCER_SEQ",
    "SEQ",
    "SSE_ENCODING",
    "TTL",
    "UP_TO_DATE",
    "BadRequest",
    "ReadOffset",
    "format_expires_at",
    "parse_closed",
    "parse_expires_at",
    "parse_fork",
    "parse_producer",
    "parse_read_offset",
    "parse_ttl",
]

NEXT_OFFSET = "Stream-Next-Offset"
UP_TO_DATE = "Stream-Up-To-Date"
CURSOR = "Stream-Cursor"
CLOSED = "Stream-Closed"
SEQ = "Stream-Seq"
TTL = "Stream-TTL"
EXPIRES_AT = "Stream-Expires-At"
SSE_ENCODING = "Stream-SSE-Data-Encoding"
PRODUCER_ID = "Producer-Id"
PRODUCER_EPOCH = "Producer-Epoch"
PRODUCER_SEQ = "Producer-Seq"
PRODUCER_EXPECTED_SEQ = "Producer-Expected-Seq"
PRODUCER_RECEIVED_SEQ = "Producer-Received-Seq"
FORKED_FROM = "Stream-Forked-From"
FORK_OFFSET = "Stream-Fork-Offset"
FORK_SUB_OFFSET = "Stream-Fork-Sub-Offset"

# ASCII digits only: `\d` would admit other scripts' digits and `$` a trailing newline.
_UINT = re.compile(r"(?:0|[1-9][0-9]*)")
_DIGITS = re.compile(r"[0-9]+")
_MAX_SAFE_INT = 2**53 - 1  # the protocol's bound, for JavaScript clients
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


class BadRequest(ValueError):
    """The request is malformed; the message says which part and why."""

    def __init__(self, message: str, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.code = code


def parse_ttl(raw: str | None) -> int | None:
    """``Stream-TTL``: a non-negative decimal integer, no sign, no leading zeros."""
    if raw is None:
        return None
    if not _UINT.fullmatch(raw):
        raise BadRequest(f"{TTL} must be a non-negative integer without sign or leading zeros")
    return int(raw)


def parse_expires_at(raw: str | None) -> int | None:
    """``Stream-Expires-At``: an RFC 3339 timestamp, returned as epoch milliseconds."""
    if raw is None:
        return None
    if not _RFC3339.fullmatch(raw):
        raise BadRequest(f"{EXPIRES_AT} must be an RFC 3339 timestamp")
    text = raw.replace("z", "Z").replace("Z", "+00:00").replace("t", "T").replace(" ", "T")
    try:
        when = datetime.fromisoformat(text)
        # Also rejects instants whose UTC form leaves years 1..9999 (e.g. 9999-12-31T23:59
        # at -23:59), which could be stored but never formatted back.
        when.astimezone(UTC).replace(tzinfo=None).isoformat()
        ms = int(when.timestamp() * 1000)
        format_expires_at(ms)
    except (ValueError, OverflowError, OSError):
        raise BadRequest(f"{EXPIRES_AT} is not a valid date and time") from None
    return ms


def format_expires_at(ms: int) -> str:
    """Epoch milliseconds as an RFC 3339 UTC timestamp with millisecond precision."""
    when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_closed(raw: str | None, *, header: str = CLOSED) -> bool:
    """A boolean header such as ``Stream-Closed``: ``true``/``false`` (any case), or absent."""
    if raw is None:
        return False
    value = raw.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    raise BadRequest(f"{header} must be true or false")


def _bounded_int(name: str, raw: str) -> int:
    if not _DIGITS.fullmatch(raw):
        raise BadRequest(f"{name} must be a non-negative decimal integer")
    value = int(raw)
    if value > _MAX_SAFE_INT:
        raise BadRequest(f"{name} must be at most 2^53-1")
    return value


def parse_producer(pid: str | None, epoch: str | None, seq: str | None) -> Producer | None:
    """The idempotent-producer triple: all three headers or none."""
    present = [v is not None for v in (pid, epoch, seq)]
    if not any(present):
        return None
    if not all(present):
        raise BadRequest(
            f"{PRODUCER_ID}, {PRODUCER_EPOCH} and {PRODUCER_SEQ} must be sent together"
        )
    assert pid is not None
    assert epoch is not None
    assert seq is not None
    if not pid.strip():
        raise BadRequest(f"{PRODUCER_ID} must not be empty")
    if len(pid) > 256:
        raise BadRequest(f"{PRODUCER_ID} is longer than 256 characters")
    return Producer(pid, _bounded_int(PRODUCER_EPOCH, epoch), _bounded_int(PRODUCER_SEQ, seq))


def _offset(name: str, raw: str) -> Offset:
    try:
        return Offset.parse(raw)
    except OffsetError:
        raise BadRequest(f"{name} is not a valid offset", "INVALID_OFFSET") from None


def parse_fork(
    source_path: str | None, offset: str | None, sub_offset: str | None
) -> ForkFrom | None:
    """The fork headers; ``source_path`` is already reduced to a stream name by the caller."""
    if source_path is None:
        if sub_offset is not None or offset is not None:
            raise BadRequest(f"{FORK_OFFSET} and {FORK_SUB_OFFSET} need {FORKED_FROM}")
        return None
    at = None if offset is None else _offset(FORK_OFFSET, offset)
    sub = 0
    if sub_offset is not None:
        if not _UINT.fullmatch(sub_offset):
            raise BadRequest(f"{FORK_SUB_OFFSET} must be a non-negative integer")
        sub = int(sub_offset)
        if sub > 0 and at is None:
            raise BadRequest(f"{FORK_SUB_OFFSET} needs an explicit {FORK_OFFSET}")
    return ForkFrom(source=source_path, offset=at, sub_offset=sub)


class ReadOffset:
    """Where a read starts: an offset, the stream's beginning, or its tail (``now``)."""

    __slots__ = ("explicit", "now", "offset")

    def __init__(self, offset: Offset, *, now: bool = False, explicit: bool = True) -> None:
        self.offset = offset
        self.now = now
        self.explicit = explicit


def parse_read_offset(values: list[str]) -> ReadOffset:
    """The ``offset`` query parameter: absent, ``-1``, ``now`` or an offset this server issued."""
    if not values:
        return ReadOffset(ZERO, explicit=False)
    if len(values) > 1:
        raise BadRequest("offset must be given at most once", "INVALID_OFFSET")
    raw = values[0]
    if raw == "-1":
        return ReadOffset(ZERO)
    if raw == "now":
        return ReadOffset(ZERO, now=True)
    return ReadOffset(_offset("offset", raw))
