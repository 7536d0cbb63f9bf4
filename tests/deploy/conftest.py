"""Shared helpers for the deploy-artifact checks (helm/, k8s/, terraform/, .github/).

The validators are real binaries installed offline by ``tests/deploy/tools`` (``tests/run``
calls it). A missing tool is a failure with the command that fixes it, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
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


# The Kubernetes versions the manifests are validated for: the oldest and newest supported.
K8S_VERSIONS = ["1.29.0", "1.33.0"]
# The kinds rendered that are not Kubernetes built-ins: kubernetes-validate has no schema for
# them (it only warns), validate-crds checks them against theirs.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("gateway.envoyproxy.io/v1alpha1", "BackendTrafficPolicy"),
    ("gateway.nginx.org/v1alpha1", "ProxySettingsPolicy"),
}


def node_env() -> dict[str, str]:
    """The environment with the Node (>= 20) tests/run installs first on PATH, if it did."""
    node = ROOT / ".tmp" / "node" / "node_modules" / "node" / "bin"
    path = f"{node}:{os.environ['PATH']}" if node.is_dir() else os.environ["PATH"]
    return {**os.environ, "PATH": path}


def kubernetes_validate(manifest: Path, version: str) -> list[str]:
    """Problems kubernetes-validate finds. It exits 0 and only WARNs for an apiVersion/kind it
    has no schema for; that counts as a problem unless the kind is a known CRD."""
    proc = run(tool("kubernetes-validate"), "--strict", "-k", version, manifest, ok=False)
    problems = [] if proc.returncode == 0 else [f"exit {proc.returncode}: {proc.stderr}"]
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith("INFO") and " passed for resource " in line:
            continue
        missing = re.search(r"Couldn't find schema for kind (\S+) with api version (\S+)", line)
        if missing and (missing[2], missing[1]) in CRD_KINDS:
            continue
        if line.strip():
            problems.append(line)
    return problems


# Checkov findings accepted for the chart and the kustomize manifests, each with its reason.
CHECKOV_K8S_SKIPS = {
    # The default follows the chart's appVersion tag so `helm install` works out of the box;
    # `image.digest` pins by digest (the existing-secrets scenario renders that).
    "CKV_K8S_43": "image by tag unless image.digest is set",
    # IfNotPresent with immutable release tags or digests; Always adds a registry round trip
    # to every pod start and an outage dependency.
    "CKV_K8S_15": "IfNotPresent is right for immutable tags and digests",
    # REDIS_URL, the read-token key and provider keys are read from the environment (from
    # secretKeyRef, never written in the pod spec); the API keys, which rotate, are a file.
    "CKV_K8S_35": "secret env vars via secretKeyRef; rotating API keys are a mounted file",
}


@dataclass
class CheckovReport:
    """checkov's results, merged over the frameworks' reports it printed."""

    passed: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    parsing_errors: int = 0


def checkov(
    framework: str,
    flag: str,
    target: str | Path,
    *,
    skips: Iterable[str] = (),
    cwd: Path = ROOT,
) -> CheckovReport:
    """Run checkov offline on ``target`` (``flag`` is ``-f`` for a file, ``-d`` for a folder)."""
    args: list[str | Path] = [tool("checkov"), "--skip-download", "--framework", framework]
    args += [flag, target, "-o", "json"]
    if skips:
        args += ["--skip-check", ",".join(skips)]
    proc = run(*args, cwd=cwd, ok=False)
    assert proc.stdout.strip(), f"checkov printed nothing\n{proc.stderr}"
    raw = json.loads(proc.stdout)
    report = CheckovReport()
    for item in raw if isinstance(raw, list) else [raw]:
        results = item.get("results") or {}
        report.passed += results.get("passed_checks", [])
        report.failed += results.get("failed_checks", [])
        report.skipped += results.get("skipped_checks", [])
        report.parsing_errors += (item.get("summary") or {}).get("parsing_errors", 0)
    return report
