"""schemathesis against the served OpenAPI document: no 5xx, nothing outside the contract.

Runs the real CLI against a real ``rivulet serve``, open and with API keys (with a valid key,
and with none — every operation must then answer a documented 401). Bounded: a fixed seed
and a fixed number of examples per operation.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rivulet_process import rivulet_serve

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)
KEY = "schemathesis-admin-key-0123456789"
KEYED = {"RIVULET_API_KEYS": KEY, "RIVULET_READ_TOKEN_SECRET": "r" * 40}
SERVER = {
    "RIVULET_LONG_POLL_TIMEOUT": "0.5",
    "RIVULET_SSE_MAX_DURATION": "1",
    "RIVULET_CANCEL_WITHOUT_READER": "0",
    "RIVULET_LOG_LEVEL": "warning",
    "RIVULET_RATE_LIMIT": "0",
}


def _schemathesis(
    base: str, tmp_path: Path, headers: list[str]
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    args = [exe, "run", f"{base}/openapi.json", "--checks", CHECKS, "-n", "25", "--seed", "7"]
    args += ["--max-response-time", "10", "--report-dir", str(tmp_path / "report")]
    for header in headers:
        args += ["-H", header]
    return subprocess.run(
        args, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path
    )


@pytest.mark.parametrize(
    ("env", "headers"),
    [
        ({}, []),
        (
            {"RIVULET_API_KEYS": KEY, "RIVULET_READ_TOKEN_SECRET": "r" * 40},
            [f"Authorization: Bearer {KEY}"],
        ),
        ({"RIVULET_API_KEYS": KEY, "RIVULET_READ_TOKEN_SECRET": "r" * 40}, []),
    ],
    ids=["open", "with-key", "without-key"],
)
def test_schemathesis_finds_no_server_errors_or_contract_violations(
    tmp_path: Path, env: dict[str, str], headers: list[str]
) -> None:
    with rivulet_serve(tmp_path, {**SERVER, **env}, name="schemathesis") as server:
        proc = _schemathesis(server.url, tmp_path, headers)
        log_tail = server.log_tail()
    summary = proc.stdout[-4000:]
    assert proc.returncode == 0, f"{summary}\n{proc.stderr[-2000:]}\nserver log:\n{log_tail}"
    assert " passed" in summary
