"""``rivulet bench`` runs every scenario end to end (tiny sizes), so the tool cannot rot.

No timing is asserted: only that each scenario completes, counts what it should, and reports
in JSON. The figures themselves belong in benchmarks (tests/bench/).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCENARIOS = {
    "steady": ["--streams", "3", "--tokens", "10", "--rate", "100"],
    "fanout": ["--readers", "20", "--tokens", "10", "--rate", "100", "--fanout-stall", "0.5"],
    "slow": [
        "--streams",
        "4",
        "--tokens",
        "20",
        "--rate",
        "100",
        "--slow-fraction",
        "0.5",
        "--slow-seconds",
        "1",
    ],
    "resume-storm": ["--readers", "10", "--streams", "2", "--behind", "20"],
    "idle": ["--readers", "20", "--duration", "1"],
}


def _bench(scenario: str, *extra: str) -> dict[str, object]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "bench",
            "--spawn",
            "--json",
            "--scenario",
            scenario,
            *SCENARIOS[scenario],
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report: dict[str, object] = json.loads(proc.stdout)
    return report


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_scenario_runs_and_counts_what_it_should(scenario: str) -> None:
    report = _bench(scenario)
    assert report["scenario"] == scenario
    assert report["errors"] == 0
    assert report["completed"] == report["readers"]
    server = report["server_rss_mb"]
    assert isinstance(server, dict)
    assert server["before"] > 0
    if scenario == "steady":
        assert report["readers"] == 3
        assert report["events"] == 3 * (10 + 1)  # every token and the finish, once
        assert isinstance(report["latency_ms"], dict)
        assert report["latency_ms"]["p50"] >= 0
    if scenario == "fanout":
        assert report["events"] == 20 * (10 + 1)
    if scenario == "resume-storm":
        # Each reader resumes after the first event: the rest of the answer and the finish.
        assert report["events"] == 10 * (20 + 10)
    if scenario == "idle":
        assert report["events"] == 0
        extra = report["extra"]
        assert isinstance(extra, dict)
        assert "rss_per_connection_kb" in extra


def test_bench_with_two_loadgen_processes_and_a_redis_backed_server(redis_server: str) -> None:
    report = _bench("steady", "--processes", "2", "--redis", redis_server)
    assert report["readers"] == 3
    assert report["events"] == 3 * 11


def test_help_documents_every_scenario() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "bench", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for scenario in SCENARIOS:
        assert scenario in out
