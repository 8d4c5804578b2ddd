"""deploy/: the compose file and the Kubernetes manifests, validated against their
schemas, linted, and checked for what running Atlas safely needs."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose
from yamllint import config as yamllint_config
from yamllint import linter

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.30.0"
LINT = yamllint_config.YamlLintConfig(
    "extends: default\nrules:\n  line-length: {max: 110}\n  document-start: disable\n"
    "  truthy: {check-keys: false}\n  comments: {min-spaces-from-content: 1}\n"
)


def _yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_is_clean(path: Path) -> None:
    problems = list(linter.run(path.read_text(), LINT, str(path)))
    assert problems == [], "\n".join(str(p) for p in problems)


def test_the_compose_file_follows_the_compose_spec() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    compose = PyCompose.from_yaml(text)  # raises on anything the spec does not allow
    assert set(compose.service_names()) >= {"atlas", "postgres", "s3"}
    doc = yaml.safe_load(text)
    for name in ("atlas", "postgres", "s3"):
        assert "healthcheck" in doc["services"][name], f"{name} has no health check"
    atlas = doc["services"]["atlas"]
    assert atlas["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(atlas["healthcheck"]["test"])
    # least privilege, as README's Privileges section: the roles exist in the init script
    init = (DEPLOY / "postgres-init.sql").read_text()
    assert "GRANT pg_read_all_data TO atlas_reader" in init and "CREATEDB" in init
    assert "atlas_reader" in atlas["environment"]["DATABASE_URL"]


def _manifests(folder: str = "kubernetes") -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / folder).glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.mark.parametrize(
    "doc",
    _manifests() + _manifests("kubernetes/replicas"),
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_kubernetes_manifests_are_valid(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_deployment_runs_atlas_safely() -> None:
    by_kind = {d["kind"]: d for d in _manifests()}
    deployment = by_kind["Deployment"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    assert pod["securityContext"]["runAsNonRoot"] is True
    dockerfile = (REPO / "Dockerfile").read_text()
    uid = re.search(r"^USER (\d+)", dockerfile, re.MULTILINE)
    assert uid and pod["securityContext"]["runAsUser"] == int(uid.group(1))
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert container["envFrom"][0]["secretRef"]["name"] == by_kind["Secret"]["metadata"]["name"]
    state = next(e["value"] for e in container["env"] if e["name"] == "ATLAS_STATE")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert state.startswith(mounts["catalog"] + "/")
    claim = next(v for v in pod["volumes"] if v["name"] == "catalog")
    assert (
        claim["persistentVolumeClaim"]["claimName"]
        == by_kind["PersistentVolumeClaim"]["metadata"]["name"]
    )
    assert container["command"] == ["atlas", "serve"]
    # no secret value is written into the Deployment itself
    names = {e["name"] for e in container["env"]}
    assert not names & {"DATABASE_URL", "STAGING_DATABASE_URL", "SLACK_BOT_TOKEN"}


def test_the_replicas_share_a_catalog_in_postgresql_and_no_volume() -> None:
    by_kind = {d["kind"]: d for d in _manifests("kubernetes/replicas")}
    spec = by_kind["Deployment"]["spec"]
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert spec["replicas"] >= 2 and spec["strategy"]["type"] == "RollingUpdate"
    assert by_kind["PodDisruptionBudget"]["spec"]["minAvailable"] < spec["replicas"]
    assert "persistentVolumeClaim" not in str(pod["volumes"])
    [state] = [e for e in container["env"] if e["name"] == "ATLAS_STATE"]
    ref = state["valueFrom"]["secretKeyRef"]
    catalog = by_kind["Secret"]
    assert ref["name"] == catalog["metadata"]["name"]
    assert catalog["stringData"][ref["key"]].startswith("postgresql://")
    assert "podAntiAffinity" in pod["affinity"]
    assert container["command"] == ["atlas", "serve"]
