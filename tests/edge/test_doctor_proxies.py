"""``rivulet doctor`` against Rivulet behind real proxies, each misconfigured one way.

One ``rivulet serve`` (memory backend, heartbeat every 2 s) sits behind nginx, HAProxy and
Caddy from the machine's packages, each started here on loopback with a config file written
here: good configs, and configs with one fault each that real deployments ship with. The
doctor (the real CLI, ``--json``) must pass the good ones and, for each fault, FAIL the right
check and name the fix. All doctors run at once; the set takes about 15 s.

No timing assertions here: the doctor's own bounds decide PASS/FAIL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import _stop, free_port
from tests.rivulet_process import rivulet_serve

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HEARTBEAT = 2  # seconds; the short proxy timeouts below are shorter than this


def _binary(name: str) -> str:
    """The proxy's executable (``/usr/sbin`` is not on a normal user's PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.fail(
            f"{name} is not installed: tests/run installs it (apt-get install nginx haproxy caddy)",
            pytrace=False,
        )
    return found


def _nginx(workdir: Path, port: int, upstream: int, location: str) -> list[str]:
    conf = workdir / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/body;
  proxy_temp_path {workdir}/proxy;
  fastcgi_temp_path {workdir}/fastcgi;
  uwsgi_temp_path {workdir}/uwsgi;
  scgi_temp_path {workdir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      {location}
    }}
  }}
}}
""")
    return [_binary("nginx"), "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"]


def _haproxy(workdir: Path, port: int, upstream: int, server_timeout: str) -> list[str]:
    conf = workdir / "haproxy.cfg"
    conf.write_text(f"""
global
  maxconn 256
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server {server_timeout}
frontend edge
  bind 127.0.0.1:{port}
  default_backend rivulet
backend rivulet
  server api 127.0.0.1:{upstream}
