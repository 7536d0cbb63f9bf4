"""The deployed topology on one Docker network, started with testcontainers.

Redis (AOF on) · two API replicas (``rivulet serve``, no in-process workers) · one worker
(``rivulet worker``) · the fake provider (``rivulet fake-provider``) · nginx as the ingress,
configured with exactly what the chart's ingress annotations make ingress-nginx do. Every
published port is on 127.0.0.1; clients go through nginx.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import yaml
from docker.models.containers import Container
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from tests.deployed.images import LABEL, Images

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".tmp" / "tools" / "bin" / "helm"

API = ("api-a", "api-b")
LEASE_SECONDS = 2.0
# One page read from the log per delivery step: what a slow reader may cost a replica.
READ_PAGE = 64 * 1024

RIVULET_ENV = {
    "REDIS_URL": "redis://redis:6379/0",
    "RIVULET_AUTH": "none",
    "RIVULET_LOG_FORMAT": "json",
    "RIVULET_REPLICA_HEADER": "true",
    "RIVULET_LEASE_SECONDS": str(LEASE_SECONDS),
    "RIVULET_CANCEL_WITHOUT_READER": "0",
    "RIVULET_SHUTDOWN_GRACE": "5",
    "RIVULET_READ_MAX_BYTES": str(READ_PAGE),
    "OPENAI_API_KEY": "sk-test-not-a-real-key",
    "OPENAI_BASE_URL": "http://fake:8081/v1",
    "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key",
    "ANTHROPIC_BASE_URL": "http://fake:8081",
    # One nginx address carries every test client: per-client limits would count them as one.
    "RIVULET_RATE_LIMIT": "0",
    "RIVULET_MAX_SSE_PER_CLIENT": "0",
    "RIVULET_MAX_CONCURRENT_GENERATIONS": "0",
    "RIVULET_MAX_STREAMS_PER_KEY": "0",
    # The conformance suite's needs (see tests/conformance/test_conformance.py).
    "RIVULET_LONG_POLL_TIMEOUT": "2",
    "RIVULET_CORS_ORIGINS": "*",
    "FORWARDED_ALLOW_IPS": "*",
}

# ingress-nginx annotation -> the nginx directive it renders (controller template, v1.x).
_ANNOTATION_DIRECTIVES = {
    "proxy-buffering": "proxy_buffering {}",
    "proxy-request-buffering": "proxy_request_buffering {}",
    "proxy-read-timeout": "proxy_read_timeout {}s",
    "proxy-send-timeout": "proxy_send_timeout {}s",
    "proxy-http-version": "proxy_http_version {}",
    "proxy-body-size": "client_max_body_size {}",
}
# What ingress-nginx does without annotations, where it matters to streaming.
_INGRESS_NGINX_DEFAULTS = [
    "proxy_connect_timeout 5s",
    "proxy_next_upstream error timeout",
    "proxy_next_upstream_tries 3",
    "proxy_set_header Host $host",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
    "proxy_set_header X-Forwarded-Proto $scheme",
    'proxy_set_header Connection ""',
]


def chart_ingress_annotations() -> dict[str, str]:
    """The nginx.ingress.kubernetes.io/* annotations the chart renders on its Ingress."""
    if not HELM.exists():
        raise RuntimeError("helm is not installed: run tests/deploy/tools (tests/run does)")
    out = subprocess.run(
        [
            str(HELM),
            "template",
            "r",
            str(ROOT / "helm" / "rivulet"),
            "--set",
            "ingress.enabled=true",
            "--set",
            "redis.url=redis://redis:6379/0",
            "--show-only",
            "templates/ingress.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    annotations: dict[str, str] = yaml.safe_load(out)["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    return {k.removeprefix(prefix): v for k, v in annotations.items() if k.startswith(prefix)}


def nginx_conf(*, buffering: bool = False) -> str:
    """nginx.conf for the ingress. ``buffering=True`` is the control: proxy buffering on (and
    ``X-Accel-Buffering: no`` ignored, as some proxies do) with gzip for event streams, as when
    ingress-nginx's ``use-gzip`` is on. nginx flushes each upstream read only with buffering
    off; with it on, an output filter such as gzip holds events back (seen: all at the end)."""
    directives = []
    for name, value in chart_ingress_annotations().items():
        if name not in _ANNOTATION_DIRECTIVES:
            raise RuntimeError(f"no nginx mapping for the chart's annotation {name}: add one")
        directives.append(_ANNOTATION_DIRECTIVES[name].format(value))
    if buffering:
        directives = [d for d in directives if not d.startswith("proxy_buffering")]
        directives += [
            "proxy_buffering on",
            "proxy_ignore_headers X-Accel-Buffering",
            "gzip on",
            "gzip_types text/event-stream",
            "gzip_min_length 0",
        ]
    directives += _INGRESS_NGINX_DEFAULTS
    # ingress-nginx balances in Lua without passive failure marking: max_fails=0 likewise.
    servers = "\n".join(f"    server {n}:8080 max_fails=0;" for n in API)
    body = "\n".join(f"      {d};" for d in directives)
    return f"""user nobody;
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  default_type application/octet-stream;
  client_body_temp_path /tmp/body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  upstream rivulet {{
{servers}
    keepalive 32;
  }}
  server {{
    listen 80;
    location / {{
      proxy_pass http://rivulet;
{body}
    }}
  }}
}}
"""


def _labels() -> dict[str, str]:
    return {LABEL: "1"}


@dataclass
class Topology:
    """Running containers by name, and what a test needs to reach and hurt them."""

    images: Images
    client: docker.DockerClient = field(default_factory=docker.from_env)
    network: Network = field(default_factory=Network)
    nodes: dict[str, DockerContainer] = field(default_factory=dict)

    # -- building ---------------------------------------------------------------------------

    def _node(
        self, name: str, image: str, command: list[str], env: dict[str, str], port: int | None
    ) -> DockerContainer:
        node = (
            DockerContainer(image)
            .with_network(self.network)
            .with_network_aliases(name)
            .with_name(f"rivulet-test-{name}-{int(time.time() * 1000) % 10**8}")
            .with_command(command)
            .with_kwargs(hostname=name, labels=_labels())
        )
        for key, value in env.items():
            node.with_env(key, value)
        if port is not None:
            node.ports[f"{port}/tcp"] = ("127.0.0.1", None)  # loopback only
        self.nodes[name] = node
        return node

    def start(self, nginx_config: Path) -> None:
        self.network.create()
        self._node(
            "redis",
            self.images.redis,
            [
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                # Only this test network reaches it (its published port is on 127.0.0.1).
                "--protected-mode",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                "/data",
            ],
            {},
            6379,
        ).start()
        self._node(
            "fake",
            self.images.rivulet,
            ["fake-provider", "--host", "0.0.0.0", "--port", "8081"],
            {"RIVULET_LOG_FORMAT": "json"},
            8081,
        ).start()
        for name in API:
            self._node(
                name, self.images.rivulet, ["serve"], RIVULET_ENV | {"RIVULET_WORKERS": "0"}, 8080
            ).start()
        self.add_worker("worker")
        ingress = self._node(
            "ingress",
            self.images.nginx,
            ["/usr/sbin/nginx", "-e", "stderr", "-c", "/etc/nginx/nginx.conf", "-g", "daemon off;"],
            {},
            80,
        )
        ingress.with_volume_mapping(str(nginx_config), "/etc/nginx/nginx.conf", "ro")
        ingress.start()
        for name in self.nodes:
            self.wait_ready(name)

    def add_worker(self, name: str) -> None:
        self._node(
            name, self.images.rivulet, ["worker"], RIVULET_ENV | {"RIVULET_WORKERS": "8"}, 8080
        ).start()

    def add_ingress(self, name: str, config: Path) -> str:
        node = self._node(
            name,
            self.images.nginx,
            ["/usr/sbin/nginx", "-e", "stderr", "-c", "/etc/nginx/nginx.conf", "-g", "daemon off;"],
            {},
            80,
        )
        node.with_volume_mapping(str(config), "/etc/nginx/nginx.conf", "ro")
        node.start()
        self.wait_ready(name)
        return self.url(name)

    def stop(self) -> None:
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.stop()
        with contextlib.suppress(Exception):
            self.network.remove()

    # -- reaching ---------------------------------------------------------------------------

    def container(self, name: str) -> Container:
        container: Container = self.nodes[name].get_wrapped_container()
        container.reload()
        return container

    def url(self, name: str) -> str:
        ports: dict[str, Any] = self.container(name).attrs["NetworkSettings"]["Ports"]
        (binding,) = [b for b in ports.values() if b]
        return f"http://127.0.0.1:{binding[0]['HostPort']}"

    @property
    def ingress(self) -> str:
        return self.url("ingress")

    def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        path = {"redis": None, "fake": "/_fake/requests", "ingress": "/livez"}.get(name, "/readyz")
        if name.startswith("ingress"):
            path = "/livez"
        deadline = time.monotonic() + timeout
        while True:
            container = self.container(name)
            if container.status == "running":
                try:
                    if path is None:
                        if container.exec_run(["redis-cli", "ping"]).output.strip() == b"PONG":
                            return
                    elif httpx.get(self.url(name) + path, timeout=2).status_code == 200:
                        return
                except (httpx.HTTPError, docker.errors.APIError, ValueError):
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready:\n{self.logs(name)[-3000:]}")
            time.sleep(0.2)

    def logs(self, name: str) -> str:
        return self.container(name).logs().decode(errors="replace")

    # -- hurting ----------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """SIGKILL: no drain, no goodbye."""
        self.container(name).kill(signal="SIGKILL")

    def terminate(self, name: str, timeout: int = 30) -> None:
        """SIGTERM, then wait for the process to exit (``docker stop``)."""
        self.container(name).stop(timeout=timeout)

    def revive(self, name: str) -> None:
        self.container(name).start()
        self.wait_ready(name)

    def heal(self) -> None:
        """Every node running and ready again (a scenario may have left one down)."""
        for name in list(self.nodes):
            if self.container(name).status != "running":
                self.revive(name)
            else:
                self.wait_ready(name)

    def memory_bytes(self, name: str) -> int:
        stats = self.container(name).stats(stream=False)
        usage: int = stats["memory_stats"]["usage"]
        cache = stats["memory_stats"].get("stats", {}).get("cache", 0)
        return usage - cache
