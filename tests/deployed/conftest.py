"""The deployed topology, once per session: built images, one Docker network, nginx in front.

Needs a container engine: ``tests/run`` provides one (the machine's Docker, or a private
dockerd it starts and stops). A missing engine fails the suite with that advice; it never skips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import docker
import pytest

from tests.deployed.images import ensure_images
from tests.deployed.topology import Topology, nginx_conf

if TYPE_CHECKING:
    from collections.abc import Iterator


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deployed/" in str(item.fspath):
            item.add_marker(pytest.mark.deployed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, attach each node's recent log: CI output is all a red run leaves behind."""
    outcome = yield
    report = outcome.get_result()
    topo = getattr(item, "funcargs", {}).get("deployed") or getattr(item, "funcargs", {}).get(
        "topology"
    )
    if report.failed and isinstance(topo, Topology):
        for name in list(topo.nodes):
            try:
                tail = topo.logs(name)[-4000:]
            except Exception as exc:  # a node the test removed; say so and go on
                tail = f"(no log: {exc})"
            report.sections.append((f"container log: {name}", tail))


@pytest.fixture(scope="session")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(
            f"no container engine ({exc}): run tests/run, which uses the machine's Docker or "
            "starts a private dockerd, or export DOCKER_HOST",
            pytrace=False,
        )
    images = ensure_images(client)
    config = tmp_path_factory.mktemp("ingress") / "nginx.conf"
    config.write_text(nginx_conf())
    topo = Topology(images, client)
    try:
        topo.start(config)
        yield topo
    finally:
        topo.stop()


@pytest.fixture
def deployed(topology: Topology) -> Topology:
    """The topology with every node up and ready (an earlier scenario may have broken one)."""
    topology.heal()
    return topology
