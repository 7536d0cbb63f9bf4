"""``rivulet``: the only entry point. ``serve`` now; ``worker | tail | bench | doctor`` follow."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from service.settings import Settings, SettingsError, describe_settings

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.telemetry import configure_logging, get_logger

    try:
        settings = Settings.from_env()
        overrides: dict[str, Any] = {}
        if args.host is not None:
            overrides["host"] = args.host
        if args.port is not None:
            overrides["port"] = args.port
        if overrides:
            import dataclasses

            settings = dataclasses.replace(settings, **overrides)
            settings.validate()
    except SettingsError as exc:
        print(f"rivulet: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(settings)
    state = app.state.protocol

    class _Server(uvicorn.Server):
        # On SIGTERM, end live reads first so clients resume on another replica while
        # uvicorn waits for in-flight requests; otherwise SSE would hold the pod until killed.
        def handle_exit(self, sig: int, frame: Any) -> None:
            state.draining.set()
            state.log.hub.interrupt_all()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_grace) or None,
        proxy_headers=True,
        server_header=False,
    )
    server = _Server(config)
    get_logger("service.cli").info(
        "serve.start", host=settings.host, port=settings.port, backend=settings.backend
    )
    server.run()
    return 0 if server.started else 1


def _config(_: argparse.Namespace) -> int:
    print("| Variable | Default | Description |\n|---|---|---|")
    for env, default, doc in describe_settings():
        print(f"| `{env}` | `{default}` | {doc} |")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run a subcommand; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="rivulet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP API (Durable Streams at /v1/stream)")
    serve.add_argument("--host", help="bind address (env RIVULET_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env RIVULET_PORT, default 8080)")
    serve.set_defaults(func=_serve)
    cfg = sub.add_parser("config", help="print every setting as a markdown table")
    cfg.set_defaults(func=_config)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
