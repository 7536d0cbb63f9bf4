"""Who may do what: API keys for writes (scoped, rotatable), signed read tokens for browsers.

- **API keys** come from ``RIVULET_API_KEYS`` and/or a file (``RIVULET_API_KEYS_FILE``, e.g. a
  mounted Kubernetes Secret), one ``key[:scope+scope]`` per entry. Only SHA-256 digests are
  kept in memory and presented keys are compared with ``hmac.compare_digest`` against every
  entry, so timing says nothing about which key matched. The file is re-read when it changes
  (checked at most every two seconds) and on SIGHUP: rotation needs no restart. A file that
  fails to parse on reload keeps the previous keys and logs ``auth.reload_failed``.
- **Scopes**: ``generate`` (create and cancel generations), ``streams:write`` (Durable Streams
  PUT/POST/DELETE), ``read`` (read any stream), ``admin`` (everything). A key without scopes has
  all of them.
- **Read tokens** (``v1.<payload>.<hmac>``, HMAC-SHA256 with ``RIVULET_READ_TOKEN_SECRET``)
  grant reading one stream until they expire. ``POST /v1/generations`` returns one, and its
  ``events_url`` carries it as ``?token=`` because ``EventSource`` cannot set headers.
- **Open mode**: with no keys the service runs open only when bound to loopback (the embedded
  default; ``auth.open`` is logged as a warning) or with ``RIVULET_AUTH=none`` said out loud.
  ``Settings.validate`` refuses to start otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from service.telemetry import get_logger

__all__ = [
    "PUBLIC_ANNOTATION",
    "SCOPES",
    "ApiKey",
    "Auth",
    "KeyRing",
    "KeysError",
    "ReadTokens",
    "bearer",
    "parse_keys",
    "rate_limited",
    "require_read",
    "require_scope",
]

SCOPES = frozenset({"generate", "streams:write", "read", "admin"})
_KEY = re.compile(r"[A-Za-z0-9._~-]{16,256}")
_RELOAD_EVERY = 2.0

log = get_logger("service.auth")


class KeysError(ValueError):
    """The API key configuration is malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A configured key: its digest, a short fingerprint for logs, and its scopes."""

    digest: bytes
    fingerprint: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def parse_keys(text: str, where: str) -> list[ApiKey]:
    """Entries separated by commas or newlines: ``key`` or ``key:scope+scope``; ``#`` comments."""
    keys = []
    for n, raw in enumerate(re.split(r"[,\n]", text), 1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        key, _, scope_text = entry.partition(":")
        if not _KEY.fullmatch(key):
            raise KeysError(
                f"{where} entry {n}: a key must be 16-256 characters of A-Z a-z 0-9 . _ ~ -"
            )
        scopes = frozenset(s for s in scope_text.split("+") if s) or SCOPES
        unknown = sorted(scopes - SCOPES)
        if unknown:
            raise KeysError(f"{where} entry {n}: unknown scopes {unknown}; known: {sorted(SCOPES)}")
        digest = hashlib.sha256(key.encode()).digest()
        keys.append(ApiKey(digest, digest.hex()[:8], scopes))
    return keys


class KeyRing:
    """The current API keys, from the environment and/or a file that may change."""

    def __init__(self, inline: str = "", path: str | None = None) -> None:
        self._inline = parse_keys(inline, "RIVULET_API_KEYS") if inline else []
        self._path = Path(path) if path else None
        self._file: list[ApiKey] = []
        self._mtime: float | None = None
        self._checked = 0.0
        if self._path is not None:
            self._load_file(strict=True)

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (else the service runs open)."""
        return bool(self._inline or self._file or self._path)

    def _load_file(self, *, strict: bool) -> None:
        assert self._path is not None
        try:
            stat = self._path.stat()
            keys = parse_keys(self._path.read_text(), str(self._path))
        except (OSError, KeysError) as exc:
            if strict:
                raise KeysError(f"cannot load API keys from {self._path}: {exc}") from None
            log.error("auth.reload_failed", path=str(self._path), error=str(exc))
            return
        if self._mtime is not None:
            log.info("auth.reloaded", path=str(self._path), keys=len(keys))
        self._file, self._mtime = keys, stat.st_mtime

    def reload(self) -> None:
        """Re-read the key file now (SIGHUP)."""
        if self._path is not None:
            self._load_file(strict=False)

    def _maybe_reload(self) -> None:
        if self._path is None:
            return
        now = time.monotonic()
        if now - self._checked < _RELOAD_EVERY:
            return
        self._checked = now
        try:
            mtime = self._path.stat().st_mtime
        except OSError:
            return
        if mtime != self._mtime:
            self._load_file(strict=False)

    def lookup(self, presented: str) -> ApiKey | None:
        """The key matching ``presented``, compared in constant time against every key."""
        self._maybe_reload()
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in (*self._inline, *self._file):
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


class ReadTokens:
    """HMAC-signed, expiring grants to read one stream."""

    PREFIX = "v1."

    def __init__(self, secret: bytes, ttl: float) -> None:
        self._secret = secret
        self._ttl = ttl

    def issue(self, stream: str, now: float | None = None) -> str:
        exp = int((time.time() if now is None else now) + self._ttl)
        payload = _b64(json.dumps({"s": stream, "e": exp}, separators=(",", ":")).encode())
        return f"{self.PREFIX}{payload}.{_b64(self._sign(payload))}"

    def verify(self, token: str, stream: str, now: float | None = None) -> bool:
        """True only for an untampered, unexpired token for exactly ``stream``."""
        if not token.startswith(self.PREFIX) or len(token) > 4096:
            return False
        payload, _, signature = token[len(self.PREFIX) :].partition(".")
        try:
            given = _unb64(signature)
        except ValueError:
            return False
        if not hmac.compare_digest(given, self._sign(payload)):
            return False
        try:
            claims = json.loads(_unb64(payload))
        except ValueError:
            return False
        now = time.time() if now is None else now
        return (
            isinstance(claims, dict)
            and claims.get("s") == stream
            and isinstance(claims.get("e"), int)
            and claims["e"] > now
        )

    def _sign(self, payload: str) -> bytes:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ValueError("bad base64") from None


def bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The ``Authorization: Bearer`` value, if any (an API key or a read token)."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def _never_public(_: str) -> bool:
    return False


@dataclass(slots=True)
class Auth:
    """The process's authorization decisions."""

    keys: KeyRing
    tokens: ReadTokens
    open: bool
    is_public: Callable[[str], Awaitable[bool]] = field(default=_never_public)
    """Whether a stream may be read without credentials (wired to the log by the app)."""

    @classmethod
    def from_settings(
        cls,
        api_keys: str,
        api_keys_file: str | None,
        token_secret: str,
        token_ttl: float,
        *,
        open_mode: bool,
        is_public: Callable[[str], Awaitable[bool]] = _never_public,
    ) -> Auth:
        keys = KeyRing(api_keys, api_keys_file)
        secret = token_secret.encode() if token_secret else secrets.token_bytes(32)
        if not token_secret and keys.enabled:
            log.warning(
                "auth.ephemeral_token_secret",
                detail="RIVULET_READ_TOKEN_SECRET is unset: read tokens work only on the "
                "replica that issued them",
            )
        return cls(keys, ReadTokens(secret, token_ttl), open_mode and not keys.enabled, is_public)

    def require_scope(self, connection: ASGIConnection[Any, Any, Any, Any], scope: str) -> None:
        """Allow only a valid API key with ``scope`` (or open mode)."""
        if self.open:
            return
        presented = bearer(connection)
        if presented is None:
            raise NotAuthorizedException(
                "an API key is required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = self.keys.lookup(presented)
        if key is None:
            raise NotAuthorizedException(
                "the API key is not valid", headers={"WWW-Authenticate": "Bearer"}
            )
        if not key.allows(scope):
            raise PermissionDeniedException(f"this API key lacks the {scope!r} scope")

    async def require_read(
        self, connection: ASGIConnection[Any, Any, Any, Any], stream: str
    ) -> None:
        """Allow a read token for ``stream``, an API key with ``read``, a public-read stream
        (looked up only when no credentials came), or open mode."""
        if self.open:
            return
        token = connection.query_params.get("token") or bearer(connection)
        if token is None and await self.is_public(stream):
            return
        if token and token.startswith(ReadTokens.PREFIX):
            if self.tokens.verify(token, stream):
                return
            raise NotAuthorizedException(
                "the read token is invalid, expired or for another stream",
                headers={"WWW-Authenticate": "Bearer"},
            )
        self.require_scope(connection, "read")


Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def _auth(connection: ASGIConnection[Any, Any, Any, Any]) -> Auth:
    auth: Auth = connection.app.state.auth
    return auth


def require_scope(scope: str) -> Guard:
    """A Litestar guard: an API key with ``scope``.

    ``async`` although it never awaits: Litestar runs a *sync* guard in a worker thread, which
    profiled at ~25% of the CPU of a Durable Streams append (thread hand-off per request)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        _auth(connection).require_scope(connection, scope)

    return guard


def rate_limited() -> Guard:
    """A Litestar guard: count this write against the caller's per-minute limit."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        from service.api.limits import identity_of

        await connection.app.state.limits.check_rate(identity_of(connection))

    return guard


def all_of(*guards: Guard) -> list[Guard]:
    """Several guards as one: Litestar copies the route handler for every guard it calls, per
    request (profiled at ~12% of an append), so a route gets exactly one."""

    async def guard(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        for each in guards:
            await each(connection, handler)

    return [guard]


PUBLIC_ANNOTATION = "public-read"
"""Stream annotation marking a stream anyone may read (set at creation by a writer)."""


def require_read(stream_of: Callable[[ASGIConnection[Any, Any, Any, Any]], str]) -> Any:
    """A Litestar guard: a read token for the request's stream, a key with ``read``, or a
    public-read stream."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        await _auth(connection).require_read(connection, stream_of(connection))

    return guard
