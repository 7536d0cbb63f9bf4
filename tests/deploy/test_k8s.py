"""The kustomize manifests: the chart's own objects (kept in sync by a generator), built with
the real ``kubectl kustomize`` and validated like the chart."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import (
    CHECKOV_K8S_SKIPS,
    K8S,
    K8S_VERSIONS,
    checkov,
    kubernetes_validate,
    load_docs,
    node_env,
    run,
    tool,
)
from tests.deploy.k8s_sync import expected_files

TARGETS = ["base", "overlays/dev", "overlays/prod"]


def build(target: str) -> str:
    return run(tool("kubectl"), "kustomize", K8S / target).stdout


def objects(target: str) -> list[dict[str, Any]]:
    return load_docs(build(target))


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def test_base_is_the_charts_objects() -> None:
    for path, text in expected_files().items():
        assert path.read_text() == text, (
            f"{path} differs from the chart: run python -m tests.deploy.k8s_sync"
        )


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_kustomize_output_matches_kubernetes_schemas(
    target: str, version: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "out.yaml"
    manifest.write_text(build(target))
    assert kubernetes_validate(manifest, version) == []


@pytest.mark.parametrize("target", TARGETS)
def test_checkov_finds_nothing_unexplained(target: str, tmp_path: Path) -> None:
    manifest = tmp_path / "out.yaml"
    manifest.write_text(build(target))
    skips = dict(CHECKOV_K8S_SKIPS)
    if target == "base":
        skips["CKV_K8S_21"] = "a kustomize base carries no namespace: the overlays set it"
    report = checkov("kubernetes", "-f", manifest, skips=skips)
    failed = [f"{c['check_id']} {c['resource']}" for c in report.failed]
    assert failed == []


@pytest.mark.parametrize("target", TARGETS)
def test_ingress_keeps_the_streaming_annotations(target: str) -> None:
    annotations = one(objects(target), "Ingress", "rivulet")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600


def _secret_refs(docs: list[dict[str, Any]]) -> set[tuple[str, str, bool]]:
    """(secret, key, optional) for every secret a pod reads."""
    refs: set[tuple[str, str, bool]] = set()
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        spec = d["spec"]["template"]["spec"]
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"], bool(ref.get("optional"))))
        for v in spec.get("volumes", []):
            if "secret" in v:
                for item in v["secret"]["items"]:
                    refs.add((v["secret"]["secretName"], item["key"], False))
    return refs


def test_dev_overlay_is_self_contained() -> None:
    docs = objects("overlays/dev")
    secrets = {
        d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in d["data"].items()}
        for d in docs
        if d["kind"] == "Secret"
    }
    for name, key, optional in _secret_refs(docs):
        assert optional or key in secrets.get(name, {}), f"{name}/{key} is not in the overlay"
    redis_url = next(v["redis-url"] for k, v in secrets.items() if k.startswith("rivulet-redis"))
    service = one(docs, "Service", "rivulet-redis")
    assert redis_url == f"redis://{service['metadata']['name']}:6379/0"
    assert one(docs, "Deployment", "rivulet")["spec"]["replicas"] == 1
    assert not [d for d in docs if d["kind"] in ("HorizontalPodAutoscaler", "PodDisruptionBudget")]
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        "rivulet-dev"
    }


def test_prod_overlay_pins_the_image_and_fences_the_api() -> None:
    docs = objects("overlays/prod")
    for name in ("rivulet", "rivulet-worker"):
        image = one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "ghcr.io/rivulet-dev/rivulet:0.1.0"
    ingress = one(docs, "Ingress", "rivulet")
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    peers = one(docs, "NetworkPolicy", "rivulet")["spec"]["ingress"][0]["from"]
    assert peers == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    # Production secrets are never in the repository: the overlay only references them.
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert {n for n, _, _ in _secret_refs(docs)} == {
        "rivulet-redis",
        "rivulet-auth",
        "rivulet-providers",
    }


@pytest.mark.parametrize("target", ["overlays/dev", "overlays/prod"])
def test_namespaces_enforce_the_restricted_pod_security_standard(target: str) -> None:
    namespace = next(d for d in objects(target) if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# -- the Gateway API components ----------------------------------------------------------------

COMPONENTS = ["gateway-api", "envoy-gateway", "nginx-gateway-fabric"]


@pytest.mark.parametrize("component", COMPONENTS)
def test_component_builds_on_its_own(component: str, tmp_path: Path) -> None:
    """What CI's kustomize loop does with every directory holding a kustomization.yaml."""
    manifest = tmp_path / "out.yaml"
    manifest.write_text(build(f"components/{component}"))
    docs = load_docs(manifest.read_text())
    assert len(docs) == 1
    assert kubernetes_validate(manifest, K8S_VERSIONS[-1]) == []
    proc = run(tool("validate-crds"), manifest, ok=False, env=node_env())
    assert proc.returncode == 0, proc.stdout


def _readme_overlay(implementation: str, tmp_path: Path) -> Path:
    """The overlay k8s/components/README.md shows (for Envoy Gateway), in a temporary directory,
    for ``implementation`` (its component replacing envoy-gateway)."""
    readme = (K8S / "components" / "README.md").read_text()
    [text] = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    up = os.path.relpath(K8S, overlay)
    text = text.replace("../../components/envoy-gateway", f"../../components/{implementation}")
    (overlay / "kustomization.yaml").write_text(text.replace("../../", f"{up}/"))
    return overlay


@pytest.mark.parametrize("implementation", ["envoy-gateway", "nginx-gateway-fabric"])
def test_readme_overlay_with_components_builds_and_validates(
    implementation: str, tmp_path: Path
) -> None:
    overlay = _readme_overlay(implementation, tmp_path)
    out = run(tool("kubectl"), "kustomize", overlay).stdout
    manifest = tmp_path / "out.yaml"
    manifest.write_text(out)
    for version in K8S_VERSIONS:
        assert kubernetes_validate(manifest, version) == []
    proc = run(tool("validate-crds"), manifest, ok=False, env=node_env())
    assert proc.returncode == 0, proc.stdout
    docs = load_docs(out)
    route = one(docs, "HTTPRoute", "rivulet")
    assert route["metadata"]["namespace"] == "rivulet"
    assert route["spec"]["parentRefs"] == [
        {"name": "eg", "namespace": "envoy-gateway-system", "sectionName": "https"}
    ]
    assert route["spec"]["hostnames"] == ["rivulet.example.org"]
    [backend] = route["spec"]["rules"][0]["backendRefs"]
    service = one(docs, "Service", backend["name"])
    assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "0s", "backendRequest": "0s"}
    kind = {"envoy-gateway": "BackendTrafficPolicy", "nginx-gateway-fabric": "ProxySettingsPolicy"}
    policies = [d for d in docs if d["kind"] in kind.values()]
    assert [p["kind"] for p in policies] == [kind[implementation]]
    assert policies[0]["metadata"]["namespace"] == "rivulet"
    assert policies[0]["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "rivulet"}
    ]
    assert not [d for d in docs if d["kind"] == "Ingress"]
    peers = one(docs, "NetworkPolicy", "rivulet")["spec"]["ingress"][0]["from"]
    assert peers == [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}
            }
        }
    ]
    report = checkov("kubernetes", "-f", manifest, skips=CHECKOV_K8S_SKIPS)
    assert [f"{c['check_id']} {c['resource']}" for c in report.failed] == []
