"""Every setting Rivulet reads, in one place, read from the environment once.

This is the only module that touches ``os.environ``. Each field documents itself; the README's
configuration table is generated from the same docstrings by ``rivulet config``.
Bad values raise :class:`SettingsError` with the variable name, so ``rivulet serve`` fails at
start with a clear message instead of half-working.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

__all__ = ["Settings", "SettingsError", "describe_settings"]

LogFormat = Literal["auto", "json", "console"]


class SettingsError(ValueError):
    """A setting in the environment is missing, malformed or out of range."""


def _doc(env: str, text: str) -> dict[str, str]:
    return {"env": env, "doc": text}


@dataclass(frozen=True, slots=True)
class Settings:
    """Process configuration. Build with :meth:`from_env`; tests construct it directly."""

    host: str = field(default="127.0.0.1", metadata=_doc("RIVULET_HOST", "Address to bind."))
    port: int = field(default=8080, metadata=_doc("RIVULET_PORT", "TCP port to bind."))
    redis_url: str | None = field(
        default=None,
        metadata=_doc(
            "REDIS_URL",
            "Redis URL (`redis://`, `rediss://`, `unix://`). Unset: the in-memory log "
            "(single process, lost on restart).",
        ),
    )
    redis_max_connections: int = field(
        default=32,
        metadata=_doc(
            "RIVULET_REDIS_MAX_CONNECTIONS",
            "Command connections per process; callers wait for a free one instead of failing.",
        ),
    )
    redis_key_prefix: str = field(
        default="rivulet",
        metadata=_doc("RIVULET_REDIS_KEY_PREFIX", "Prefix of every Redis key and channel."),
    )
    log_format: LogFormat = field(
        default="auto",
        metadata=_doc(
            "RIVULET_LOG_FORMAT",
            "`json`, `console`, or `auto` (console on a terminal, JSON otherwise).",
        ),
    )
    log_level: str = field(
        default="info",
        metadata=_doc("RIVULET_LOG_LEVEL", "`debug`, `info`, `warning` or `error`."),
    )
    max_body_bytes: int = field(
        default=16 * 1024 * 1024,
        metadata=_doc("RIVULET_MAX_BODY_BYTES", "Largest accepted request body; larger gets 413."),
    )
    read_max_bytes: int = field(
        default=1024 * 1024,
        metadata=_doc(
            "RIVULET_READ_MAX_BYTES",
            "Soft cap on one catch-up response or SSE data event; the rest is paginated.",
        ),
    )
    retention_max_entries: int = field(
        default=0,
        metadata=_doc(
            "RIVULET_RETENTION_MAX_ENTRIES",
            "Keep at most this many newest entries per stream (0: keep all until the stream "
            "expires or is deleted). Reads from a trimmed offset get 410 Gone; streams that "
            "forks read from are not trimmed.",
        ),
    )
    long_poll_timeout: float = field(
        default=10.0,
        metadata=_doc(
            "RIVULET_LONG_POLL_TIMEOUT",
            "Seconds a `live=long-poll` read waits for data before answering 204.",
        ),
    )
    sse_max_duration: float = field(
        default=60.0,
        metadata=_doc(
            "RIVULET_SSE_MAX_DURATION",
            "Seconds after which a `live=sse` connection is closed so the client resumes "
            "(lets CDNs collapse readers; the protocol suggests ~60).",
        ),
    )
    sse_heartbeat: float = field(
        default=15.0,
        metadata=_doc(
            "RIVULET_SSE_HEARTBEAT",
            "Seconds between SSE comment heartbeats on an idle connection (keeps proxies "
            "from timing it out).",
        ),
    )
    cors_origins: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "RIVULET_CORS_ORIGINS",
            "Comma-separated origins allowed by CORS (`*` for any; credentials are never "
            "allowed). Empty: no cross-origin access.",
        ),
    )
    api_keys: str = field(
        default="",
        metadata=_doc(
            "RIVULET_API_KEYS",
            "API keys, comma-separated: `key` (all scopes) or `key:scope+scope` (scopes: "
            "`generate`, `streams:write`, `read`, `admin`). Keys: 16-256 of `A-Za-z0-9._~-`.",
        ),
    )
    api_keys_file: str | None = field(
        default=None,
        metadata=_doc(
            "RIVULET_API_KEYS_FILE",
            "File with API keys (one entry per line, `#` comments), e.g. a mounted Secret; "
            "re-read when it changes and on SIGHUP.",
        ),
    )
    auth: str = field(
        default="",
        metadata=_doc(
            "RIVULET_AUTH",
            "`none` runs without authentication on any address. Unset: keys are required "
            "unless bound to loopback.",
        ),
    )
    read_token_secret: str = field(
        default="",
        metadata=_doc(
            "RIVULET_READ_TOKEN_SECRET",
            "HMAC secret (32+ characters) for read tokens; the same on every replica. Unset: "
            "a random per-process secret (tokens then work only on the issuing replica).",
        ),
    )
    read_token_ttl: float = field(
        default=3600.0,
        metadata=_doc("RIVULET_READ_TOKEN_TTL", "Seconds a read token stays valid."),
    )
    default_provider: str = field(
        default="",
        metadata=_doc(
            "RIVULET_DEFAULT_PROVIDER",
            "Provider for generations that name none: `fake`, `openai` or `anthropic`. Empty: "
            "`openai` if OPENAI_API_KEY is set, else `anthropic` if ANTHROPIC_API_KEY is, "
            "else `fake`.",
        ),
    )
    openai_api_key: str | None = field(
        default=None,
        metadata=_doc(
            "OPENAI_API_KEY",
            "Enables the `openai` provider.",
        ),
    )
    openai_base_url: str | None = field(
        default=None,
        metadata=_doc(
            "OPENAI_BASE_URL",
            "OpenAI-compatible endpoint (Azure OpenAI, vLLM, the fake provider, ...).",
        ),
    )
    anthropic_api_key: str | None = field(
        default=None,
        metadata=_doc("ANTHROPIC_API_KEY", "Enables the `anthropic` provider."),
    )
    anthropic_base_url: str | None = field(
        default=None,
        metadata=_doc("ANTHROPIC_BASE_URL", "Anthropic API endpoint override."),
    )
    workers: int = field(
        default=4,
        metadata=_doc(
            "RIVULET_WORKERS",
            "Generations this process runs at once (in-process worker). 0: none; run "
            "`rivulet worker` processes instead.",
        ),
    )
    lease_seconds: float = field(
        default=15.0,
        metadata=_doc(
            "RIVULET_LEASE_SECONDS",
            "A generation whose worker stops heartbeating for this long is taken over by "
            "another worker.",
        ),
    )
    provider_retries: int = field(
        default=2,
        metadata=_doc(
            "RIVULET_PROVIDER_RETRIES",
            "Retries of a provider call that fails before its first token (after it, the "
            "stream ends with an `error` event).",
        ),
    )
    provider_backoff: float = field(
        default=0.5,
        metadata=_doc(
            "RIVULET_PROVIDER_BACKOFF",
            "Seconds before the first retry; doubles each time, with jitter.",
        ),
    )
    generation_ttl: int = field(
        default=86400,
        metadata=_doc(
            "RIVULET_GENERATION_TTL",
            "Seconds a generation's stream is kept after its last read or write.",
        ),
    )
    cancel_without_reader: float = field(
        default=30.0,
        metadata=_doc(
            "RIVULET_CANCEL_WITHOUT_READER",
            "Cancel a generation nobody has been reading (via its events URL) for this many "
            "seconds; 0 disables. Readers on any replica count.",
        ),
    )
    sse_retry_ms: int = field(
        default=1000,
        metadata=_doc(
            "RIVULET_SSE_RETRY_MS",
            "`retry:` sent to EventSource clients: how soon they reconnect after a drop.",
        ),
    )
    otel_sdk_disabled: str = field(
        default="",
        metadata=_doc(
            "OTEL_SDK_DISABLED", "`true` turns all OpenTelemetry off (metrics stay local)."
        ),
    )
    otel_traces_exporter: str = field(
        default="",
        metadata=_doc(
            "OTEL_TRACES_EXPORTER",
            "`otlp` or `console` turns tracing on; `none` (or unset, without an endpoint) "
            "keeps it off.",
        ),
    )
    otel_exporter_otlp_endpoint: str = field(
        default="",
        metadata=_doc(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTLP/HTTP collector base URL (e.g. `http://otel-collector:4318`); turns tracing "
            "on. The exporter reads the other standard `OTEL_EXPORTER_OTLP_*` variables itself.",
        ),
    )
    otel_exporter_otlp_traces_endpoint: str = field(
        default="",
        metadata=_doc("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "Traces-only OTLP endpoint."),
    )
    otel_metrics_exporter: str = field(
        default="",
        metadata=_doc(
            "OTEL_METRICS_EXPORTER",
            "`otlp` also pushes metrics over OTLP (they are always served at `/metrics`).",
        ),
    )
    trace_content: bool = field(
        default=False,
        metadata=_doc(
            "RIVULET_TRACE_CONTENT",
            "`true` records prompts and completions on provider spans. Off by default: they "
            "may hold personal data.",
        ),
    )
    replica_header: bool = field(
        default=False,
        metadata=_doc(
            "RIVULET_REPLICA_HEADER",
            "`true` adds `Rivulet-Replica: <hostname>` to every response, so a client (or "
            "`rivulet doctor`) can see which replica served it, e.g. whether a resume crossed "
            "replicas. Off by default: it names internal hosts.",
        ),
    )
    rate_limit: int = field(
        default=1200,
        metadata=_doc(
            "RIVULET_RATE_LIMIT",
            "Write requests per minute per API key (per client address without keys), across "
            "all replicas; 0 disables. Past it: 429 with Retry-After.",
        ),
    )
    max_concurrent_generations: int = field(
        default=32,
        metadata=_doc(
            "RIVULET_MAX_CONCURRENT_GENERATIONS",
            "Generations one API key (or client address) may have running at once; 0 disables.",
        ),
    )
    max_sse_per_client: int = field(
        default=1000,
        metadata=_doc(
            "RIVULET_MAX_SSE_PER_CLIENT",
            "Open streaming connections (SSE) per API key or client address, across replicas; "
            "0 disables. Behind a proxy, set FORWARDED_ALLOW_IPS so client addresses are real.",
        ),
    )
    max_streams_per_key: int = field(
        default=10000,
        metadata=_doc(
            "RIVULET_MAX_STREAMS_PER_KEY",
            "Durable Streams one API key (or client address) may hold at once: a slot per "
            "created stream, freed by DELETE or when its TTL (else 24 h) runs out; 0 disables.",
        ),
    )
    max_messages: int = field(
        default=256,
        metadata=_doc("RIVULET_MAX_MESSAGES", "Most messages one generation request may carry."),
    )
    max_prompt_chars: int = field(
        default=200_000,
        metadata=_doc("RIVULET_MAX_PROMPT_CHARS", "Most characters across a request's messages."),
    )
    max_output_tokens: int = field(
        default=32768,
        metadata=_doc(
            "RIVULET_MAX_OUTPUT_TOKENS",
            "Largest `params.max_tokens` a request may ask for.",
        ),
    )
    models: str = field(
        default="",
        metadata=_doc(
            "RIVULET_MODELS",
            "Model allowlist per provider, e.g. `openai=gpt-4o,gpt-4o-mini;anthropic=claude-"
            "sonnet-4`. A provider not listed allows any model.",
        ),
    )
    shutdown_grace: float = field(
        default=10.0,
        metadata=_doc(
            "RIVULET_SHUTDOWN_GRACE",
            "Seconds in-flight requests get to finish after SIGTERM; live reads end at once "
            "and clients resume on another replica.",
        ),
    )

    @property
    def provider_for_default(self) -> str:
        """The provider a request that names none gets."""
        if self.default_provider:
            return self.default_provider
        if self.openai_api_key:
            return "openai"
        if self.anthropic_api_key:
            return "anthropic"
        return "fake"

    def model_allowlist(self) -> dict[str, frozenset[str]]:
        """``RIVULET_MODELS`` parsed: provider → allowed models."""
        out: dict[str, frozenset[str]] = {}
        for part in self.models.split(";"):
            if not part.strip():
                continue
            provider, eq, names = part.partition("=")
            models = frozenset(n.strip() for n in names.split(",") if n.strip())
            if not eq or not provider.strip() or not models:
                raise SettingsError(
                    "RIVULET_MODELS must look like provider=model,model;provider=model"
                )
            out[provider.strip()] = models
        return out

    @property
    def presence_ttl(self) -> float:
        """How long one reader's presence mark lasts; readers renew it every third of that.

        At least two heartbeats, so an idle but connected reader never looks absent.
        """
        return max(self.cancel_without_reader, 2 * self.sse_heartbeat)

    @property
    def auth_open(self) -> bool:
        """Whether requests are served without credentials (no keys configured)."""
        return not (self.api_keys or self.api_keys_file)

    @property
    def tracing_exporter(self) -> Literal["otlp", "console"] | None:
        """Which span exporter the ``OTEL_*`` variables ask for (``None``: tracing off)."""
        if self.otel_sdk_disabled.lower() == "true":
            return None
        exporter = self.otel_traces_exporter.lower()
        if exporter == "none":
            return None
        if exporter == "console":
            return "console"
        if exporter == "otlp" or self.otel_exporter_otlp_endpoint:
            return "otlp"
        if self.otel_exporter_otlp_traces_endpoint:
            return "otlp"
        return None

    @property
    def metrics_otlp(self) -> bool:
        """Whether metrics are also pushed over OTLP."""
        if self.otel_sdk_disabled.lower() == "true":
            return False
        return self.otel_metrics_exporter.lower() == "otlp"

    @property
    def backend(self) -> Literal["memory", "redis"]:
        """Which chunk log backend these settings select."""
        return "redis" if self.redis_url else "memory"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, serves_api: bool = True
    ) -> Settings:
        """Read and validate every setting; raise :class:`SettingsError` naming the variable.

        ``serves_api=False`` is the worker process: it serves only probes and metrics, so it
        needs no API keys whatever address it binds."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _parse(name, f.type, raw.strip())
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate(serves_api=serves_api)
        return settings

    def validate(self, *, serves_api: bool = True) -> None:
        """Check ranges and cross-field rules."""
        if not 0 < self.port < 65536:
            raise SettingsError(f"RIVULET_PORT must be 1..65535, got {self.port}")
        if self.redis_url is not None:
            scheme = urlsplit(self.redis_url).scheme
            if scheme not in {"redis", "rediss", "unix"}:
                raise SettingsError(
                    f"REDIS_URL must start with redis://, rediss:// or unix://, got {scheme!r}"
                )
        if self.log_format not in ("auto", "json", "console"):
            raise SettingsError("RIVULET_LOG_FORMAT must be auto, json or console")
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise SettingsError("RIVULET_LOG_LEVEL must be debug, info, warning or error")
        positive = {
            "RIVULET_REDIS_MAX_CONNECTIONS": self.redis_max_connections,
            "RIVULET_MAX_BODY_BYTES": self.max_body_bytes,
            "RIVULET_READ_MAX_BYTES": self.read_max_bytes,
            "RIVULET_LONG_POLL_TIMEOUT": self.long_poll_timeout,
            "RIVULET_SSE_MAX_DURATION": self.sse_max_duration,
            "RIVULET_SSE_HEARTBEAT": self.sse_heartbeat,
        }
        for name, value in positive.items():
            if value <= 0:
                raise SettingsError(f"{name} must be positive, got {value}")
        if self.retention_max_entries < 0:
            raise SettingsError("RIVULET_RETENTION_MAX_ENTRIES must be >= 0")
        for name, value in {
            "RIVULET_RATE_LIMIT": self.rate_limit,
            "RIVULET_MAX_CONCURRENT_GENERATIONS": self.max_concurrent_generations,
            "RIVULET_MAX_SSE_PER_CLIENT": self.max_sse_per_client,
            "RIVULET_MAX_STREAMS_PER_KEY": self.max_streams_per_key,
        }.items():
            if value < 0:
                raise SettingsError(f"{name} must be >= 0, got {value}")
        for name, value in {
            "RIVULET_MAX_MESSAGES": self.max_messages,
            "RIVULET_MAX_PROMPT_CHARS": self.max_prompt_chars,
            "RIVULET_MAX_OUTPUT_TOKENS": self.max_output_tokens,
        }.items():
            if value <= 0:
                raise SettingsError(f"{name} must be positive, got {value}")
        self.model_allowlist()  # raises on a malformed RIVULET_MODELS
        if self.auth not in ("", "none"):
            raise SettingsError("RIVULET_AUTH must be none or unset")
        if (
            serves_api
            and not (self.api_keys or self.api_keys_file)
            and self.auth != "none"
            and not (is_loopback(self.host))
        ):
            raise SettingsError(
                f"refusing to serve {self.host} without API keys: set RIVULET_API_KEYS or "
                "RIVULET_API_KEYS_FILE, or RIVULET_AUTH=none to run open on purpose"
            )
        if self.read_token_secret and len(self.read_token_secret) < 32:
            raise SettingsError("RIVULET_READ_TOKEN_SECRET must be at least 32 characters")
        if self.read_token_ttl <= 0:
            raise SettingsError("RIVULET_READ_TOKEN_TTL must be positive")
        if self.otel_traces_exporter.lower() not in ("", "otlp", "console", "none"):
            raise SettingsError("OTEL_TRACES_EXPORTER must be otlp, console or none")
        if self.default_provider not in ("", "fake", "openai", "anthropic"):
            raise SettingsError("RIVULET_DEFAULT_PROVIDER must be fake, openai or anthropic")
        if self.default_provider == "openai" and not self.openai_api_key:
            raise SettingsError("RIVULET_DEFAULT_PROVIDER=openai needs OPENAI_API_KEY")
        if self.default_provider == "anthropic" and not self.anthropic_api_key:
            raise SettingsError("RIVULET_DEFAULT_PROVIDER=anthropic needs ANTHROPIC_API_KEY")
        for name, value in {
            "RIVULET_WORKERS": self.workers,
            "RIVULET_PROVIDER_RETRIES": self.provider_retries,
            "RIVULET_CANCEL_WITHOUT_READER": self.cancel_without_reader,
        }.items():
            if value < 0:
                raise SettingsError(f"{name} must be >= 0, got {value}")
        for name, value in {
            "RIVULET_LEASE_SECONDS": self.lease_seconds,
            "RIVULET_PROVIDER_BACKOFF": self.provider_backoff,
            "RIVULET_GENERATION_TTL": self.generation_ttl,
            "RIVULET_SSE_RETRY_MS": self.sse_retry_ms,
        }.items():
            if value <= 0:
                raise SettingsError(f"{name} must be positive, got {value}")
        if self.shutdown_grace < 0:
            raise SettingsError("RIVULET_SHUTDOWN_GRACE must be >= 0")
        if not self.redis_key_prefix or any(c in self.redis_key_prefix for c in "{} "):
            raise SettingsError(
                "RIVULET_REDIS_KEY_PREFIX must be non-empty, without {, } or spaces"
            )


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` exposes the service to this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse(name: str, type_: object, raw: str) -> object:
    kind = str(type_)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind == "LogFormat":
        return raw.lower()
    if kind == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    return raw


def describe_settings() -> list[tuple[str, str, str]]:
    """``(env var, default, description)`` for every setting, for docs and ``rivulet config``."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        rows.append((f.metadata["env"], "" if shown is None else str(shown), f.metadata["doc"]))
    return rows
