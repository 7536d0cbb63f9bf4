"""The Helm chart, checked offline: lint, schema, Kubernetes API schemas, policy, and behaviour.

Rendering uses the real helm 3 binary; the Kubernetes schemas are kubernetes-validate's (strict:
unknown fields fail) for the oldest and newest Kubernetes the chart supports, and custom
resources go through their CRD schemas. The unit tests read the rendered objects and hold the
chart to what the service needs (streaming-safe ingress, probes on real routes, drain timing).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings
from tests.deploy.chart_docs import VALUES, parse, table
from tests.deploy.conftest import (
    CHART,
    CHECKOV_K8S_SKIPS,
    K8S_VERSIONS,
    ROOT,
    checkov,
    kubernetes_validate,
    load_docs,
    node_env,
    run,
    tool,
)

SCENARIOS = ["default", *sorted(p.stem for p in (CHART / "ci").glob("*-values.yaml"))]
NAMESPACE = "rivulet"


def _values_args(scenario: str) -> list[str]:
    return [] if scenario == "default" else ["-f", str(CHART / "ci" / f"{scenario}.yaml")]


@functools.cache
def _render_text(*args: str) -> str:
    return run(tool("helm"), "template", "r", CHART, "--namespace", NAMESPACE, *args).stdout


def render(*args: str) -> list[dict[str, Any]]:
    """The chart's objects for these extra ``helm template`` arguments (``--set``, ``-f``)."""
    return load_docs(_render_text(*args))


def render_fails(*args: str) -> str:
    proc = run(tool("helm"), "template", "r", CHART, *args, ok=False)
    assert proc.returncode != 0, f"helm template {' '.join(args)} should have failed"
    return proc.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def container(doc: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(doc)["env"]}


