"""deploy/k8s: schema validation (kubernetes-validate --strict) and the cross-references between manifests."""

from __future__ import annotations

import re
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.deploy_support import K8S, ROOT, cli_tree, load_yaml_documents, require_tool, run_tool

BASE = K8S / "base"
MAINTENANCE_OVERLAY = K8S / "overlays" / "maintenance"
NAMESPACE = "spikeformer"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
API_ROUTES = ROOT / "src" / "spikeformer" / "serve" / "api"


@cache
def manifest_files() -> tuple[Path, ...]:
    return tuple(sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"))


@cache
def objects() -> tuple[dict[str, Any], ...]:
    return tuple(doc for path in manifest_files() for doc in load_yaml_documents(path))


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects() if o["kind"] == kind}


def pod_templates() -> dict[tuple[str, str], dict[str, Any]]:
    """``{(kind, name): pod template}`` of every workload."""
    out = {}
    for kind in WORKLOAD_KINDS:
        for name, o in by_kind(kind).items():
            out[(kind, name)] = o["spec"]["template"]
    return out


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a selector matches labels: a LabelSelector (matchLabels/matchExpressions) or a Service's plain map."""
    if "matchLabels" in selector or "matchExpressions" in selector:
        match_labels, expressions = selector.get("matchLabels", {}), selector.get("matchExpressions", [])
    else:
        match_labels, expressions = selector, []
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in expressions:
        value, op = labels.get(expr["key"]), expr["operator"]
        if (op == "In" and value not in expr["values"]) or (op == "NotIn" and value in expr["values"]):
            return False
        if (op == "Exists" and value is None) or (op == "DoesNotExist" and value is not None):
            return False
    return True


def matching_templates(selector: dict[str, Any]) -> list[tuple[str, str]]:
    return [key for key, t in pod_templates().items() if selects(selector, t["metadata"]["labels"])]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def container_port_names(template: dict[str, Any]) -> set[str]:
    return {p["name"] for c in containers(template) for p in c.get("ports", []) if "name" in p}


# ------------------------------------------------------------------------------------------------ schema, listing


def test_kubernetes_validate_strict_passes_on_every_manifest() -> None:
    tool = require_tool("kubernetes-validate")
    files = [str(p.relative_to(ROOT)) for p in manifest_files()]
    assert files, f"no manifests in {BASE}"
    result = run_tool([tool, "--strict", "--quiet", *files])
    assert result.returncode == 0, f"kubernetes-validate --strict failed:\n{result.stdout}\n{result.stderr}"


def test_every_manifest_is_listed_in_the_kustomization_and_nothing_else() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    assert sorted(listed) == sorted(p.name for p in manifest_files())
    top = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert top["resources"] == ["base"]
    overlay = yaml.safe_load((MAINTENANCE_OVERLAY / "kustomization.yaml").read_text())
    for resource in overlay["resources"]:
        assert (MAINTENANCE_OVERLAY / resource / "kustomization.yaml").is_file(), resource


def test_every_object_is_in_the_namespace_and_names_are_unique() -> None:
    seen = set()
    for o in objects():
        key = (o["kind"], o["metadata"]["name"])
        assert key not in seen, f"{key} defined twice"
        seen.add(key)
        if o["kind"] == "Namespace":
            assert o["metadata"]["name"] == NAMESPACE
        else:
            assert o["metadata"].get("namespace") == NAMESPACE, key
    assert ("Namespace", NAMESPACE) in seen


# ------------------------------------------------------------------------------------------------ workloads


