"""Offline checks of terraform/: it parses, is formatted, documents every input and output,
marks secrets sensitive, encodes the durability decisions, and checkov finds nothing.

``terraform init``/``validate`` need the providers from the registry, so they are not run here;
the semantic tests below read the HCL (python-hcl2) and check the decisions directly. The
negative tests at the end prove that the formatter, the variable checker and checkov bite.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from tests.deploy.conftest import CHART, TERRAFORM, checkov, run, tool

MODULES = TERRAFORM / "modules"
EXAMPLES = TERRAFORM / "examples"
RIVULET = MODULES / "rivulet"
REDIS = MODULES / "redis-aws"
UNITS = [RIVULET, REDIS, EXAMPLES / "aws-complete", EXAMPLES / "existing-redis"]
LAYOUT = {"main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"}
TF_FILES = sorted(TERRAFORM.rglob("*.tf"))

# Names of inputs/outputs that carry secrets: a password, token, secret, API key or Redis URL
# (which embeds the password). `*_secret_name` and `kms_key_arn` name things, they are no secret.
SECRET_NAME = re.compile(r"(password|token|secret|api_keys?|redis_url)$")

# The chart's values the rivulet module may set (the contract helm/rivulet is written against).
CHART_CONTRACT = {
    "image.repository",
    "image.tag",
    "api.replicas",
    "api.autoscaling.enabled",
    "api.autoscaling.minReplicas",
    "api.autoscaling.maxReplicas",
    "worker.enabled",
    "worker.replicas",
    "redis.existingSecret",
    "redis.existingSecretKey",
    "auth.existingSecret",
    "providers.existingSecret",
    "providers.default",
    "ingress.enabled",
    "ingress.className",
    "ingress.hosts",
    "ingress.tls",
    "otel.endpoint",
}


# --------------------------------------------------------------------------------------------
# HCL helpers: python-hcl2 keeps quotes around labels and string literals and adds bookkeeping
# keys; `_clean` turns its output into plain data (`"x"` -> `x`, expressions stay `${...}`).
# --------------------------------------------------------------------------------------------


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            _clean(k): _clean(v)
            for k, v in node.items()
            if k not in ("__is_block__", "__comments__", "__inline_comments__")
        }
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


def load_tf(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        return _clean(hcl2.load(fh))  # type: ignore[no-any-return]


def load_dir(directory: Path) -> dict[str, Any]:
    """All top-level blocks of a module, merged across its .tf files (lists concatenated)."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for kind, items in load_tf(path).items():
            merged.setdefault(kind, []).extend(items)
    return merged


