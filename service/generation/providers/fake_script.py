"""The fake provider's script: which tokens a request gets, how fast, and where it fails.

One pure function of the request decides everything, so the in-process ``fake`` provider
(:mod:`service.generation.providers.fake`) and the wire-compatible fake server
(``rivulet fake-provider``, :mod:`service.generation.fake_server`) produce the same answer
for the same request, whichever SDK carried it there.

Tokens
    Words from a small built-in list, chosen by the SHA-256 of the canonical JSON of the
    request's messages and model. The first token is a bare word, every later one is
    ``" " + word``, so the answer reads ``"river stone amber ..."``. Parameters never change
    *which* words come, only how many, so a shorter answer is a prefix of a longer one.

    Messages are normalized first: every ``system`` message's text, joined with a blank line,
    becomes one leading system message (Anthropic carries the system prompt outside
    ``messages``; this makes both wire formats and the in-process call agree).

Usage
    ``input_tokens`` = number of normalized messages + number of whitespace-separated words in
    them; ``output_tokens`` = tokens actually sent.

Parameters
    Everything is optional and lives in ``params["fake"]`` (a JSON object). In the wire
    formats it is the top-level ``"fake"`` field of the request body (the OpenAI adapter sends
    it with ``extra_body``; the Anthropic adapter likewise). Unknown keys are rejected
    (HTTP 400 / ``invalid_request``) so a typo never silently does nothing.

    ``tokens`` (int 0-100000, default 12)
        Answer length in tokens.
    ``rate`` (number >= 0, default 50)
        Tokens per second; ``0`` sends them as fast as possible.
    ``fail_attempts`` (int 0-100, default 0)
        The first N calls of an *identical* request fail before any token with a retryable
        overloaded error (HTTP 503 on the OpenAI wire, 529 on Anthropic's,
        ``ProviderError(kind="overloaded", retryable=True)`` in process); call N+1 goes
        through. Calls are counted per request fingerprint (SHA-256 of messages, model and
        params; on the server also per endpoint), in the memory of each fake: one count per
        server process or provider instance.
    ``fail_status`` (int 400-599, default none)
        With ``fail_attempts``: reject those calls with this HTTP status instead (e.g. 401,
        429, 400), to exercise error mapping. Its error message echoes the caller's API key,
        as careless upstreams do, so tests can prove adapters never pass such text on.
    ``fail_after`` (int >= 0, default none)
        Send K tokens, then fail mid-stream with an overloaded error: ``event: error`` with
        ``overloaded_error`` on Anthropic's wire, a ``data: {"error": ...}`` chunk on
        OpenAI's. Applies to every call. K may be 0 or at least the answer length; the
        failure then takes the place of the finish.
    ``stall_before_first`` (number 0-600, default 0)
        Seconds to wait before the first token, after the response has started (a slow
        time-to-first-token).
    ``pause_after`` (int >= 1, default none) and ``pause`` (number 0-600, default 0)
        After token ``pause_after`` has been sent, go quiet for ``pause`` seconds before the
        next one: an answer idle mid-stream, to show what an edge does with a silent stream
        (``rivulet doctor`` uses it to check heartbeats and idle timeouts). Both or neither.
    ``word_repeat`` (int 1-1000, default 1)
        Each token's word is written this many times over (``"riverriver..."``): big tokens
        for load and backpressure tests, same words otherwise.
    ``stamp`` (bool, default false)
        Append ``"@<unix time>"`` (seconds, microsecond digits) to each token when it is
        emitted, so a client can measure provider-emit → receipt latency (``rivulet bench``).
        The words are unchanged; :func:`unstamp` splits a stamped token.

    ``params["max_tokens"]`` (the request's ``max_tokens``) caps the length: when it cuts the
    answer the finish reason is ``length``, otherwise ``stop``. The Anthropic adapter always
    sends ``max_tokens`` (default 1024, the API requires it), so answers longer than that are
    cut there too.

Timing
    Token ``i`` is due ``stall_before_first + i / rate`` seconds after the response starts
    (plus ``pause`` for every token after the first ``pause_after``);
    a mid-stream failure happens when token ``K`` would have been due.

Example (``POST /v1/generations``)::

    {"provider": "fake", "model": "fake-1", "messages": [{"role": "user", "content": "hi"}],
     "params": {"max_tokens": 40, "fake": {"tokens": 200, "rate": 20, "fail_after": 5}}}
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

__all__ = [
    "DEFAULT_RATE",
    "DEFAULT_TOKENS",
    "WORDS",
    "AttemptCounter",
    "FakeOptions",
    "FakeParamsError",
    "FakePlan",
    "MessageLike",
    "Turn",
    "content_text",
    "input_token_count",
    "normalize_messages",
    "plan",
    "script",
    "stamped",
    "unstamp",
]

Turn = tuple[str, str]
"""A message as ``(role, text)``."""


class _RoleContent(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...


MessageLike = Turn | Mapping[str, Any] | _RoleContent
"""What the script accepts as a message: a ``(role, text)`` pair, a wire-style mapping
(``{"role": ..., "content": str | [{"type": "text", "text": ...}, ...]}``) or a
:class:`~service.generation.providers.base.Message`."""

DEFAULT_TOKENS = 12
DEFAULT_RATE = 50.0
_MAX_TOKENS = 100_000
_MAX_FAIL_ATTEMPTS = 100
_MAX_STALL = 600.0

WORDS: tuple[str, ...] = (
    "river", "stone", "amber", "cloud", "ember", "meadow", "harbor", "lantern",
    "willow", "copper", "signal", "orchard", "quiet", "silver", "tidal", "north",
    "garden", "falcon", "marble", "cedar", "echo", "violet", "canyon", "ridge",
    "thistle", "beacon", "glacier", "hollow", "juniper", "kestrel", "lumen", "maple",
    "nectar", "opal", "prairie", "quartz", "raven", "saffron", "timber", "umber",
    "valley", "wander", "yonder", "zephyr", "anchor", "bramble", "cobalt", "drift",
    "fable", "grove", "heron", "island", "jasper", "kindle", "lagoon", "mist",
    "nimbus", "ochre", "pebble", "quill", "rustle", "summit", "tundra", "aurora",
)  # fmt: skip


class FakeParamsError(ValueError):
    """``params["fake"]`` or ``max_tokens`` is malformed; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class FakeOptions:
    """The parsed ``params["fake"]`` object (see the module docstring for each field)."""

    tokens: int = DEFAULT_TOKENS
    rate: float = DEFAULT_RATE
    fail_attempts: int = 0
    fail_status: int | None = None
    fail_after: int | None = None
    stall_before_first: float = 0.0
    word_repeat: int = 1
    stamp: bool = False
    pause_after: int | None = None
    pause: float = 0.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FakeOptions:
        """Validate and parse ``params["fake"]``; raise :class:`FakeParamsError` if malformed."""
        raw = params.get("fake")
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise FakeParamsError("params.fake must be an object")
        unknown = sorted(set(raw) - _FIELDS)
        if unknown:
            raise FakeParamsError(f"params.fake has unknown keys: {', '.join(map(str, unknown))}")
        fail_after = raw.get("fail_after")
        fail_status = raw.get("fail_status")
        pause_after = raw.get("pause_after")
        if ("pause" in raw) != (pause_after is not None):
            raise FakeParamsError("params.fake.pause and params.fake.pause_after go together")
        return cls(
            tokens=_int(raw, "tokens", DEFAULT_TOKENS, 0, _MAX_TOKENS),
            rate=_number(raw, "rate", DEFAULT_RATE, 0.0, math.inf),
            fail_attempts=_int(raw, "fail_attempts", 0, 0, _MAX_FAIL_ATTEMPTS),
            fail_status=None if fail_status is None else _int(raw, "fail_status", 0, 400, 599),
            fail_after=None if fail_after is None else _int(raw, "fail_after", 0, 0, _MAX_TOKENS),
            stall_before_first=_number(raw, "stall_before_first", 0.0, 0.0, _MAX_STALL),
            word_repeat=_int(raw, "word_repeat", 1, 1, 1000),
            stamp=_bool(raw, "stamp"),
            pause_after=(
                None if pause_after is None else _int(raw, "pause_after", 0, 1, _MAX_TOKENS)
            ),
            pause=_number(raw, "pause", 0.0, 0.0, _MAX_STALL),
        )


