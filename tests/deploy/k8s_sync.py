"""Writes ``k8s/base`` (and the dev overlay's Redis) from the Helm chart, so the kustomize
manifests are the chart's own objects for users who don't run Helm, and the Gateway API objects
of ``helm/rivulet/ci/gateway-values.yaml`` into the components under ``k8s/components`` (their
``kustomization.yaml`` files are written by hand).

``python -m tests.deploy.k8s_sync`` rewrites them after a chart change; ``tests/deploy/
test_k8s.py`` fails when the files and the chart disagree. Helm-only parts are dropped: the
``helm test`` Pod and its NetworkPolicy, Helm's bookkeeping labels, the config checksum
annotation (kustomize users roll pods with ``kubectl rollout restart``) and namespaces (the
overlays set them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "rivulet"
HELM = ROOT / ".tmp" / "tools" / "bin" / "helm"

HEADER = (
    "# Generated from helm/rivulet by `python -m tests.deploy.k8s_sync`: change the chart, then\n"
    "# re-run it (tests/deploy/test_k8s.py fails while the two differ).\n"
)
# The chart's production shape, with Secrets the user (or the dev overlay) provides.
BASE_VALUES = [
    "fullnameOverride=rivulet",
    "redis.existingSecret=rivulet-redis",
    "auth.existingSecret=rivulet-auth",
    "providers.existingSecret=rivulet-providers",
    "ingress.enabled=true",
]
REDIS_VALUES = ["fullnameOverride=rivulet", "redis.embedded.enabled=true"]
# The chart's Gateway API scenario; each of its Gateway API objects is one component's resource.
GATEWAY_VALUES = CHART / "ci" / "gateway-values.yaml"
COMPONENTS = {
    "HTTPRoute": ("gateway-api", "httproute.yaml"),
    "BackendTrafficPolicy": ("envoy-gateway", "backendtrafficpolicy.yaml"),
    "ProxySettingsPolicy": ("nginx-gateway-fabric", "proxysettingspolicy.yaml"),
}
_HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def render(sets: list[str], values_file: Path | None = None) -> list[dict[str, Any]]:
    args = [str(HELM), "template", "rivulet", str(CHART)]
    if values_file is not None:
        args += ["-f", str(values_file)]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    meta.pop("namespace", None)
    for labels in (
        meta.get("labels"),
        obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels"),
    ):
        for key in _HELM_LABELS:
            if labels:
                labels.pop(key, None)
    pod_meta = obj.get("spec", {}).get("template", {}).get("metadata", {})
    annotations = pod_meta.get("annotations") or {}
    annotations.pop("checksum/config", None)
    if not annotations:
        pod_meta.pop("annotations", None)
    return obj


def _component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", "shared"))


def base_objects() -> dict[str, list[dict[str, Any]]]:
    """The base's objects, by file name."""
    files: dict[str, list[dict[str, Any]]] = {}
    for obj in render(BASE_VALUES):
        if obj["kind"] == "Pod" or _component(obj) == "test":
            continue
        name = "ingress.yaml" if obj["kind"] == "Ingress" else f"{_component(obj)}.yaml"
        files.setdefault(name, []).append(_strip(obj))
    return files


def redis_objects() -> list[dict[str, Any]]:
    """The in-chart Redis (StatefulSet, Service, NetworkPolicy) for the dev overlay."""
    return [_strip(o) for o in render(REDIS_VALUES) if _component(o) == "redis"]


def component_objects() -> dict[Path, list[dict[str, Any]]]:
    """The Gateway API components' objects, by file (``k8s/components/<component>/<file>``)."""
    files: dict[Path, list[dict[str, Any]]] = {}
    for obj in render(["fullnameOverride=rivulet"], GATEWAY_VALUES):
        if obj["kind"] in COMPONENTS:
            component, name = COMPONENTS[obj["kind"]]
            files.setdefault(ROOT / "k8s" / "components" / component / name, []).append(_strip(obj))
    return files


def dump(objs: list[dict[str, Any]]) -> str:
    return HEADER + "".join(
        "---\n" + yaml.safe_dump(o, sort_keys=False, default_flow_style=False) for o in objs
    )


def expected_files() -> dict[Path, str]:
    files = {ROOT / "k8s" / "base" / n: dump(o) for n, o in sorted(base_objects().items())}
    files[ROOT / "k8s" / "overlays" / "dev" / "redis.yaml"] = dump(redis_objects())
    files |= {path: dump(objs) for path, objs in sorted(component_objects().items())}
    return files


def main() -> int:
    for path, text in expected_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
