"""``rivulet``, the only entry point: ``serve``, ``worker``, ``fake-provider``, ``bench``,
``config``."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from service.settings import Settings, SettingsError, describe_settings

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
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
    try:
        app = create_app(settings)
    except ValueError as exc:  # e.g. an unreadable or malformed API key file
        print(f"rivulet: configuration error: {exc}", file=sys.stderr)
        return 2
    drain = app.state.drain
    import signal

    # SIGHUP re-reads the API key file: rotation without a restart.
    signal.signal(signal.SIGHUP, lambda *_: app.state.auth.keys.reload())

    get_logger("service.cli").info(
        "serve.start", host=settings.host, port=settings.port, backend=settings.backend
    )
    # On SIGTERM, end live reads first so clients resume on another replica while uvicorn
    # waits for in-flight requests; otherwise SSE would hold the pod until killed.
    return _run_uvicorn(app, settings, on_sigterm=drain, proxy_headers=True)


def _run_uvicorn(
    app: Any, settings: Settings, *, on_sigterm: Callable[[], None], proxy_headers: bool = False
) -> int:
    """Serve ``app`` on the configured address; ``on_sigterm()`` runs before uvicorn's own
    shutdown starts. Exit code 0 if the server started (and later stopped), else 1."""
    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            on_sigterm()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        # Whole seconds, never None: None would wait for open connections forever.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
        proxy_headers=proxy_headers,
        server_header=False,
    )
    server = _Server(config)
    server.run()
    return 0 if server.started else 1


def _worker(_: argparse.Namespace) -> int:
    from service.telemetry import configure_logging, get_logger
    from service.worker_app import create_worker_app

    try:
        settings = Settings.from_env(serves_api=False)
    except SettingsError as exc:
        print(f"rivulet: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    if settings.redis_url is None:
        print(
            "rivulet: `rivulet worker` needs REDIS_URL (the memory backend lives inside one "
            "`rivulet serve` process, which runs its own worker)",
            file=sys.stderr,
        )
        return 2
    # Probes and metrics on RIVULET_HOST:RIVULET_PORT; the generations run in the lifespan, so
    # SIGTERM stops claiming, gives running ones the shutdown grace, then hands them back.
    app = create_worker_app(settings)
    get_logger("service.cli").info("worker.start", host=settings.host, port=settings.port)
    # On SIGTERM claim nothing new at once, not only after uvicorn's connection drain.
    return _run_uvicorn(app, settings, on_sigterm=app.state.worker.stop_claiming)


def _fake_provider(args: argparse.Namespace) -> int:
    from service.generation.fake_server import serve_fake
    from service.telemetry import configure_logging, get_logger

    configure_logging()
    base = f"http://{args.host}:{args.port}"
    get_logger("service.cli").info(
        "fake_provider.start", openai_base_url=f"{base}/v1", anthropic_base_url=base
    )
    return 0 if serve_fake(args.host, args.port) else 1


def _config(_: argparse.Namespace) -> int:
    print("| Variable | Default | Description |\n|---|---|---|")
    for env, default, doc in describe_settings():
        print(f"| `{env}` | `{default}` | {doc} |")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from service.bench.run import main as bench_main

    return bench_main(args)


def _doctor(args: argparse.Namespace) -> int:
    from service.doctor import main as doctor_main

    return doctor_main(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run a subcommand; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="rivulet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP API (Durable Streams at /v1/stream)")
    serve.add_argument("--host", help="bind address (env RIVULET_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env RIVULET_PORT, default 8080)")
    serve.set_defaults(func=_serve)
    work = sub.add_parser(
        "worker", help="run generation jobs only, with /livez /readyz /metrics (needs REDIS_URL)"
    )
    work.set_defaults(func=_worker)
    fake = sub.add_parser(
        "fake-provider",
        help="serve a fake OpenAI/Anthropic streaming API (scripted answers; tests, benchmarks)",
    )
    fake.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    fake.add_argument("--port", type=int, default=8081, help="port (default 8081)")
    fake.set_defaults(func=_fake_provider)
    bench = sub.add_parser(
        "bench", help="load-test a deployment: steady, fanout, slow, resume-storm, idle"
    )
    from service.bench.run import add_arguments as bench_arguments
    from service.doctor import __doc__ as doctor_doc
    from service.doctor import add_arguments as doctor_arguments

    bench_arguments(bench)
    bench.set_defaults(func=_bench)
    doctor = sub.add_parser(
        "doctor",
        help="check an edge from the outside: buffering, compression, heartbeats, idle "
        "timeouts, resume, headers (exit 1 on any FAIL)",
        description=doctor_doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor_arguments(doctor)
    doctor.set_defaults(func=_doctor)
    cfg = sub.add_parser("config", help="print every setting as a markdown table")
    cfg.set_defaults(func=_config)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