_FIELDS = frozenset(field.name for field in fields(FakeOptions))
STAMP_SEPARATOR = "@"


def _bool(raw: Mapping[str, Any], name: str) -> bool:
    value = raw.get(name, False)
    if not isinstance(value, bool):
        raise FakeParamsError(f"params.fake.{name} must be true or false")
    return value


def stamped(token: str, options: FakeOptions, now: float) -> str:
    """``token`` as emitted at ``now`` (wall clock): with ``stamp``, ``token@<now>``."""
    return f"{token}{STAMP_SEPARATOR}{now:.6f}" if options.stamp else token


def unstamp(delta: str) -> tuple[str, float]:
    """Split a stamped token into its text and emit time (seconds since the epoch)."""
    text, _, when = delta.rpartition(STAMP_SEPARATOR)
    return text, float(when)


@dataclass(frozen=True, slots=True)
class FakePlan:
    """What one call of a request does."""

    tokens: tuple[str, ...]
    """The answer's tokens (already cut by ``max_tokens``; ``fail_after`` not applied)."""
    finish_reason: str
    """``length`` when ``max_tokens`` cut the answer, else ``stop``."""
    input_tokens: int
    options: FakeOptions
    fingerprint: str
    """SHA-256 of the whole request; identical requests share it (attempts are counted by it)."""

    @property
    def fail_after(self) -> int | None:
        """Tokens sent before the scripted mid-stream failure (``None``: no failure)."""
        if self.options.fail_after is None:
            return None
        return min(self.options.fail_after, len(self.tokens))

    @property
    def tokens_to_send(self) -> int:
        """How many tokens a call that is not rejected sends."""
        after = self.fail_after
        return len(self.tokens) if after is None else after

    def fails_before_first(self, attempt: int) -> bool:
        """Whether call number ``attempt`` (1-based) is rejected before its first token."""
        return attempt <= self.options.fail_attempts

    def due(self, index: int) -> float:
        """Seconds after the response started when token ``index`` is sent."""
        options = self.options
        rate = options.rate
        due = options.stall_before_first + (index / rate if rate > 0 else 0.0)
        if options.pause_after is not None and index >= options.pause_after:
            due += options.pause
        return due