""")
    return [_binary("haproxy"), "-db", "-f", str(conf)]


def _caddy(workdir: Path, port: int, upstream: int, options: str) -> list[str]:
    conf = workdir / "Caddyfile"
    conf.write_text(f"""{{
  admin off
  auto_https off
}}
http://:{port} {{
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:{upstream} {{
    {options}
  }}
}}
""")
    return [_binary("caddy"), "run", "--adapter", "caddyfile", "--config", str(conf)]


@dataclass(frozen=True)
class Edge:
    name: str
    start: Callable[[Path, int, int], list[str]]
    fails: frozenset[str]
    """The checks that must FAIL (empty: a good config, everything must PASS)."""
    fix_names: str = ""
    """Text the fix of the first failing check must contain (the directive to change)."""


GOOD_NGINX = "proxy_buffering off; proxy_read_timeout 1h; proxy_send_timeout 1h;"
EDGES = [
    Edge("nginx", lambda w, p, u: _nginx(w, p, u, GOOD_NGINX), frozenset()),
    # proxy_buffering on alone does not hold SSE back: nginx 1.22 still writes each upstream
    # read to a client that keeps up (measured here: delays within a few ms). The doctor
    # must not cry wolf about it.
    Edge(
        "nginx-buffering-on-only",
        # Rivulet sends X-Accel-Buffering: no, which nginx obeys unless told to ignore it.
        lambda w, p, u: _nginx(
            w, p, u, "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;"
        ),
        frozenset(),
    ),
    # With an output filter behind it (ingress-nginx's use-gzip), buffering holds events back.
    Edge(
        "nginx-buffering-gzip",
        lambda w, p, u: _nginx(
            w,
            p,
            u,
            "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering; gzip on; "
            "gzip_min_length 1; gzip_types text/event-stream;",
        ),
        frozenset({"compression", "buffering", "heartbeats"}),
        "proxy_buffering off",
    ),
    Edge(
        "nginx-read-timeout",
        lambda w, p, u: _nginx(w, p, u, "proxy_buffering off; proxy_read_timeout 1s;"),
        frozenset({"idle timeout"}),
        "proxy_read_timeout",
    ),
    Edge(
        "nginx-gzip",
        lambda w, p, u: _nginx(
            w,
            p,
            u,
            "proxy_buffering off; gzip on; gzip_min_length 1; gzip_types text/event-stream;",
        ),
        # With buffering off, nginx's gzip flushes each upstream read: compressed but timely.
        frozenset({"compression"}),
        "gzip_types",
    ),
    Edge("haproxy", lambda w, p, u: _haproxy(w, p, u, "1h"), frozenset()),
    Edge(
        "haproxy-server-timeout",
        lambda w, p, u: _haproxy(w, p, u, "1s"),
        frozenset({"idle timeout"}),
        "timeout server",
    ),
    Edge("caddy", lambda w, p, u: _caddy(w, p, u, ""), frozenset()),
    Edge(
        "caddy-buffering",
        lambda w, p, u: _caddy(w, p, u, "buffer_responses"),
        frozenset({"buffering", "heartbeats"}),
        "buffer_responses",
    ),
]


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    out = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    pytest.fail(f"{what} did not come up on {url}:\n{out}")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One ``rivulet serve`` on the memory backend, heartbeat every 2 s; yields its port."""
    env = {
        "RIVULET_SSE_HEARTBEAT": str(HEARTBEAT),
        "RIVULET_LOG_LEVEL": "warning",
        "RIVULET_RATE_LIMIT": "0",
        "RIVULET_MAX_SSE_PER_CLIENT": "0",
    }
    with rivulet_serve(tmp_path_factory.mktemp("rivulet"), env, name="edge") as server:
        yield int(server.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def reports(upstream: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every edge started, every doctor run at once; name -> (exit code, JSON report)."""
    proxies: list[subprocess.Popen[bytes]] = []
    doctors: dict[str, subprocess.Popen[bytes]] = {}
    try:
        urls = {}
        for edge in EDGES:
            workdir = tmp_path_factory.mktemp(edge.name)
            port = free_port()
            env = os.environ | {"XDG_DATA_HOME": str(workdir), "XDG_CONFIG_HOME": str(workdir)}
            log = workdir / "proxy.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    edge.start(workdir, port, upstream), stdout=out, stderr=out, env=env
                )
            proxies.append(proc)
            urls[edge.name] = f"http://127.0.0.1:{port}"
            _wait_http(f"{urls[edge.name]}/livez", proc, edge.name, log)
        for edge in EDGES:
            doctors[edge.name] = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "doctor", "--json", urls[edge.name]],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        out: dict[str, Any] = {}
        for name, doctor in doctors.items():
            stdout, stderr = doctor.communicate(timeout=120)
            assert stdout, f"{name}: the doctor printed nothing: {stderr.decode()[-2000:]}"
            out[name] = (doctor.returncode, json.loads(stdout))
        yield out
    finally:
        for proc in [*doctors.values(), *proxies]:
            _stop(proc)


def _statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


@pytest.mark.parametrize("edge", EDGES, ids=[e.name for e in EDGES])
def test_the_doctor_finds_what_is_wrong_with_each_edge(edge: Edge, reports: dict[str, Any]) -> None:
    code, report = reports[edge.name]
    statuses = _statuses(report)
    shown = json.dumps(report["checks"], indent=1)
    assert set(statuses) == {
        "headers",
        "compression",
        "buffering",
        "heartbeats",
        "idle timeout",
        "resume",
        "cross-replica",
    }, shown
    failed = {name for name, status in statuses.items() if status == "FAIL"}
    assert failed == edge.fails, shown
    if not edge.fails:
        assert code == 0, shown
        # One server behind the edge and no replica header: that check can't run here.
        assert statuses.pop("cross-replica") == "SKIP", shown
        assert set(statuses.values()) == {"PASS"}, shown
        return
    assert code == 1, shown
    fixes = " ".join(c["fix"] for c in report["checks"] if c["status"] == "FAIL")
    assert edge.fix_names in fixes, shown
    # A fault at the edge never costs a token: every reconnect resumed exactly.
    assert statuses["resume"] == "PASS", shown
