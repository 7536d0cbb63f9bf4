"""structlog setup: JSON lines in production, a readable console renderer on a terminal.

Events are named ``area.event`` with flat key-values (``log.append``, ``http.request``), so a
log query never has to parse a sentence.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from opentelemetry import trace

__all__ = ["add_trace_ids", "configure_logging", "get_logger"]


def add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Put the active span's ``trace_id``/``span_id`` on the line, to jump from log to trace."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", f"{ctx.trace_id:032x}")
        event.setdefault("span_id", f"{ctx.span_id:016x}")
    return event


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Route structlog and stdlib logging (uvicorn's included) through one renderer."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            # First: an event below the level is dropped before any work is done for it
            # (profiled: a filtered-out info line still cost ~5% of an append).
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([] if use_console else [structlog.processors.format_exc_info]),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; make it use ours so every line has one shape.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        log = logging.getLogger(name)
        log.handlers.clear()
        log.propagate = True
    # Access lines duplicate our own request log and would carry query strings verbatim.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # HTTP client libraries log every request URL at INFO; URLs may carry tokens.
    for name in ("httpx", "httpx2", "httpcore", "openai", "anthropic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; ``name`` becomes the ``logger`` key."""
    return structlog.get_logger(name)