class AttemptCounter:
    """Counts calls per request fingerprint, so ``fail_attempts`` lets the retry through.

    Bounded (least recently used fingerprints are forgotten) because a long-running fake
    server sees an unbounded number of distinct requests.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, int] = OrderedDict()

    def next(self, fingerprint: str) -> int:
        """Record one more call of ``fingerprint``; return its 1-based number."""
        count = self._seen.pop(fingerprint, 0) + 1
        self._seen[fingerprint] = count
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return count

    def clear(self) -> None:
        """Forget every count."""
        self._seen.clear()


def normalize_messages(messages: Iterable[MessageLike]) -> list[Turn]:
    """All system text first as one message, then the other messages in order."""
    turns = [_turn(message) for message in messages]
    system = [text for role, text in turns if role == "system"]
    rest = [(role, text) for role, text in turns if role != "system"]
    return ([("system", "\n\n".join(system))] if system else []) + rest


def content_text(content: Any, separator: str = "") -> str:
    """A message's text: a plain string, or the text parts of a content list (wire form)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return separator.join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def _turn(message: MessageLike) -> Turn:
    if isinstance(message, tuple):
        return message
    if isinstance(message, Mapping):
        return str(message.get("role", "")), content_text(message.get("content"))
    return message.role, message.content


def input_token_count(messages: Iterable[MessageLike]) -> int:
    """The fake's deterministic input token count: messages plus words."""
    normalized = normalize_messages(messages)
    return len(normalized) + sum(len(text.split()) for _, text in normalized)


def script(messages: Iterable[MessageLike], model: str, params: Mapping[str, Any]) -> list[str]:
    """The tokens a successful call of this request sends, in order (before ``fail_after``)."""
    return list(plan(messages, model, params).tokens)


def plan(messages: Iterable[MessageLike], model: str, params: Mapping[str, Any]) -> FakePlan:
    """Everything the fake does for this request; raise :class:`FakeParamsError` if malformed."""
    normalized = normalize_messages(messages)
    options = FakeOptions.from_params(params)
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise FakeParamsError("max_tokens must be a positive integer")
    count = options.tokens if max_tokens is None else min(options.tokens, max_tokens)
    seed = _canonical({"messages": normalized, "model": model})
    return FakePlan(
        tokens=_words(seed, count, options.word_repeat),
        finish_reason="length" if count < options.tokens else "stop",
        input_tokens=input_token_count(normalized),
        options=options,
        fingerprint=hashlib.sha256(
            _canonical({"messages": normalized, "model": model, "params": _jsonable(params)})
        ).hexdigest(),
    )


def _words(seed: bytes, count: int, repeat: int = 1) -> tuple[str, ...]:
    # Hash blocks instead of `random.Random`: its algorithms are not promised to stay the same
    # across Python versions, and the answer must not change when the interpreter does.
    out: list[str] = []
    block = 0
    while len(out) < count:
        digest = hashlib.sha256(seed + block.to_bytes(8, "big")).digest()
        for offset in range(0, len(digest), 2):
            if len(out) == count:
                break
            word = WORDS[int.from_bytes(digest[offset : offset + 2], "big") % len(WORDS)] * repeat
            out.append(word if not out else " " + word)
        block += 1
    return tuple(out)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _jsonable(params: Mapping[str, Any]) -> Any:
    # Params came from JSON in every real path; `default=str` only keeps odd in-process values
    # (tuples, Decimals) from crashing the fingerprint.
    return json.loads(json.dumps(dict(params), sort_keys=True, default=str))


def _int(raw: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FakeParamsError(f"params.fake.{key} must be an integer in [{low}, {high}]")
    return value


def _number(raw: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = raw.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        bound = "" if math.isinf(high) else f" and at most {high:g}"
        raise FakeParamsError(f"params.fake.{key} must be a number at least {low:g}{bound}")
    return float(value)