# -- lint, API schemas, CRD schemas ------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(scenario: str) -> None:
    out = run(tool("helm"), "lint", "--strict", CHART, *_values_args(scenario)).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_objects_match_kubernetes_schemas(
    scenario: str, version: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "chart.yaml"
    manifest.write_text(_render_text(*_values_args(scenario)))
    assert kubernetes_validate(manifest, version) == []


def test_kubernetes_validate_check_rejects_unknown_api_and_bad_fields(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
    assert any("Couldn't find schema" in p for p in kubernetes_validate(unknown, "1.33.0"))
    removed = tmp_path / "removed.yaml"  # policy/v1beta1 PDBs are gone since 1.25
    removed.write_text(
        "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: p}\n"
        "spec: {maxUnavailable: 1, selector: {matchLabels: {a: b}}}\n"
    )
    assert kubernetes_validate(removed, "1.29.0") != []
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
        "spec: {ports: [{port: 80, targetPrt: 8080}]}\n"
    )
    assert kubernetes_validate(typo, "1.33.0") != []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_custom_resources_match_their_crd_schemas(scenario: str, tmp_path: Path) -> None:
    manifest = tmp_path / "chart.yaml"
    manifest.write_text(_render_text(*_values_args(scenario)))
    proc = run(tool("validate-crds"), manifest, ok=False, env=node_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_crd_validation_rejects_a_bad_service_monitor(tmp_path: Path) -> None:
    docs = render("-f", str(CHART / "ci" / "existing-secrets-values.yaml"))
    monitor = find(docs, "ServiceMonitor")[0]
    monitor["spec"]["endpoints"][0]["interval"] = "every thirty seconds"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(monitor))
    proc = run(tool("validate-crds"), bad, ok=False, env=node_env())
    assert proc.returncode == 1
    assert "interval" in proc.stdout
    # The kubernetes-models validators let unknown fields through; validate-crds does not.
    monitor["spec"]["endpoints"][0] = {"port": "http", "intervall": "30s"}
    bad.write_text(yaml.safe_dump(monitor))
    proc = run(tool("validate-crds"), bad, ok=False, env=node_env())
    assert proc.returncode == 1
    assert 'unknown field "intervall"' in proc.stdout
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
    assert run(tool("validate-crds"), unknown, ok=False, env=node_env()).returncode == 1


GATEWAY = ("-f", str(CHART / "ci" / "gateway-values.yaml"))


def _validate_crds(tmp_path: Path, *objs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    manifest = tmp_path / "objects.yaml"
    manifest.write_text(yaml.safe_dump_all(objs))
    return run(tool("validate-crds"), manifest, ok=False, env=node_env())


def _bad(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``obj`` with ``value`` at the dotted ``path`` (list items by index)."""
    obj = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node: Any = obj
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return obj


@pytest.mark.parametrize(
    ("kind", "path", "value", "complaint"),
    [
        # Not a Gateway API Duration (GEP-2257): the HTTPRoute schema's pattern rejects it.
        ("HTTPRoute", "spec.rules.0.timeouts.request", "15 minutes", "/request must match"),
        ("HTTPRoute", "spec.rules.0.timeouts.backendRequest", "1d", "/backendRequest must match"),
        ("HTTPRoute", "spec.rules.0.timeout", {"request": "0s"}, 'unknown field "timeout"'),
        ("HTTPRoute", "spec.parentRefs.0.port", 0, "/parentRefs/0/port must be >= 1"),
        # The stream idle timeout is a ClientTrafficPolicy field, not a BackendTrafficPolicy one.
        (
            "BackendTrafficPolicy",
            "spec.timeout.http.streamIdleTimeout",
            "1h",
            'unknown field "streamIdleTimeout"',
        ),
        ("BackendTrafficPolicy", "spec.timeout.http.requestTimeout", "forever", "must match"),
        # NGF 2.4's ProxySettingsPolicy has no timeouts (and no buffering.enabled).
        ("ProxySettingsPolicy", "spec.timeout", {"read": "1h"}, 'unknown field "timeout"'),
        ("ProxySettingsPolicy", "spec.buffering.enabled", False, 'unknown field "enabled"'),
        ("ProxySettingsPolicy", "spec.buffering.bufferSize", "8 KiB", "must match pattern"),
        ("ProxySettingsPolicy", "spec.targetRefs", [], "must NOT have fewer than 1 items"),
    ],
)
def test_crd_validation_rejects_bad_gateway_objects(
    kind: str, path: str, value: Any, complaint: str, tmp_path: Path
) -> None:
    good = find(render(*GATEWAY), kind)[0]
    assert _validate_crds(tmp_path, good).returncode == 0
    proc = _validate_crds(tmp_path, _bad(good, path, value))
    assert proc.returncode == 1, proc.stdout
    assert complaint in proc.stdout, proc.stdout


def test_crd_validation_knows_no_gateway_api_kind_it_has_no_schema_for(tmp_path: Path) -> None:
    """gateway.networking.k8s.io ends in .k8s.io but is no built-in group: never skipped."""
    tcp_route = {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "TCPRoute",
        "metadata": {"name": "t"},
        "spec": {"parentRefs": [{"name": "g"}], "rules": [{"backendRefs": [{"name": "s"}]}]},
    }
    proc = _validate_crds(tmp_path, tcp_route)
    assert proc.returncode == 1
    assert "no schema known for gateway.networking.k8s.io/v1alpha2 TCPRoute" in proc.stdout
    client_policy = {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "ClientTrafficPolicy",
        "metadata": {"name": "c"},
        "spec": {},
    }
    assert "no schema known" in _validate_crds(tmp_path, client_policy).stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_checkov_finds_nothing_unexplained(scenario: str, tmp_path: Path) -> None:
    manifest = tmp_path / "chart.yaml"
    manifest.write_text(_render_text(*_values_args(scenario)))
    skips = dict(CHECKOV_K8S_SKIPS)
    if scenario == "no-auth-values":
        # This scenario turns NetworkPolicy off on purpose (a mesh or gateway does it).
        skips["CKV2_K8S_6"] = "networkPolicy.enabled=false in this scenario"
    report = checkov("kubernetes", "-f", manifest, skips=skips)
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report.failed]
    assert failed == []
    assert len(report.passed) > 100


def test_dockerfile_checkov_clean_with_reasoned_inline_skips() -> None:
    report = checkov("dockerfile", "-f", ROOT / "Dockerfile")
    assert report.failed == []
    for skipped in report.skipped:
        assert skipped["check_result"]["suppress_comment"].strip(), skipped["check_id"]


# -- values.schema.json ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set", "api.replicas=-1"], "api.replicas"),
        (["--set", "ingress.enabeld=true"], "enabeld"),
        (["--set", "redis.url=http://redis:6379"], "redis.url"),
        (["--set", "providers.default=gemini"], "providers.default"),
        (["--set", "image.digest=latest"], "image.digest"),
        (["--set", "auth.apiKeys[0]=short"], "auth.apiKeys"),
        (["--set", "redis.embedded.appendfsync=no"], "appendfsync"),
        (["--set", "config.extra.PATH=/tmp"], "config.extra"),
        (["--set", "config.extra.RIVULET_PORT=9000"], "config.extra"),
        (["--set", "gateway.enabled=true"], "gateway.parentRefs"),
        (["--set", "gateway.timeouts.request=15 minutes"], "gateway.timeouts.request"),
        (["--set", "gateway.timeouts.backendRequest=-1s"], "gateway.timeouts.backendRequest"),
        (["--set", "gateway.parentRefs[0].nmae=eg"], "nmae"),
        (["--set", "gateway.path.type=RegularExpression"], "gateway.path.type"),
        (["--set", "gateway.hostnames[0]=Rivulet.Example.com"], "gateway.hostnames"),
        (["--set", "gateway.envoyGateway.requestTimout=0s"], "requestTimout"),
        (["--set", "gateway.envoyGateway.maxStreamDuration=1 hour"], "maxStreamDuration"),
        (["--set", "gateway.nginxGatewayFabric.bufferSize=lots"], "bufferSize"),
        (["--set", "gateway.nginxGatewayFabric.readTimeout=1h"], "readTimeout"),
    ],
)
def test_schema_rejects_bad_values(args: list[str], complaint: str) -> None:
    assert complaint in render_fails(*args)


def test_template_refuses_timings_that_would_cut_streams() -> None:
    err = render_fails("--set", "api.terminationGracePeriodSeconds=12")
    assert "terminationGracePeriodSeconds" in err
    # In-process generations drain after requests do: twice the grace (uvicorn, then worker).
    inprocess = ["--set", "redis.url=redis://r:6379", "--set", "worker.enabled=false"]
    assert render(*inprocess, "--set", "api.terminationGracePeriodSeconds=26")
    err = render_fails(*inprocess, "--set", "api.terminationGracePeriodSeconds=24")
    assert "twice with in-process generations" in err
    err = render_fails(*EXTERNAL, "--set", "worker.terminationGracePeriodSeconds=10")
    assert "worker.terminationGracePeriodSeconds" in err
    err = render_fails("--set", "ingress.enabled=true", "--set", "ingress.timeoutSeconds=10")
    assert "ingress.timeoutSeconds" in err


@pytest.mark.parametrize(
    ("sets", "complaint"),
    [
        # A total timeout at or under the 60 s a Durable Streams live read lasts cuts it.
        (["gateway.timeouts.request=30s"], "gateway.timeouts.request (30s) must be 0s or longer"),
        (["gateway.timeouts.request=1m"], "gateway.timeouts.request (1m)"),
        (["gateway.timeouts.backendRequest=59s500ms"], "gateway.timeouts.backendRequest"),
        # ... or a long-poll, when that is the longer of the two.
        (
            ["config.longPollTimeoutSeconds=120", "gateway.timeouts.request=90s"],
            "gateway.timeouts.request (90s) must be 0s or longer",
        ),
        # NGF keeps nginx's 60 s read timeout: heartbeats must come more often than that.
        (
            [
                "gateway.nginxGatewayFabric.enabled=true",
                "config.sseHeartbeatSeconds=60",
                "ingress.timeoutSeconds=3600",
            ],
            "config.sseHeartbeatSeconds (60) must be under 60 with gateway.nginxGatewayFabric",
        ),
        (
            ["gateway.envoyGateway.enabled=true", "gateway.envoyGateway.requestTimeout=15s"],
            "gateway.envoyGateway.requestTimeout (15s)",
        ),
        (
            ["gateway.envoyGateway.enabled=true", "gateway.envoyGateway.maxStreamDuration=1m"],
            "gateway.envoyGateway.maxStreamDuration (1m)",
        ),
        # The Gateway API's own rule (a CEL rule validate-crds does not evaluate).
        (
            ["gateway.timeouts.request=2m", "gateway.timeouts.backendRequest=2m1s"],
            "must not exceed gateway.timeouts.request (2m)",
        ),
        (
            ["gateway.timeouts.request=1h", "gateway.timeouts.backendRequest=59m3600s"],
            "must not exceed",
        ),
    ],
)
def test_template_refuses_gateway_timeouts_that_would_cut_streams(
    sets: list[str], complaint: str
) -> None:
    args = ["--set", "gateway.enabled=true", "--set", "gateway.parentRefs[0].name=eg"]
    for value in sets:
        args += ["--set", value]
    assert complaint in render_fails(*args)


def test_template_accepts_long_or_disabled_gateway_timeouts() -> None:
    base = ["--set", "gateway.enabled=true", "--set", "gateway.parentRefs[0].name=eg"]
    for request, backend in [("0s", "5m"), ("1h1m500ms", "1h1m"), ("61s", "61s"), ("", "")]:
        docs = render(
            *base,
            "--set",
            f"gateway.timeouts.request={request}",
            "--set",
            f"gateway.timeouts.backendRequest={backend}",
        )
        rule = one(docs, "HTTPRoute", "r-rivulet")["spec"]["rules"][0]
        expected = {k: v for k, v in (("request", request), ("backendRequest", backend)) if v}
        assert rule.get("timeouts", {}) == expected


def test_gateway_policies_need_the_route() -> None:
    for policy in ("envoyGateway", "nginxGatewayFabric"):
        err = render_fails("--set", f"gateway.{policy}.enabled=true")
        assert "set gateway.enabled too" in err


# -- what the rendered objects do ---------------------------------------------------------------

EXTERNAL = ("-f", str(CHART / "ci" / "external-redis-values.yaml"))


def test_ingress_turns_proxy_buffering_off_and_outlasts_heartbeats() -> None:
    docs = render(*EXTERNAL)
    annotations = one(docs, "Ingress", "r-rivulet")["metadata"]["annotations"]
    nginx = {k.removeprefix("nginx.ingress.kubernetes.io/"): v for k, v in annotations.items()}
    assert nginx["proxy-buffering"] == "off"
    assert nginx["proxy-request-buffering"] == "off"
    assert nginx["proxy-http-version"] == "1.1"
    values = yaml.safe_load(VALUES.read_text())
    heartbeat = values["config"]["sseHeartbeatSeconds"]
    assert int(nginx["proxy-read-timeout"]) > 10 * heartbeat
    assert int(nginx["proxy-send-timeout"]) > 10 * heartbeat
    # The ingress lets through every body the service accepts.
    assert (
        int(nginx["proxy-body-size"].removesuffix("k")) * 1024 >= values["config"]["maxBodyBytes"]
    )
    config = one(docs, "ConfigMap", "r-rivulet")["data"]
    assert float(config["RIVULET_SSE_HEARTBEAT"]) == heartbeat


def test_ingress_routes_to_the_api_service_port() -> None:
    docs = render(*EXTERNAL)
    ingress = one(docs, "Ingress", "r-rivulet")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = one(docs, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"][0]["secretName"] == "rivulet-tls"


def test_httproute_routes_to_the_api_service_port() -> None:
    docs = render(*GATEWAY)
    route = one(docs, "HTTPRoute", "r-rivulet")
    values = yaml.safe_load((CHART / "ci" / "gateway-values.yaml").read_text())["gateway"]
    assert route["spec"]["parentRefs"] == values["parentRefs"]
    assert route["spec"]["hostnames"] == ["rivulet.example.com"]
    [rule] = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    [backend] = rule["backendRefs"]
    assert set(backend) == {"name", "port"}  # group "" and kind Service are the defaults
    service = one(docs, "Service", backend["name"])
    http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
    assert backend["port"] == http["port"]
    api_labels = one(docs, "Deployment", "r-rivulet")["spec"]["template"]["metadata"]["labels"]
    assert all(api_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    # Off (the Gateway API's "0s"): Envoy's 15 s default route timeout would end every stream.
    assert rule["timeouts"] == {"request": "0s", "backendRequest": "0s"}
    # The gateway's data plane reaches the API port through the NetworkPolicy.
    peers = one(docs, "NetworkPolicy", "r-rivulet")["spec"]["ingress"][0]["from"]
    gateway_ns = {"kubernetes.io/metadata.name": "gateway-system"}
    assert {"namespaceSelector": {"matchLabels": gateway_ns}} in peers


def test_gateway_policies_target_the_httproute_and_keep_streams_flowing() -> None:
    docs = render(*GATEWAY)
    target = [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r-rivulet"}]
    assert one(docs, "HTTPRoute", "r-rivulet")
    envoy = one(docs, "BackendTrafficPolicy", "r-rivulet")
    assert envoy["spec"]["targetRefs"] == target
    assert envoy["spec"]["timeout"] == {"http": {"requestTimeout": "0s"}}
    nginx = one(docs, "ProxySettingsPolicy", "r-rivulet")
    assert nginx["spec"]["targetRefs"] == target
    assert nginx["spec"]["buffering"] == {"disable": True}
    # Opt-in: nothing of the Gateway API without gateway.enabled, no policy unless asked.
    assert not [d for d in render() if d["apiVersion"].startswith("gateway.")]
    route_only = render("--set", "gateway.enabled=true", "--set", "gateway.parentRefs[0].name=eg")
    gateway_kinds = [d["kind"] for d in route_only if d["apiVersion"].startswith("gateway.")]
    assert gateway_kinds == ["HTTPRoute"]


def test_envoy_gateway_optional_timeouts_render_and_validate(tmp_path: Path) -> None:
    docs = render(
        *GATEWAY,
        "--set",
        "gateway.envoyGateway.maxStreamDuration=0s",
        "--set",
        "gateway.envoyGateway.connectionIdleTimeout=1h",
        "--set",
        "gateway.envoyGateway.requestTimeout=",
        "--set",
        "gateway.nginxGatewayFabric.bufferSize=16k",
    )
    envoy = one(docs, "BackendTrafficPolicy", "r-rivulet")
    assert envoy["spec"]["timeout"] == {
        "http": {"maxStreamDuration": "0s", "connectionIdleTimeout": "1h"}
    }
    nginx = one(docs, "ProxySettingsPolicy", "r-rivulet")
    assert nginx["spec"]["buffering"] == {"disable": True, "bufferSize": "16k"}
    proc = _validate_crds(tmp_path, envoy, nginx)
    assert proc.returncode == 0, proc.stdout


def test_worker_deployment_only_when_enabled_and_redis_configured() -> None:
    docs = render(*EXTERNAL)
    worker = one(docs, "Deployment", "r-rivulet-worker")
    assert container(worker)["args"] == ["worker"]
    assert env_of(one(docs, "Deployment", "r-rivulet"))["RIVULET_WORKERS"] == "0"
    assert env_of(worker)["RIVULET_WORKERS"] == "16"

    docs = render(*EXTERNAL, "--set", "worker.enabled=false")
    assert find(docs, "Deployment", "r-rivulet-worker") == []
    assert find(docs, "Service", "r-rivulet-worker") == []
    assert env_of(one(docs, "Deployment", "r-rivulet"))["RIVULET_WORKERS"] == "4"


def test_without_redis_one_pod_runs_the_memory_log() -> None:
    docs = render()
    api = one(docs, "Deployment", "r-rivulet")
    assert api["spec"]["replicas"] == 1
    assert api["spec"]["strategy"] == {"type": "Recreate"}
    assert "REDIS_URL" not in env_of(api)
    assert find(docs, "HorizontalPodAutoscaler") == []
    assert find(docs, "PodDisruptionBudget") == []
    assert find(docs, "Deployment", "r-rivulet-worker") == []


def test_redis_url_reaches_every_pod_from_a_secret() -> None:
    docs = render(*EXTERNAL)
    secret = one(docs, "Secret", "r-rivulet-redis-url")
    assert "rediss://" in __import__("base64").b64decode(secret["data"]["redis-url"]).decode()
    for name in ("r-rivulet", "r-rivulet-worker"):
        ref = env_of(one(docs, "Deployment", name))["REDIS_URL"]["secretKeyRef"]
        assert ref == {"name": "r-rivulet-redis-url", "key": "redis-url"}
    docs = render("--set", "redis.existingSecret=mine", "--set", "redis.existingSecretKey=url")
    ref = env_of(one(docs, "Deployment", "r-rivulet"))["REDIS_URL"]["secretKeyRef"]
    assert ref == {"name": "mine", "key": "url"}
    assert find(docs, "Secret", "r-rivulet-redis-url") == []


def test_embedded_redis_is_durable_and_reachable() -> None:
    docs = render("-f", str(CHART / "ci" / "embedded-redis-values.yaml"))
    redis = one(docs, "StatefulSet", "r-rivulet-redis")
    args = container(redis)["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    claim = redis["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    service = one(docs, "Service", "r-rivulet-redis")
    url = env_of(one(docs, "Deployment", "r-rivulet"))["REDIS_URL"]
    assert url == f"redis://{service['metadata']['name']}:6379/0"
    assert service["spec"]["selector"] == redis["spec"]["template"]["metadata"]["labels"]


def _pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    pods = [(d["metadata"]["name"], d["spec"]) for d in docs if d["kind"] == "Pod"]
    pods += [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    ]
    return pods


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_is_locked_down(scenario: str) -> None:
    for name, spec in _pod_specs(render(*_values_args(scenario))):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["limits"]["memory"], name


def test_probes_use_routes_the_processes_really_serve() -> None:
    from service.app import create_app
    from service.worker_app import create_worker_app

    settings = Settings.from_env({})
    served = {
        "api": {r.path for r in create_app(settings).routes},
        "worker": {
            r.path
            for r in create_worker_app(
                Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"}, serves_api=False)
            ).routes
        },
    }
    docs = render(*EXTERNAL)
    for name, component in (("r-rivulet", "api"), ("r-rivulet-worker", "worker")):
        c = container(one(docs, "Deployment", name))
        paths = {
            c[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert paths == {"/livez", "/readyz"}
        assert paths <= served[component], (component, paths - served[component])
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080}
    assert "/metrics" in served["worker"]
    assert "/metrics" in served["api"]


def test_drain_fits_the_termination_grace() -> None:
    docs = render(*EXTERNAL)
    api = one(docs, "Deployment", "r-rivulet")
    spec = api["spec"]["template"]["spec"]
    sleep = int(container(api)["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = float(one(docs, "ConfigMap", "r-rivulet")["data"]["RIVULET_SHUTDOWN_GRACE"])
    assert spec["terminationGracePeriodSeconds"] > sleep + grace
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_config_extra_refuses_every_key_the_chart_sets_itself() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    refused = set(
        schema["properties"]["config"]["properties"]["extra"]["propertyNames"]["not"]["enum"]
    )
    for scenario in SCENARIOS:
        docs = render(*_values_args(scenario))
        names = set(one(docs, "ConfigMap", "r-rivulet")["data"])
        for d in find(docs, "Deployment"):
            names |= set(env_of(d))
        chart_set = {n for n in names if n.startswith(("RIVULET_", "OTEL_"))}
        chart_set -= (
            set(
                yaml.safe_load((CHART / "ci" / f"{scenario}.yaml").read_text())
                .get("config", {})
                .get("extra", {})
            )
            if scenario != "default"
            else set()
        )
        assert chart_set <= refused, chart_set - refused


def test_secret_inputs_roll_pods_but_generated_material_does_not() -> None:
    def checksum(*args: str) -> str:
        api = one(render(*args), "Deployment", "r-rivulet")
        value: str = api["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"]
        return value

    base = checksum("--set", "redis.url=redis://a:6379")
    assert checksum("--set", "redis.url=redis://a:6379") == base  # random keys don't count
    assert checksum("--set", "redis.url=redis://b:6379") != base
    assert (
        checksum("--set", "redis.url=redis://a:6379", "--set", "providers.openaiApiKey=k") != base
    )


def test_helm_test_pod_follows_pull_secrets_and_scheduling() -> None:
    docs = render("--set", "imagePullSecrets[0].name=regcred", "--set", "api.nodeSelector.pool=web")
    pod = one(docs, "Pod", "r-rivulet-test-connection")
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["nodeSelector"] == {"pool": "web"}


def test_every_environment_variable_is_a_real_setting() -> None:
    known = {f.metadata["env"] for f in Settings.__dataclass_fields__.values()}
    # Read by libraries rather than Settings: uvicorn, and the OpenTelemetry SDK/exporter.
    known |= {"FORWARDED_ALLOW_IPS", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}
    known |= {"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"}
    downward = {"POD_NAME", "POD_NAMESPACE", "NODE_NAME"}
    for scenario in SCENARIOS:
        docs = render(*_values_args(scenario))
        names = set(one(docs, "ConfigMap", "r-rivulet")["data"])
        for d in find(docs, "Deployment"):
            names |= set(env_of(d))
        unknown = names - known - downward
        assert not unknown, (scenario, unknown)


def test_rendered_settings_are_accepted_by_the_service() -> None:
    """The ConfigMap plus the env the chart sets parse as Settings (no typo'd value either)."""
    docs = render("-f", str(CHART / "ci" / "existing-secrets-values.yaml"))
    env = dict(one(docs, "ConfigMap", "r-rivulet")["data"])
    env |= {
        k: v for k, v in env_of(one(docs, "Deployment", "r-rivulet")).items() if isinstance(v, str)
    }
    env |= {"REDIS_URL": "redis://127.0.0.1:6379/0", "ANTHROPIC_API_KEY": "sk-ant-x"}
    env |= {"RIVULET_READ_TOKEN_SECRET": "x" * 48}
    settings = Settings.from_env(env)
    assert settings.host == "0.0.0.0"
    assert settings.api_keys_file == "/etc/rivulet/auth/api-keys"
    assert settings.retention_max_entries == 100000
    assert settings.tracing_exporter == "otlp"


def test_generated_api_key_is_one_the_service_accepts() -> None:
    import base64

    from service.api.auth import parse_keys

    secret = one(render(), "Secret", "r-rivulet-auth")
    keys = base64.b64decode(secret["data"]["api-keys"]).decode()
    assert len(parse_keys(keys, "chart secret")) == 1
    assert len(base64.b64decode(secret["data"]["read-token-secret"])) >= 32


def test_only_api_pods_get_api_keys() -> None:
    docs = render(*EXTERNAL)
    api, worker = (one(docs, "Deployment", n) for n in ("r-rivulet", "r-rivulet-worker"))
    assert "RIVULET_API_KEYS_FILE" in env_of(api)
    assert "RIVULET_READ_TOKEN_SECRET" in env_of(api)
    assert "RIVULET_API_KEYS_FILE" not in env_of(worker)
    assert "RIVULET_READ_TOKEN_SECRET" not in env_of(worker)
    assert all(v["name"] != "auth" for v in worker["spec"]["template"]["spec"]["volumes"])
    docs = render(*EXTERNAL, "--set", "auth.enabled=false")
    assert one(docs, "ConfigMap", "r-rivulet")["data"]["RIVULET_AUTH"] == "none"
    assert find(docs, "Secret", "r-rivulet-auth") == []


def test_selectors_separate_api_and_worker_pods() -> None:
    docs = render(*EXTERNAL)
    api, worker = (one(docs, "Deployment", n) for n in ("r-rivulet", "r-rivulet-worker"))
    api_labels = api["spec"]["template"]["metadata"]["labels"]
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    service = one(docs, "Service", "r-rivulet")["spec"]["selector"]
    assert selects(service, api_labels)
    assert not selects(service, worker_labels)
    for pdb in find(docs, "PodDisruptionBudget"):
        target = api_labels if pdb["metadata"]["name"] == "r-rivulet" else worker_labels
        assert selects(pdb["spec"]["selector"]["matchLabels"], target)
    hpa = one(docs, "HorizontalPodAutoscaler", "r-rivulet")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "r-rivulet",
    }
    assert "replicas" not in api["spec"]  # the HPA owns it


def test_network_policy_allows_what_the_service_needs_and_nothing_else() -> None:
    docs = render(*EXTERNAL)
    policy = one(docs, "NetworkPolicy", "r-rivulet")
    egress_ports = {
        (p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]
    }
    assert (53, "UDP") in egress_ports
    assert (6379, "TCP") in egress_ports
    assert (443, "TCP") in egress_ports
    assert (4318, "TCP") in egress_ports
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == ["http"]
    # DNS to any address (NodeLocal DNSCache is not a pod).
    dns = next(r for r in policy["spec"]["egress"] if r["ports"][0]["port"] == 53)
    assert "to" not in dns
    # With ingressFrom set, only those peers (and the helm test Pod) reach the API port, plus
    # metricsFrom (Prometheus) when that is set too.
    docs = render("-f", str(CHART / "ci" / "existing-secrets-values.yaml"))
    rules = one(docs, "NetworkPolicy", "r-rivulet")["spec"]["ingress"]
    peers = rules[0]["from"]
    assert peers[0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    assert peers[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test"
    assert rules[1]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    worker_rules = one(docs, "NetworkPolicy", "r-rivulet-worker")["spec"]["ingress"]
    assert worker_rules[0]["from"] == rules[1]["from"]
    # Without metricsFrom, a Prometheus anywhere may scrape workers (they serve nothing else).
    worker_open = one(render(*EXTERNAL), "NetworkPolicy", "r-rivulet-worker")["spec"]["ingress"]
    assert "from" not in worker_open[0]


def test_otel_wiring() -> None:
    docs = render("-f", str(CHART / "ci" / "existing-secrets-values.yaml"))
    config = one(docs, "ConfigMap", "r-rivulet")["data"]
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    assert config["OTEL_TRACES_EXPORTER"] == "otlp"
    assert config["OTEL_METRICS_EXPORTER"] == "otlp"
    api, worker = (env_of(one(docs, "Deployment", n)) for n in ("r-rivulet", "r-rivulet-worker"))
    assert api["OTEL_SERVICE_NAME"] == "r-rivulet"
    assert worker["OTEL_SERVICE_NAME"] == "r-rivulet-worker"
    attrs = api["OTEL_RESOURCE_ATTRIBUTES"]
    assert "k8s.pod.name=$(POD_NAME)" in attrs
    assert attrs.endswith(",deployment.environment=prod")
    # Tracing stays off without an endpoint.
    assert "OTEL_TRACES_EXPORTER" not in one(render(), "ConfigMap", "r-rivulet")["data"]


def test_image_digest_wins_over_tag() -> None:
    docs = render("-f", str(CHART / "ci" / "existing-secrets-values.yaml"))
    image = container(one(docs, "Deployment", "r-rivulet"))["image"]
    assert re.fullmatch(r"ghcr\.io/rivulet-dev/rivulet@sha256:[0-9a-f]{64}", image)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container(one(render(), "Deployment", "r-rivulet"))["image"].endswith(
        ":" + chart["appVersion"]
    )


def test_service_monitor_scrapes_api_and_workers() -> None:
    docs = render("-f", str(CHART / "ci" / "existing-secrets-values.yaml"))
    monitor = find(docs, "ServiceMonitor")[0]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    selected = [
        s["metadata"]["name"]
        for s in find(docs, "Service")
        if all(
            s["metadata"]["labels"].get(k) == v
            for k, v in monitor["spec"]["selector"]["matchLabels"].items()
        )
        and s["metadata"]["labels"]["app.kubernetes.io/component"] in ("api", "worker")
    ]
    assert sorted(selected) == ["r-rivulet", "r-rivulet-worker"]


def test_helm_test_pod_checks_readiness_and_a_round_trip() -> None:
    pod = one(render(), "Pod", "r-rivulet-test-connection")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["args"][0]
    assert "/readyz" in script
    assert "http://r-rivulet:80" in script
    compile(script, "test-connection", "exec")  # the inline Python is valid


def _notes(tmp_path: Path, *args: str) -> str:
    """NOTES.txt as ``helm install`` would print it. (`helm install --dry-run` wants a cluster,
    so a copy of the chart renders it through ``tpl`` into a ConfigMap.)"""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.src")  # .Files skips templates/
    (chart / "templates" / "notes-probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: |\n"
        '{{ tpl (.Files.Get "notes.src") . | indent 4 }}\n'
    )
    out = run(
        tool("helm"),
        "template",
        "r",
        chart,
        "-n",
        NAMESPACE,
        *args,
        "--show-only",
        "templates/notes-probe.yaml",
    ).stdout
    notes: str = yaml.safe_load(out)["data"]["notes"]
    return notes


def test_notes_warn_without_redis_and_print_commands(tmp_path: Path) -> None:
    notes = _notes(tmp_path)
    assert "WARNING: no Redis configured" in notes
    assert "kubectl -n rivulet port-forward svc/r-rivulet 8080:80" in notes
    assert "get secret r-rivulet-auth" in notes
    notes = _notes(tmp_path / "external", *EXTERNAL)
    assert "WARNING" not in notes
    assert "export RIVULET_URL=https://rivulet.example.com" in notes
    assert "rollout status deploy/r-rivulet-worker" in notes


def test_notes_say_how_to_reach_the_gateway_route(tmp_path: Path) -> None:
    notes = _notes(tmp_path, *GATEWAY)
    assert "HTTPRoute r-rivulet on Gateway gateway-system/shared-gateway" in notes
    assert "kubectl -n rivulet get httproute r-rivulet" in notes
    assert "export RIVULET_URL=https://rivulet.example.com" in notes
    assert "port-forward" not in notes
    bare = ["--set", "gateway.enabled=true", "--set", "gateway.parentRefs[0].name=eg"]
    notes = _notes(tmp_path / "bare", *bare)
    assert "kubectl -n rivulet get gateway eg -o jsonpath='{.status.addresses[0].value}'" in notes
    both = _notes(tmp_path / "both", *EXTERNAL, *bare)
    assert "export RIVULET_URL=https://rivulet.example.com" in both
    assert "Or through the Gateway API" in both


def test_readme_lists_every_value() -> None:
    values, undocumented = parse(VALUES.read_text())
    assert undocumented == []
    readme = (CHART / "README.md").read_text()
    assert table(values) in readme, "regenerate: python -m tests.deploy.chart_docs"


def test_values_doc_checker_flags_an_undocumented_key() -> None:
    _, undocumented = parse("image:\n  # -- documented\n  tag: x\n  pullPolicy: Always\n")
    assert undocumented == ["image.pullPolicy"]
