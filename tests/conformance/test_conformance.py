"""The official Durable Streams conformance suite, against ``rivulet serve`` on each backend.

The Node suite (``@durable-streams/server-conformance-tests``, pinned in package.json) runs
under vitest against a real server process. ``expected-failures.txt`` may name cases that do
not pass yet, per backend; the check runs both ways (an unexpected failure fails, and so does
a listed case that now passes), so the list can only shrink.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.rivulet_process import rivulet_serve

HERE = Path(__file__).parent
EXPECTED = HERE / "expected-failures.txt"

# The suite gives each test vitest's default 5 s, and two tests wait for a long-poll 204 with
# no abort: the server's long-poll timeout must be well under that. Production keeps its own
# default (RIVULET_LONG_POLL_TIMEOUT); this is configuration, not a code path for tests.
SERVER_ENV = {
    "RIVULET_LONG_POLL_TIMEOUT": "2",
    "RIVULET_LOG_LEVEL": "warning",
    # The suite checks CORS preflights; production defaults to no cross-origin access.
    "RIVULET_CORS_ORIGINS": "*",
    # The suite makes thousands of writes a minute from one address.
    "RIVULET_RATE_LIMIT": "0",
    "RIVULET_MAX_STREAMS_PER_KEY": "0",
}


def _expected_failures(backend: str) -> set[str]:
    out: set[str] = set()
    if not EXPECTED.exists():
        return out
    for line in EXPECTED.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        scope, _, name = line.partition(" ")
        if scope in (backend, "*"):
            out.add(name.strip())
    return out


def run_suite(base_url: str, report: Path) -> dict[str, list[str]]:
    npx = shutil.which("npx")
    if npx is None:
        pytest.fail("npx is not on PATH: run the suite through tests/run", pytrace=False)
    if not (HERE / "node_modules").exists():
        pytest.fail("tests/conformance/node_modules is missing: run `npm ci` there", pytrace=False)
    env = {**os.environ, "CONFORMANCE_TEST_URL": base_url, "CONFORMANCE_REPORT": str(report)}
    proc = subprocess.run(
        [npx, "vitest", "run", "--reporter=dot", "--reporter=json"],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if not report.exists():
        pytest.fail(f"vitest wrote no report:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    data = json.loads(report.read_text())
    results: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    for file_result in data["testResults"]:
        for case in file_result["assertionResults"]:
            name = " > ".join([*case.get("ancestorTitles", []), case["title"]])
            status = case["status"]
            bucket = (
                "passed" if status == "passed" else "failed" if status == "failed" else "skipped"
            )
            results[bucket].append(name)
    return results


@pytest.mark.conformance
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_conformance_suite(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    env = dict(SERVER_ENV)
    if backend == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_server")
        env["RIVULET_REDIS_KEY_PREFIX"] = f"conformance-{os.getpid()}"
    with rivulet_serve(tmp_path, env, name=f"conformance-{backend}") as server:
        results = run_suite(server.url, tmp_path / "report.json")
        server_log = server.log_tail()
    check_results(backend, results, server_log, capsys)


def check_results(
    backend: str,
    results: dict[str, list[str]],
    server_log: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Compare a run with ``expected-failures.txt`` for ``backend``, both ways."""
    passed, failed, skipped = (len(results[k]) for k in ("passed", "failed", "skipped"))
    # The count line CI and humans look for, one per backend, shown even when pytest captures.
    with capsys.disabled():
        print(f"\nconformance[{backend}]: {passed} passed, {failed} failed, {skipped} skipped")
    expected = _expected_failures(backend)
    unexpected = sorted(set(results["failed"]) - expected)
    now_passing = sorted(expected & set(results["passed"]))
    missing = sorted(expected - set(results["failed"]) - set(results["passed"]))
    problems = []
    if unexpected:
        problems.append("failed (not in expected-failures.txt):\n  " + "\n  ".join(unexpected))
    if now_passing:
        problems.append(
            "listed in expected-failures.txt but passing (remove them):\n  "
            + "\n  ".join(now_passing)
        )
    if missing:
        problems.append(
            "listed in expected-failures.txt but not in the suite:\n  " + "\n  ".join(missing)
        )
    assert not problems, "\n".join(problems) + f"\n\nserver log tail:\n{server_log}"
    assert passed > 300, f"suite ran only {passed} passing cases"
