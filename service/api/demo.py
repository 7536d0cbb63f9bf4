"""The demo page at ``/``: plain HTML + EventSource, no build step."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from litestar import get
from litestar.response.base import ASGIResponse

__all__ = ["demo_handlers"]


@cache
def _page() -> bytes:
    return resources.files("service.api").joinpath("static/index.html").read_bytes()


@get("/", name="demo", include_in_schema=False)
async def demo_page() -> ASGIResponse:
    """Send a prompt, watch tokens arrive, survive a dropped connection."""
    return ASGIResponse(
        body=_page(),
        headers={"content-type": "text/html; charset=utf-8", "cache-control": "no-cache"},
    )


def demo_handlers() -> list[Any]:
    """The demo route."""
    return [demo_page]