def blocks(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Single-label blocks (variable, output, module) by name."""
    return {name: body for item in doc.get(kind, []) for name, body in item.items()}


def resources(doc: dict[str, Any], kind: str = "resource") -> dict[str, dict[str, Any]]:
    """Two-label blocks (resource, data) by ``type.name``."""
    out = {}
    for item in doc.get(kind, []):
        for rtype, named in item.items():
            for name, body in named.items():
                out[f"{rtype}.{name}"] = body
    return out


def locals_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for item in doc.get("locals", []) for k, v in item.items()}


def one_block(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body[name]
    assert isinstance(value, list), f"{name} is not a block"
    assert len(value) == 1, f"expected one {name} block"
    return value[0]  # type: ignore[no-any-return]


def variable_problems(doc: dict[str, Any]) -> list[str]:
    """Variables without a type or a description, and secret-named ones not marked sensitive."""
    problems = []
    for name, body in blocks(doc, "variable").items():
        if not body.get("type"):
            problems.append(f"variable {name}: no type")
        if not str(body.get("description", "")).strip():
            problems.append(f"variable {name}: no description")
        if SECRET_NAME.search(name) and body.get("sensitive") is not True:
            problems.append(f"variable {name}: holds a secret but is not sensitive = true")
    return problems


def output_problems(doc: dict[str, Any]) -> list[str]:
    """Outputs without a description, and secret-named ones not marked sensitive."""
    problems = []
    for name, body in blocks(doc, "output").items():
        if not str(body.get("description", "")).strip():
            problems.append(f"output {name}: no description")
        if SECRET_NAME.search(name) and body.get("sensitive") is not True:
            problems.append(f"output {name}: holds a secret but is not sensitive = true")
    return problems


def leaf_paths(tree: Any, prefix: str = "") -> set[str]:
    """Dotted paths of the non-mapping values of a nested mapping (lists count as leaves)."""
    if not isinstance(tree, dict):
        return {prefix}
    out: set[str] = set()
    for key, value in tree.items():
        out |= leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
    return out


# --------------------------------------------------------------------------------------------
# Layout, syntax, formatting
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_each_module_and_example_has_the_standard_layout(unit: Path) -> None:
    assert {p.name for p in unit.iterdir() if p.is_file()} == LAYOUT
    assert not [p for p in unit.iterdir() if p.is_dir()], "no nested directories expected"


def test_every_module_and_example_is_listed() -> None:
    found = {p.parent for p in TF_FILES}
    assert found == set(UNITS), "a new module/example needs adding to UNITS"
    assert (TERRAFORM / "README.md").is_file()


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_tf_file_parses(path: Path) -> None:
    assert load_tf(path), f"{path} parsed to nothing"


def test_terraform_fmt_is_clean() -> None:
    run(tool("terraform"), "fmt", "-check", "-recursive", "-diff", TERRAFORM)


def _code(path: Path) -> str:
    """A .tf file without its comment lines (comments may name what the code must not use)."""
    return re.sub(r"(?m)^\s*#.*$", "", path.read_text())


def test_no_syntax_newer_than_the_declared_terraform_version() -> None:
    newer = re.compile(
        r"\boptional\(|^\s*(moved|import|removed|check)\s*[{\"]|terraform_data", re.M
    )
    for path in TF_FILES:
        assert not newer.search(_code(path)), f"{path}: syntax Terraform 1.0 cannot parse/run"
    for unit in UNITS:
        uses_conditions = any("precondition" in _code(p) for p in unit.glob("*.tf"))
        required = one_block(load_dir(unit), "terraform")["required_version"]
        if uses_conditions or unit.name == "aws-complete":  # the example uses redis-aws
            assert required == ">= 1.2", f"{unit}: preconditions need Terraform 1.2"


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_required_providers_are_pinned_and_cover_every_resource(unit: Path) -> None:
    doc = load_dir(unit)
    terraform = one_block(doc, "terraform")
    assert terraform.get("required_version", "").startswith(">= 1.")
    (providers,) = terraform["required_providers"]
    for name, spec in providers.items():
        assert spec["source"] == f"hashicorp/{name}", name
        assert re.fullmatch(r">= [\d.]+, < \d+\.0", spec["version"]), (name, spec["version"])
    used = {t.split("_")[0] for t in (*resources(doc), *resources(doc, "data"))}
    used |= {name for item in doc.get("provider", []) for name in item}
    assert used <= set(providers), f"undeclared providers: {used - set(providers)}"


# --------------------------------------------------------------------------------------------
# Inputs and outputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_variable_is_typed_described_and_secrets_are_sensitive(unit: Path) -> None:
    doc = load_dir(unit)
    assert blocks(doc, "variable"), f"{unit} has no variables"
    assert variable_problems(doc) == []


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_output_is_described_and_secrets_are_sensitive(unit: Path) -> None:
    doc = load_dir(unit)
    assert blocks(doc, "output"), f"{unit} has no outputs"
    assert output_problems(doc) == []


def test_the_secret_inputs_are_the_expected_ones() -> None:
    rivulet = blocks(load_dir(RIVULET), "variable")
    sensitive = {n for n, b in rivulet.items() if b.get("sensitive") is True}
    expected = {"redis_url", "api_keys", "read_token_secret", "openai_api_key", "anthropic_api_key"}
    assert sensitive == expected
    redis_outputs = blocks(load_dir(REDIS), "output")
    assert {n for n, b in redis_outputs.items() if b.get("sensitive") is True} == {
        "redis_url",
        "password",
    }


def test_inputs_with_a_fixed_shape_are_validated() -> None:
    rivulet = blocks(load_dir(RIVULET), "variable")
    for name in ("redis_url", "api_replicas", "worker_replicas", "default_provider", "api_keys"):
        assert rivulet[name].get("validation"), f"rivulet: {name} has no validation"
    assert "rediss?://" in rivulet["redis_url"]["validation"][0]["condition"]
    redis = blocks(load_dir(REDIS), "variable")
    for name in ("engine_kind", "engine", "snapshot_retention_days", "allowed_cidr_blocks"):
        assert redis[name].get("validation"), f"redis-aws: {name} has no validation"
    assert '["memorydb", "elasticache"]' in redis["engine_kind"]["validation"][0]["condition"]
    assert redis["engine_kind"]["default"] == "memorydb"


# --------------------------------------------------------------------------------------------
# redis-aws: the durability and security decisions
# --------------------------------------------------------------------------------------------


def _redis() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    doc = load_dir(REDIS)
    return resources(doc), locals_of(doc)


def test_both_parameter_groups_set_noeviction() -> None:
    res, _ = _redis()
    for group in ("aws_memorydb_parameter_group.this", "aws_elasticache_parameter_group.this"):
        params = {p["name"]: p["value"] for p in res[group]["parameter"]}
        assert params.get("maxmemory-policy") == "noeviction", group
    cluster = res["aws_memorydb_cluster.this"]
    assert cluster["parameter_group_name"] == "${aws_memorydb_parameter_group.this[0].name}"
    replication = res["aws_elasticache_replication_group.this"]
    assert replication["parameter_group_name"] == "${aws_elasticache_parameter_group.this[0].name}"


def test_both_engines_encrypt_in_transit_and_at_rest_and_require_a_password() -> None:
    res, local = _redis()
    memorydb = res["aws_memorydb_cluster.this"]
    assert memorydb["tls_enabled"] is True
    assert memorydb["kms_key_arn"] == "${local.kms_key_arn}"
    assert memorydb["acl_name"] == "${aws_memorydb_acl.this[0].name}"
    user = res["aws_memorydb_user.this"]
    assert one_block(user, "authentication_mode")["type"] == "password"

    elasticache = res["aws_elasticache_replication_group.this"]
    assert elasticache["transit_encryption_enabled"] is True
    assert elasticache["transit_encryption_mode"] == "required"
    assert elasticache["at_rest_encryption_enabled"] is True
    assert elasticache["kms_key_id"] == "${local.kms_key_arn}"
    assert elasticache["auth_token"] == "${random_password.auth.result}"

    # no key given: the module makes a customer managed key with rotation
    assert "aws_kms_key.this[0].arn" in local["kms_key_arn"]
    assert res["aws_kms_key.this"]["enable_key_rotation"] is True


def test_one_primary_for_a_non_cluster_client() -> None:
    res, _ = _redis()
    memorydb = res["aws_memorydb_cluster.this"]
    assert memorydb["num_shards"] == 1
    (lifecycle,) = memorydb["lifecycle"]
    condition = lifecycle["precondition"][0]["condition"]
    assert condition == "${var.memorydb_replicas == 0 || var.cluster_aware_client}"
    elasticache = res["aws_elasticache_replication_group.this"]
    assert elasticache["cluster_mode"] == "disabled"
    params = {
        p["name"]: p["value"] for p in res["aws_elasticache_parameter_group.this"]["parameter"]
    }
    assert params["cluster-enabled"] == "no"


def test_snapshots_replicas_and_failover() -> None:
    res, _ = _redis()
    variables = blocks(load_dir(REDIS), "variable")
    for name in ("aws_memorydb_cluster.this", "aws_elasticache_replication_group.this"):
        assert res[name]["snapshot_retention_limit"] == "${var.snapshot_retention_days}", name
    assert variables["snapshot_retention_days"]["default"] >= 1
    assert ">= 1" in variables["snapshot_retention_days"]["validation"][0]["condition"]
    elasticache = res["aws_elasticache_replication_group.this"]
    assert elasticache["multi_az_enabled"] is True
    assert elasticache["automatic_failover_enabled"] is True
    assert elasticache["num_cache_clusters"] == "${1 + var.elasticache_replicas}"
    assert variables["elasticache_replicas"]["default"] >= 1


def test_security_group_admits_6379_from_the_given_sources_only() -> None:
    res, local = _redis()
    assert local["port"] == 6379
    rules = {k: v for k, v in res.items() if k.startswith("aws_vpc_security_group_ingress_rule.")}
    assert set(rules) == {
        "aws_vpc_security_group_ingress_rule.from_security_group",
        "aws_vpc_security_group_ingress_rule.from_cidr",
    }
    for rule in rules.values():
        assert rule["from_port"] == rule["to_port"] == "${local.port}"
        assert rule["ip_protocol"] == "tcp"
    assert (
        "var.allowed_security_group_ids"
        in rules["aws_vpc_security_group_ingress_rule.from_security_group"]["for_each"]
    )
    assert (
        "var.allowed_cidr_blocks"
        in rules["aws_vpc_security_group_ingress_rule.from_cidr"]["for_each"]
    )
    assert not any(k.startswith("aws_vpc_security_group_egress_rule.") for k in res)
    assert "egress" not in res["aws_security_group.this"]
    assert not any("0.0.0.0/0" in p.read_text() for p in REDIS.glob("*.tf") if p.name == "main.tf")


def test_redis_url_output_is_a_tls_url_with_credentials() -> None:
    outputs = blocks(load_dir(REDIS), "output")
    value = outputs["redis_url"]["value"]
    assert value.startswith("rediss://${local.url_user}:${random_password.auth.result}@")
    assert value.endswith("${local.endpoint}:${local.port}")


def test_redis_readme_states_what_each_option_does_and_does_not_guarantee() -> None:
    text = (REDIS / "README.md").read_text().lower()
    for phrase in ("noeviction", "transaction log", "asynchronous", "snapshot", "cluster mode"):
        assert phrase in text, phrase
    assert "does not" in text or "doesn't" in text


# --------------------------------------------------------------------------------------------
# rivulet: secrets and the chart
# --------------------------------------------------------------------------------------------


def test_rivulet_installs_the_local_chart_with_the_redis_secret() -> None:
    doc = load_dir(RIVULET)
    res, local = resources(doc), locals_of(doc)
    release = res["helm_release.rivulet"]
    assert release["chart"] == "${local.chart_path}"
    assert "var.chart_path" in local["chart_path"]
    assert "${path.module}/../../../helm/rivulet" in local["chart_path"]
    assert (RIVULET / "../../../helm/rivulet").resolve() == CHART.resolve()
    assert release["values"][0] == "${yamlencode(local.chart_values)}"
    assert "set" not in release, "values = [yamlencode(...)] works on helm provider v2 and v3"

    values = local["chart_values"]
    assert values["redis"]["existingSecret"] == "${kubernetes_secret_v1.redis.metadata[0].name}"
    assert values["redis"]["existingSecretKey"] == "redis-url"
    assert values["auth"]["existingSecret"] == "${kubernetes_secret_v1.auth.metadata[0].name}"
    assert res["kubernetes_secret_v1.redis"]["data"] == {"redis-url": "${var.redis_url}"}
    assert set(res["kubernetes_secret_v1.auth"]["data"]) == {"api-keys", "read-token-secret"}
    assert res["random_password.read_token_secret"]["length"] == 48
    providers = local["provider_keys"]
    assert "OPENAI_API_KEY" in providers
    assert "ANTHROPIC_API_KEY" in providers
    assert res["kubernetes_secret_v1.providers"]["data"] == "${local.provider_keys}"


def test_rivulet_sets_only_chart_values_that_exist() -> None:
    values = locals_of(load_dir(RIVULET))["chart_values"]
    paths = leaf_paths(values)
    assert paths <= CHART_CONTRACT, f"not in the chart contract: {paths - CHART_CONTRACT}"
    assert {"redis.existingSecret", "auth.existingSecret", "providers.existingSecret"} <= paths
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = {
        p for p in paths if not _has_path(chart_values, p.split("."))
    }  # the chart is the source of truth for names
    assert not missing, f"helm/rivulet/values.yaml has no {sorted(missing)}"


def _has_path(tree: Any, keys: list[str]) -> bool:
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return False
        tree = tree[key]
    return True


def test_ingress_nginx_is_pinned_and_tuned_for_sse() -> None:
    doc = load_dir(RIVULET)
    release = resources(doc)["helm_release.ingress_nginx"]
    assert release["repository"] == "https://kubernetes.github.io/ingress-nginx"
    assert release["chart"] == "ingress-nginx"
    assert release["version"] == "${var.ingress_nginx_chart_version}"
    assert release["count"] == "${var.install_ingress_nginx ? 1 : 0}"
    default = blocks(doc, "variable")["ingress_nginx_chart_version"]["default"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", default)
    config = locals_of(doc)["ingress_nginx_values"]["controller"]["config"]
    assert config["proxy-buffering"] == "off"
    assert config["use-gzip"] == "false"
    assert "var.stream_timeout_seconds" in config["proxy-read-timeout"]
    assert config["allow-snippet-annotations"] == "false"


# --------------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------------


def test_aws_example_wires_redis_into_rivulet_on_eks() -> None:
    doc = load_dir(EXAMPLES / "aws-complete")
    modules = blocks(doc, "module")
    assert modules["redis"]["source"] == "../../modules/redis-aws"
    assert modules["rivulet"]["source"] == "../../modules/rivulet"
    assert modules["rivulet"]["redis_url"] == "${module.redis.redis_url}"
    data = resources(doc, "data")
    assert {"aws_eks_cluster.this", "aws_eks_cluster_auth.this"} <= set(data)
    providers = {name: body for item in doc["provider"] for name, body in item.items()}
    assert providers["kubernetes"]["token"] == "${data.aws_eks_cluster_auth.this.token}"
    assert providers["helm"]["kubernetes"]["token"] == "${data.aws_eks_cluster_auth.this.token}"


def test_existing_redis_example_needs_no_aws() -> None:
    doc = load_dir(EXAMPLES / "existing-redis")
    modules = blocks(doc, "module")
    assert set(modules) == {"rivulet"}
    assert modules["rivulet"]["redis_url"] == "${var.redis_url}"
    providers = {name for item in doc["provider"] for name in item}
    assert providers == {"kubernetes", "helm"}


# --------------------------------------------------------------------------------------------
# checkov
# --------------------------------------------------------------------------------------------


def test_checkov_finds_nothing() -> None:
    report = checkov("terraform", "-d", TERRAFORM)
    failed = report.failed
    assert not failed, "\n".join(
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})" for c in failed
    )
    assert report.parsing_errors == 0
    passed = {c["check_id"] for c in report.passed}
    # the checks that encode encryption, auth, key rotation and failover actually ran
    wanted = {"CKV_AWS_29", "CKV_AWS_30", "CKV_AWS_31", "CKV_AWS_191", "CKV_AWS_201", "CKV_AWS_7"}
    assert wanted <= passed, f"did not run: {wanted - passed}"
    skipped = report.skipped
    assert not skipped, f"skips need a justification in the README: {skipped}"


# --------------------------------------------------------------------------------------------
# Negative tests: the checks above bite
# --------------------------------------------------------------------------------------------


def test_fmt_check_rejects_badly_formatted_terraform(tmp_path: Path) -> None:
    good = (REDIS / "versions.tf").read_text()
    bad = good.replace('  required_version = ">= 1.2"', 'required_version="> 1.2"')
    assert bad != good
    (tmp_path / "versions.tf").write_text(bad)
    proc = run(tool("terraform"), "fmt", "-check", "-recursive", tmp_path, ok=False)
    assert proc.returncode != 0
    assert "versions.tf" in proc.stdout


def test_variable_and_output_checkers_flag_what_they_should(tmp_path: Path) -> None:
    path = tmp_path / "variables.tf"
    path.write_text(
        'variable "undocumented" {\n  type = string\n}\n\n'
        'variable "untyped" {\n  description = "x"\n}\n\n'
        'variable "db_password" {\n  type        = string\n  description = "x"\n}\n\n'
        'output "auth_token" {\n  value = "x"\n}\n'
    )
    doc = load_tf(path)
    assert variable_problems(doc) == [
        "variable undocumented: no description",
        "variable untyped: no type",
        "variable db_password: holds a secret but is not sensitive = true",
    ]
    assert output_problems(doc) == [
        "output auth_token: no description",
        "output auth_token: holds a secret but is not sensitive = true",
    ]


def test_checkov_flags_an_unencrypted_replication_group(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(
        'resource "aws_elasticache_replication_group" "bad" {\n'
        '  replication_group_id = "bad"\n'
        '  description          = "no encryption"\n'
        '  node_type            = "cache.t4g.small"\n'
        "  num_cache_clusters   = 1\n"
        "}\n"
    )
    failed = {c["check_id"] for c in checkov("terraform", "-d", tmp_path).failed}
    assert {"CKV_AWS_29", "CKV_AWS_30"} <= failed
