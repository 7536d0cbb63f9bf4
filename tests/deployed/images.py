"""The images the deployed-topology suite runs: Redis, nginx, and Rivulet built from its Dockerfile.

On a machine with a registry the public images are pulled (``redis``, ``nginx``, and the
Dockerfile's ``python:3.11-slim-bookworm`` base). Without one, stand-ins are made locally and
tagged with the same names, so the project's Dockerfile builds unchanged:

- Redis and nginx: the host's Debian binaries plus the shared libraries ``ldd`` lists, imported
  as a tarball (``docker import``; ~18 MB, well under a second);
- the Python base: ``mmdebstrap --variant=minbase`` of bookworm with python3, venv and CA
  certificates (~20 s). The host's CA bundle goes in as ``PIP_CERT``, so a TLS-intercepting
  network still verifies certificates instead of turning verification off.

The Rivulet image is tagged with a hash of what goes into it, so an unchanged tree reuses it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, ImageNotFound

ROOT = Path(__file__).resolve().parents[2]
REDIS = "redis:7.4-alpine"
NGINX = "nginx:1.27-alpine"
PYTHON = "python:3.11-slim-bookworm"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
LABEL = "org.rivulet.test"


@dataclass(frozen=True, slots=True)
class Images:
    redis: str
    nginx: str
    rivulet: str


def _present(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except ImageNotFound:
        return False
    return True


def _pull(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.pull(name)
    except APIError:
        return False
    return True


def _ldd_closure(binaries: list[str]) -> set[str]:
    out = subprocess.run(["ldd", *binaries], capture_output=True, text=True, check=True).stdout
    libs = set()
    for line in out.splitlines():
        for part in line.split():
            if part.startswith("/") and os.path.exists(part):
                libs.add(part)
    return libs


def _import_rootfs(
    client: docker.DockerClient,
    name: str,
    files: dict[str, str],
    extra: dict[str, bytes],
    changes: list[str],
) -> None:
    """``docker import`` of a tarball holding ``files`` (path in image → host path) + ``extra``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for dest, src in sorted(files.items()):
            tar.add(os.path.realpath(src), arcname=dest.lstrip("/"))
        for dest, data in sorted(extra.items()):
            info = tarfile.TarInfo(dest.lstrip("/"))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for directory in ("tmp", "data", "var/run"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777
            tar.addfile(info)
    repository, tag = name.rsplit(":", 1)
    client.api.import_image_from_data(
        buf.getvalue(), repository=repository, tag=tag, changes=changes
    )


_PASSWD = (
    b"root:x:0:0::/root:/bin/sh\n"
    b"nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n"
    b"redis:x:999:999::/data:/usr/sbin/nologin\n"
)
_GROUP = b"root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\nredis:x:999:\n"


def _host_binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        raise RuntimeError(f"{name} is not installed on the host (tests/run installs it)")
    return path


def _redis_from_host(client: docker.DockerClient) -> None:
    binaries = [_host_binary("redis-server"), _host_binary("redis-cli")]
    files = {f"/usr/local/bin/{Path(b).name}": b for b in binaries}
    files |= {lib: lib for lib in _ldd_closure(binaries)}
    _import_rootfs(
        client,
        REDIS,
        files,
        {"/etc/passwd": _PASSWD, "/etc/group": _GROUP},
        ['ENTRYPOINT ["/usr/local/bin/redis-server"]', "WORKDIR /data"],
    )


def _nginx_from_host(client: docker.DockerClient) -> None:
    binary = _host_binary("nginx")
    files = {"/usr/sbin/nginx": binary} | {lib: lib for lib in _ldd_closure([binary])}
    _import_rootfs(
        client,
        NGINX,
        files,
        {"/etc/passwd": _PASSWD, "/etc/group": _GROUP, "/etc/nginx/.keep": b""},
        ['CMD ["/usr/sbin/nginx", "-g", "daemon off;"]'],
    )


def _python_base(client: docker.DockerClient) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        hook = f'cp {HOST_CA} "$1/usr/local/share/host-ca.crt"' if HOST_CA.exists() else "true"
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--quiet",
                "--include=python3,python3-venv,python-is-python3,ca-certificates,passwd",
                f"--customize-hook={hook}",
                "bookworm",
                str(rootfs),
            ],
            check=True,
            capture_output=True,
        )
        changes = ["ENV LANG=C.UTF-8", 'CMD ["python3"]']
        if HOST_CA.exists():
            changes.append("ENV PIP_CERT=/usr/local/share/host-ca.crt")
        repository, tag = PYTHON.rsplit(":", 1)
        with rootfs.open("rb") as data:
            client.api.import_image_from_data(
                data.read(), repository=repository, tag=tag, changes=changes
            )


def _ensure(client: docker.DockerClient, name: str, make: object) -> str:
    if _present(client, name) or _pull(client, name):
        return name
    make(client)  # type: ignore[operator]
    return name


def _tree_hash() -> str:
    digest = hashlib.sha256()
    paths = [ROOT / "Dockerfile", ROOT / "pyproject.toml", ROOT / "README.md"]
    paths += sorted(
        p for p in (ROOT / "service").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    for path in paths:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _rivulet(client: docker.DockerClient) -> str:
    name = f"rivulet:test-{_tree_hash()}"
    if _present(client, name):
        return name
    # Only what the Dockerfile copies: a small, deterministic build context.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in ("Dockerfile", "pyproject.toml", "README.md"):
            tar.add(ROOT / rel, arcname=rel)
        for path in sorted((ROOT / "service").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=str(path.relative_to(ROOT)))
    buf.seek(0)
    try:
        client.images.build(fileobj=buf, custom_context=True, tag=name, rm=True, forcerm=True)
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk)) for chunk in exc.build_log)
        raise RuntimeError(f"building the Rivulet image failed:\n{log[-4000:]}") from exc
    return name


def ensure_images(client: docker.DockerClient) -> Images:
    """Pull or make every image the topology needs; build Rivulet from the Dockerfile."""
    redis = _ensure(client, REDIS, _redis_from_host)
    nginx = _ensure(client, NGINX, _nginx_from_host)
    _ensure(client, PYTHON, _python_base)
    return Images(redis=redis, nginx=nginx, rivulet=_rivulet(client))
