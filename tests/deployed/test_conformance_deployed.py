"""The Durable Streams conformance suite against the containerised topology, through nginx:
offsets, long-polls and SSE survive the ingress and the hop between two replicas."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conformance.test_conformance import check_results, run_suite

if TYPE_CHECKING:
    from pathlib import Path

    from tests.deployed.topology import Topology


@pytest.mark.conformance
def test_conformance_suite_through_the_ingress(
    deployed: Topology, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = run_suite(deployed.ingress, tmp_path / "report.json")
    logs = "\n".join(deployed.logs(name)[-1500:] for name in ("api-a", "api-b", "ingress"))
    check_results("deployed", results, logs, capsys)