def test_api_and_worker_deployments() -> None:
    deployments = by_kind("Deployment")
    api = deployments["spikeformer-api"]["spec"]["template"]["spec"]["containers"][0]
    worker = deployments["spikeformer-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert api["image"] == worker["image"] == "spikeformer:0.1.0"
    assert api["command"] == ["spikeformer", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert worker["command"] == ["spikeformer", "worker"]
    tree = cli_tree()
    for c in (api, worker, by_kind("Job")["spikeformer-db-upgrade"]["spec"]["template"]["spec"]["containers"][0]):
        node: Any = tree
        for word in c["command"][1:]:
            if word.startswith("-") or node is None:
                break
            assert word in node, f"{c['command']}: `{word}` is not a spikeformer command"
            node = node[word]
    assert "model-inference" not in deployments, "the api runs inference itself (see the comment in api.yaml)"


def test_api_probes_use_the_real_health_routes() -> None:
    api = by_kind("Deployment")["spikeformer-api"]["spec"]["template"]
    c = api["spec"]["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    routes = "\n".join(p.read_text() for p in API_ROUTES.glob("*.py"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = c[probe]["httpGet"]
        assert f'.get("{get["path"]}"' in routes, f"{get['path']} is not a route of the service"
        assert get["port"] in container_port_names(api) or get["port"] == 8000


@pytest.mark.parametrize("name", ["spikeformer-api", "spikeformer-worker"])
def test_app_pods_are_locked_down(name: str) -> None:
    template = by_kind("Deployment")[name]["spec"]["template"]
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    volumes = {v["name"]: v for v in spec["volumes"]}
    c = spec["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["resources"]["requests"] and c["resources"]["limits"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    models = mounts["/models"]
    assert models["readOnly"] is True
    pvc = volumes[models["name"]]["persistentVolumeClaim"]
    assert pvc["claimName"] == "spikeformer-models" and pvc["readOnly"] is True
    assert "spikeformer-models" in by_kind("PersistentVolumeClaim")


def test_every_pod_runs_non_root_with_resources() -> None:
    for (kind, name), template in pod_templates().items():
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, (kind, name)
        for c in containers(template):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, (kind, name, c["name"])
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], (kind, name, c["name"])
            assert c["resources"]["requests"] and c["resources"]["limits"], (kind, name, c["name"])


def test_references_to_secrets_configmaps_and_claims_exist() -> None:
    secrets, configmaps = by_kind("Secret"), by_kind("ConfigMap")
    claims = set(by_kind("PersistentVolumeClaim"))
    for (kind, name), template in pod_templates().items():
        spec = template["spec"]
        for c in containers(template):
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, (name, source)
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, (name, source)
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], (name, ref)
            volume_names = {v["name"] for v in spec.get("volumes", [])}
            if kind == "StatefulSet":
                volume_names |= {t["metadata"]["name"] for t in by_kind(kind)[name]["spec"]["volumeClaimTemplates"]}
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volume_names, (name, mount)
        for v in spec.get("volumes", []):
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets, (name, v)
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps, (name, v)
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims, (name, v)


def test_secrets_hold_clearly_marked_example_values() -> None:
    for name, secret in by_kind("Secret").items():
        assert "stringData" in secret and "data" not in secret, name
        for key, value in secret["stringData"].items():
            if key.startswith("POSTGRES_") and key != "POSTGRES_PASSWORD":
                continue
            if key == "pgbouncer.ini":
                continue
            assert "example" in value, f"{name}/{key} must hold an obviously fake example value"


def test_apps_reach_postgres_through_pgbouncer_on_6432() -> None:
    url = by_kind("Secret")["spikeformer-secrets"]["stringData"]["database-url"]
    assert re.match(r"postgresql://[^@]+@pgbouncer\.spikeformer\.svc(\.cluster\.local)?:6432/", url), url
    ports = by_kind("Service")["pgbouncer"]["spec"]["ports"]
    assert [p["port"] for p in ports] == [6432]
    ini = by_kind("Secret")["pgbouncer-config"]["stringData"]["pgbouncer.ini"]
    assert "listen_port = 6432" in ini
    statefulset = by_kind("StatefulSet")["postgres"]
    assert f"{statefulset['metadata']['name']}-0.{statefulset['spec']['serviceName']}.spikeformer.svc" in ini
    assert by_kind("Service")[statefulset["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["volumeClaimTemplates"]


# ------------------------------------------------------------------------------------------------ services, routing


def test_every_service_selects_pods_and_their_ports() -> None:
    for name, service in by_kind("Service").items():
        matches = matching_templates(service["spec"]["selector"])
        assert matches, f"Service {name} selects no Deployment/StatefulSet pods"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for key in matches:
                template = pod_templates()[key]
                if isinstance(target, str):
                    assert target in container_port_names(template), (name, key, target)
                else:
                    numbers = {p["containerPort"] for c in containers(template) for p in c.get("ports", [])}
                    assert target in numbers, (name, key, target)


def test_hpa_targets_the_api_deployment() -> None:
    hpa = by_kind("HorizontalPodAutoscaler")["spikeformer-api"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", "spikeformer-api")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # Utilization targets need CPU requests on every container of the target.
    for c in by_kind("Deployment")["spikeformer-api"]["spec"]["template"]["spec"]["containers"]:
        assert "cpu" in c["resources"]["requests"]


def test_pod_disruption_budgets_cover_api_and_worker() -> None:
    pdbs = by_kind("PodDisruptionBudget")
    covered = {key for pdb in pdbs.values() for key in matching_templates(pdb["spec"]["selector"])}
    assert ("Deployment", "spikeformer-api") in covered
    assert ("Deployment", "spikeformer-worker") in covered
    api_min = pdbs["spikeformer-api"]["spec"]["minAvailable"]
    assert api_min < by_kind("HorizontalPodAutoscaler")["spikeformer-api"]["spec"]["minReplicas"], (
        "a PDB that requires every replica blocks node drains"
    )


def ingress_backends(ingress: dict[str, Any]) -> list[dict[str, Any]]:
    return [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]


def test_ingress_routes_to_the_api_service_port() -> None:
    ingress = by_kind("Ingress")["spikeformer-ingress"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert not any("maintenance" in k for k in ingress["metadata"].get("annotations", {})), (
        "ingress-nginx has no maintenance annotation; switch the backend instead (overlays/maintenance)"
    )
    services = by_kind("Service")
    for backend in ingress_backends(ingress):
        assert backend["name"] == "spikeformer-api"
        assert backend["port"]["name"] in {p["name"] for p in services[backend["name"]]["spec"]["ports"]}


def apply_json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """The `replace`/`add` operations of a JSON patch (RFC 6902), enough for the overlay's patch."""
    for op in ops:
        assert op["op"] in ("replace", "add"), op
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        last = parts[-1]
        if isinstance(node, list):
            index = int(last)
            assert op["op"] == "add" or index < len(node), f"{op['path']} does not exist"
            node[index] = op["value"]
        else:
            assert op["op"] == "add" or last in node, f"{op['path']} does not exist"
            node[last] = op["value"]
    return doc


STATUS_PATHS = {"/status", "/status.json"}


def test_maintenance_overlay_switches_every_api_path_to_the_static_503_backend() -> None:
    overlay = yaml.safe_load((MAINTENANCE_OVERLAY / "kustomization.yaml").read_text())
    (patch,) = overlay["patches"]
    assert patch["target"]["kind"] == "Ingress" and patch["target"]["name"] == "spikeformer-ingress"
    ingress = yaml.safe_load(yaml.safe_dump(by_kind("Ingress")["spikeformer-ingress"]))
    patched = apply_json_patch(ingress, yaml.safe_load(patch["patch"]))
    paths = [p for rule in patched["spec"]["rules"] for p in rule["http"]["paths"]]
    backends = [p["backend"]["service"] for p in paths if p["path"] not in STATUS_PATHS]
    assert backends and all(b["name"] == "spikeformer-maintenance" for b in backends)
    # the public status page stays reachable during maintenance: that is where users read about it
    status = [p["backend"]["service"]["name"] for p in paths if p["path"] in STATUS_PATHS]
    assert sorted(p["path"] for p in paths if p["path"] in STATUS_PATHS) == sorted(STATUS_PATHS)
    assert status == ["spikeformer-api", "spikeformer-api"]
    service = by_kind("Service")["spikeformer-maintenance"]
    assert all(b["port"]["name"] in {p["name"] for p in service["spec"]["ports"]} for b in backends)
    nginx = by_kind("ConfigMap")["spikeformer-maintenance"]["data"]["default.conf"]
    assert "return 503" in nginx and "Retry-After" in nginx


# ------------------------------------------------------------------------------------------------ network policies


def allowed_sources(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [peer for rule in policy["spec"].get("ingress", []) for peer in rule.get("from", [])]


def test_network_policies() -> None:
    policies = by_kind("NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    for name, policy in policies.items():
        if name != "default-deny-ingress":
            assert matching_templates(policy["spec"]["podSelector"]), f"NetworkPolicy {name} selects no pods"

    def same_namespace_sources(name: str) -> set[tuple[str, str]]:
        out = set()
        for peer in allowed_sources(policies[name]):
            assert "namespaceSelector" not in peer and "ipBlock" not in peer, (name, peer)
            out |= set(matching_templates(peer["podSelector"]))
        return out

    assert same_namespace_sources("postgres") == {("Deployment", "pgbouncer")}
    assert matching_templates(policies["postgres"]["spec"]["podSelector"]) == [("StatefulSet", "postgres")]
    assert same_namespace_sources("pgbouncer") == {
        ("Deployment", "spikeformer-api"),
        ("Deployment", "spikeformer-worker"),
        ("Job", "spikeformer-db-upgrade"),
    }
    namespaces = defaultdict(set)
    for peer in allowed_sources(policies["spikeformer-api"]):
        ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        pod = peer["podSelector"]
        names = pod.get("matchLabels", {}).get("app.kubernetes.io/name")
        for expr in pod.get("matchExpressions", []):
            names = expr["values"]
        namespaces[ns] |= set([names] if isinstance(names, str) else names)
    assert dict(namespaces) == {"ingress-nginx": {"ingress-nginx"}, "monitoring": {"prometheus", "alertmanager"}}
