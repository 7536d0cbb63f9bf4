"""Shared helpers for the deploy-artifact checks (helm/, k8s/, terraform/, .github/).

The validators are real binaries installed offline by ``tests/deploy/tools`` (``tests/run``
calls it). A missing tool is a failure with the command that fixes it, never a skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tmp" / "tools" / "bin"
CHART = ROOT / "helm" / "rivulet"
K8S = ROOT / "k8s"
TERRAFORM = ROOT / "terraform"
WORKFLOWS = ROOT / ".github" / "workflows"


def tool(name: str) -> Path:
    """Path of an installed validator; fails the test (not skips) when it is missing."""
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed: run tests/deploy/tools (tests/run does)")
    return path


def run(
    *args: str | Path,
    cwd: Path = ROOT,
    ok: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs a command and, when ``ok``, fails with its full output unless it exits 0."""
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    if ok and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def load_docs(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a multi-document manifest."""
    return [d for d in yaml.safe_load_all(text) if d]
