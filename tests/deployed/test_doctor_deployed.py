"""``rivulet doctor`` through the deployed topology's ingress (nginx configured from the
chart's annotations, two API replicas on Redis, production heartbeat): every check passes,
cross-replica included. This is the edge the chart ships, so a FAIL here is a chart bug."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from service.doctor import diagnose

if TYPE_CHECKING:
    from tests.deployed.topology import Topology


def test_the_doctor_passes_the_charts_ingress(deployed: Topology) -> None:
    plan, checks = asyncio.run(diagnose(deployed.ingress))
    report = json.dumps([c.__repr__() for c in checks], indent=1)
    assert plan is not None, report
    assert plan.heartbeat == 15, "the replicas run the default heartbeat"
    assert {c.name: c.status for c in checks} == {
        "headers": "PASS",
        "compression": "PASS",
        "buffering": "PASS",
        "heartbeats": "PASS",
        "idle timeout": "PASS",
        "resume": "PASS",
        # nginx balances round-robin: the reconnect lands on the other replica.
        "cross-replica": "PASS",
    }, report
